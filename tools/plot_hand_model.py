"""Render the hand model (rest pose and a few poses) to PNGs for the README and docs.

Usage: .venv/bin/python tools/plot_hand_model.py [--model builtin|mano] [--mano-dir DIR] [--out docs/images]

Painter's algorithm with OpenCV: project the posed mesh with a pinhole camera,
sort the triangles far to near and fill each with Lambert shading. No matplotlib.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from handcap.core.anatomy import from_local
from handcap.core.handmodel import HandModelData, forward, load_builtin
from handcap.core.keypoints import KEYPOINT_BONES

REPO = Path(__file__).resolve().parent.parent


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World -> camera rotation (rows x right, y down, z forward; OpenCV axes)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def render(
    verts: np.ndarray,
    faces: np.ndarray,
    rot: np.ndarray,
    eye: np.ndarray,
    size: tuple[int, int] = (640, 480),
    keypoints: np.ndarray | None = None,
    colour: tuple[float, float, float] = (0.62, 0.72, 0.93),
) -> np.ndarray:
    """Shaded BGR image of the mesh seen from ``eye`` with camera rotation ``rot`` (world -> camera)."""
    w, h = size
    cam = (verts - eye) @ rot.T
    tri = cam[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-15)
    centre = tri.mean(axis=1)
    facing = np.sum(normal * centre, axis=1) < 0  # back faces are hidden by the closed surface
    light = np.array([-0.4, -0.6, -0.7])
    light /= np.linalg.norm(light)
    shade = 0.25 + 0.75 * np.clip(normal @ light, 0.0, 1.0)
    extent = np.ptp(cam[:, :2], axis=0).max()
    depth = cam[:, 2].mean()
    f = 0.8 * min(w, h) * depth / extent
    mid = (cam[:, :2].min(axis=0) + cam[:, :2].max(axis=0)) / 2 / depth
    uv = f * (cam[:, :2] / cam[:, 2:3] - mid) + np.array([w / 2, h / 2])
    img = np.full((h, w, 3), 255, np.uint8)
    order = np.argsort(-centre[:, 2])
    scale = 16  # sub-pixel precision for fillConvexPoly (shift = 4 bits)
    px = np.round(uv * scale).astype(np.int32)
    base = np.array(colour[::-1]) * 255
    for i in order:
        if not facing[i]:
            continue
        c = tuple(int(v) for v in np.clip(base * shade[i], 0, 255))
        cv2.fillConvexPoly(img, px[faces[i]], c, lineType=cv2.LINE_AA, shift=4)
    if keypoints is not None:
        kc = (keypoints - eye) @ rot.T
        kuv = f * (kc[:, :2] / kc[:, 2:3] - mid) + np.array([w / 2, h / 2])
        for a, b in KEYPOINT_BONES:
            cv2.line(
                img,
                tuple(np.round(kuv[a]).astype(int)),
                tuple(np.round(kuv[b]).astype(int)),
                (40, 40, 200),
                2,
                cv2.LINE_AA,
            )
        for p in kuv:
            cv2.circle(img, tuple(np.round(p).astype(int)), 3, (20, 20, 20), -1, cv2.LINE_AA)
    return img


def pose(data: HandModelData, name: str) -> np.ndarray:
    """Named demo poses as MANO theta (16, 3), built from local (flex, twist, abduction) angles."""
    local = np.zeros((16, 3))
    deg = np.radians
    if name == "fist":
        for mcp, pip, dip in ((1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9)):
            local[[mcp, pip, dip], 0] = deg([85, 100, 70])
        # Thumb across the middle phalanges of index and middle finger.
        local[13:16] = deg([[10, 6, -4], [40, 0, 15], [40, 0, 10]])
    elif name == "point":
        for mcp, pip, dip in ((4, 5, 6), (10, 11, 12), (7, 8, 9)):
            local[[mcp, pip, dip], 0] = deg([85, 100, 70])
        local[1, 0] = deg(5)
        local[13:16] = deg([[10, 6, -4], [40, 0, 15], [40, 0, 10]])
    elif name == "spread":
        side = 1.0 if data.side == "right" else -1.0
        local[1, 2], local[10, 2], local[7, 2] = deg([-15 * side, 12 * side, 25 * side])
        local[13, 2] = deg(-25 * side)
        local[[1, 4, 10, 7], 0] = deg(-10)
    elif name != "rest":
        raise ValueError(f"unknown pose {name!r}")
    return from_local(local, data.joint_frames)


VIEWS = {
    "dorsal": (np.array([0.0, 0.35, 0.0]), np.array([0.0, 0.0, 1.0])),
    "palmar": (np.array([0.0, -0.35, 0.0]), np.array([0.0, 0.0, 1.0])),
    "oblique": (np.array([0.06, -0.28, 0.16]), np.array([-1.0, 0.0, 0.0])),
}


def figure(data: HandModelData, poses=("rest", "fist", "point", "spread"), view: str = "oblique") -> np.ndarray:
    """One row of renders, one per pose, with the 21 keypoints drawn on the rest pose."""
    tiles = []
    for name in poses:
        out = forward(data, pose(data, name)[None])
        v = out.vertices[0]
        centre = (v.min(axis=0) + v.max(axis=0)) / 2
        eye_off, up = VIEWS[view]
        rot = look_at(centre + eye_off, centre, up)
        kp = out.keypoints[0] if name == "rest" else None
        tile = render(v, data.faces, rot, centre + eye_off, (480, 400), kp)
        cv2.putText(tile, name, (12, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (60, 60, 60), 2, cv2.LINE_AA)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("builtin", "mano"), default="builtin")
    ap.add_argument("--mano-dir", help="folder holding MANO_RIGHT.pkl (for --model mano)")
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    args = ap.parse_args(argv)
    if args.model == "mano":
        from handcap.inference.handmodel.mano import load_mano_data

        data = {s: load_mano_data(args.mano_dir, s) for s in ("right", "left")}
    else:
        data = {s: load_builtin(s) for s in ("right", "left")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "hand_model" if args.model == "builtin" else "hand_model_mano"
    for view in ("oblique", "palmar"):
        path = out / f"{tag}_{view}.png"
        cv2.imwrite(str(path), figure(data["right"], view=view))
        print("wrote", path)
    path = out / f"{tag}_left_right.png"
    rest = [forward(data[s], np.zeros((1, 16, 3))).vertices[0] for s in ("left", "right")]
    tiles = []
    for s, v in zip(("left", "right"), rest, strict=True):
        centre = (v.min(axis=0) + v.max(axis=0)) / 2
        eye = centre + VIEWS["dorsal"][0]
        tile = render(v, data[s].faces, look_at(eye, centre, VIEWS["dorsal"][1]), eye, (480, 400))
        cv2.putText(tile, f"{s} (dorsal)", (12, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (60, 60, 60), 2, cv2.LINE_AA)
        tiles.append(tile)
    cv2.imwrite(str(path), np.concatenate(tiles, axis=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
