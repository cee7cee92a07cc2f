"""Drawing what HandCap estimated over the original image (numpy + OpenCV, RGB uint8 images).

All functions take and return RGB images (H, W, 3) uint8 and never modify their
input. Keypoints are in pixels (HandKeypoint order); 3D points are in the
camera frame (OpenCV axes, metres) and are projected with the capture's K.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...core.capture import project_points
from ...core.keypoints import KEYPOINT_BONES, KEYPOINT_FINGER

#: RGB colour per finger (thumb, index, middle, ring, pinky) and for the wrist; chosen far apart in hue so a
#: test (and a person) can tell which finger a drawn point belongs to.
FINGER_COLORS = np.array(
    [[255, 64, 64], [255, 200, 0], [64, 220, 64], [0, 160, 255], [200, 64, 255]],
    dtype=np.uint8,
)
WRIST_COLOR = np.array([255, 255, 255], dtype=np.uint8)
GT_COLOR = np.array([255, 0, 255], dtype=np.uint8)


def keypoint_color(k: int) -> tuple[int, int, int]:
    f = int(KEYPOINT_FINGER[k])
    c = WRIST_COLOR if f < 0 else FINGER_COLORS[f]
    return int(c[0]), int(c[1]), int(c[2])


def _pt(p: np.ndarray) -> tuple[int, int]:
    # Continuous pixel coordinates (origin at the top-left corner): u = 10.3 lies in pixel column 10.
    return int(np.floor(p[0])), int(np.floor(p[1]))


def _scale(image: np.ndarray) -> int:
    return max(1, int(round(max(image.shape[:2]) / 400)))


def draw_keypoints(
    image: np.ndarray,
    kp2d: np.ndarray,
    conf: np.ndarray | None = None,
    *,
    min_conf: float = 0.0,
    radius: int | None = None,
    color: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw the 21-point skeleton: bones then points, coloured per finger (or one ``color``).

    kp2d: (21, 2) pixels; conf: (21,) in [0, 1], points below ``min_conf`` are skipped.
    """
    out = image.copy()
    kp2d = np.asarray(kp2d, dtype=np.float64)
    ok = np.all(np.isfinite(kp2d), axis=1)
    if conf is not None:
        ok &= np.asarray(conf) >= min_conf
    s = _scale(out)
    r = radius if radius is not None else 2 * s + 1
    for parent, child in KEYPOINT_BONES:
        if ok[parent] and ok[child]:
            c = color or keypoint_color(child)
            cv2.line(out, _pt(kp2d[parent]), _pt(kp2d[child]), c, s, cv2.LINE_AA)
    for k in range(len(kp2d)):
        if ok[k]:
            cv2.circle(out, _pt(kp2d[k]), r, color or keypoint_color(k), -1, cv2.LINE_8)
    return out


project = project_points  # one pinhole projection for the whole project (core.capture)


def draw_mesh(
    image: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    *,
    color: tuple[int, int, int] = (230, 180, 150),
    alpha: float = 0.6,
) -> np.ndarray:
    """Overlay a Lambert-shaded mesh (painter's algorithm, far faces first).

    vertices: (V, 3) camera frame, metres; faces: (F, 3) int; K: (3, 3) pixel intrinsics.
    """
    out = image.copy()
    uv = project(vertices, K)
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    centres = tri.mean(axis=1)
    view = -centres / (np.linalg.norm(centres, axis=1, keepdims=True) + 1e-12)
    # Two-sided shading: winding conventions differ between hand models and mirrored sides.
    shade = 0.25 + 0.75 * np.abs(np.sum(normals * view, axis=1))
    order = np.argsort(-centres[:, 2])
    layer = out.copy()
    mask = np.zeros(out.shape[:2], np.uint8)
    base = np.asarray(color, dtype=np.float64)
    puv = uv[faces]
    visible = np.all(np.isfinite(puv), axis=(1, 2))
    # Fixed-point coordinates (4 fractional bits) keep sub-pixel placement.
    fixed = np.round(np.nan_to_num(puv) * 16).astype(np.int32)
    for f in order:
        if not visible[f]:
            continue
        c = tuple(int(v) for v in np.clip(base * shade[f], 0, 255))
        cv2.fillConvexPoly(layer, fixed[f], c, cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(mask, fixed[f], 255, cv2.LINE_8, shift=4)
    m = (mask[..., None] / 255.0) * alpha
    return (out * (1 - m) + layer * m).astype(np.uint8)


def rotation_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rotation_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def skeleton_view(
    kp3d: np.ndarray,
    rotation: np.ndarray,
    size: int = 200,
    *,
    gt3d: np.ndarray | None = None,
    extent_m: float = 0.25,
    label: str = "",
    centre: np.ndarray | None = None,
) -> np.ndarray:
    """A small orthographic view of the 3D skeleton (root-centred), seen after ``rotation``.

    kp3d, gt3d: (21, 3) metres, camera frame. The view keeps image axes (x right, y down), so rotation=I is
    what the camera sees; rotation_y(90) looks from the side. ``extent_m`` is the width shown. ``centre``
    (3,) metres, camera frame, is put at the middle of the view (default: the wrist, kp3d[0]).
    """
    img = np.full((size, size, 3), 32, np.uint8)
    scale = size / extent_m
    centre = np.asarray(kp3d)[0] if centre is None else np.asarray(centre, np.float64)

    def to_px(points):
        local = (np.asarray(points) - centre) @ rotation.T
        return local[:, :2] * scale + size / 2

    if gt3d is not None and np.all(np.isfinite(gt3d)):
        img = draw_keypoints(img, to_px(gt3d), color=tuple(int(c) for c in GT_COLOR), radius=2)
    img = draw_keypoints(img, to_px(kp3d), radius=3)
    if label:
        cv2.putText(img, label, (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1, cv2.LINE_AA)
    return img


def side_by_side(images: list[np.ndarray], height: int) -> np.ndarray:
    """Resize each image to ``height`` and concatenate horizontally."""
    scaled = []
    for im in images:
        w = max(1, int(round(im.shape[1] * height / im.shape[0])))
        scaled.append(cv2.resize(im, (w, height), interpolation=cv2.INTER_AREA))
    return np.concatenate(scaled, axis=1)
