"""A HandCap capture written out in the foreign layouts HandCap reads (round-trip tests, examples for
docs/foreign-results.md). numpy and the standard library only; JSON numbers are written with repr, so
they read back exactly.

MANO layouts need a capture whose hands the model reproduces from (theta, beta, transl) alone: zero
``joint_offsets`` (a foreign tool has no per-clip palm calibration).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ...core.capture import Capture
from ...core.keypoints import NUM_KEYPOINTS
from ...core.lbs import rodrigues
from .keypoint_results import MP_NAMES
from .layouts import HAMER_CROP, HAMER_FOCAL
from .mano_results import MIRROR_ROTVEC

BOX_SIZE_PX = 200.0  # crop size written with weak-perspective cameras (any positive size round-trips)


def _records(capture: Capture, mirror_left: bool):
    """(frame, side, theta (16, 3) in the file's convention, beta, transl) of every valid row (any number of
    tracks: a file of several people's hands lists each frame's hands with their sides only)."""
    for h in capture.hands.values():
        side = h.side
        for row in np.flatnonzero(h.valid):
            theta = h.theta[row].astype(np.float64)
            if side == "left" and mirror_left:
                theta = theta * MIRROR_ROTVEC
            yield int(capture.frames[row]), side, theta, h.beta.astype(np.float64), h.transl[row].astype(np.float64)


def weak_camera(transl: np.ndarray, focal: float, size, center, box: float = BOX_SIZE_PX) -> np.ndarray:
    """HaMeR's crop camera (s, tx, ty) for a camera-frame translation (inverse of cam_crop_to_full)."""
    w, h = size
    s = 2 * focal / (box * transl[2])
    bs = box * s
    return np.array([s, transl[0] - 2 * (center[0] - w / 2) / bs, transl[1] - 2 * (center[1] - h / 2) / bs])


def write_mano_results(
    capture: Capture,
    path,
    layout: str = "handcap",
    pose_format: str = "axis_angle",
    camera: str = "transl",
    pca: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    pca_count: int = 45,
) -> Path:
    """Write ``capture`` as MANO parameters.

    layout: "handcap" (.npz columns or JSON records), "hamer" (rotation matrices, weak-perspective camera,
    left hands mirrored, nested ``pred_mano_params``) or "wilor" (WiLoR-mini's ``wilor_preds`` records,
    axis-angle, ``pred_cam_t_full``, left hands mirrored). pose_format / camera apply to "handcap";
    pca: side -> (hands_components (45, 45), hands_mean (45,)) for pose_format "pca" (mean-relative, as
    smplx's default); the components must be orthonormal (MANO's are) so the coefficients are exact.
    """
    path = Path(path)
    w, h = capture.image_size
    vendor = layout in ("hamer", "wilor")
    focal = HAMER_FOCAL / HAMER_CROP * max(w, h) if vendor else capture.intrinsics.fx
    recs = []
    for frame, side, theta, beta, transl in _records(capture, vendor):
        rec: dict = {"frame": frame}
        if layout == "hamer":
            rot = rodrigues(theta)
            centre = np.array([w / 2 + 37.0, h / 2 - 21.0])
            cam = weak_camera(transl, focal, (w, h), centre)
            if side == "left":
                cam[1] = -cam[1]  # the raw network output: the crop was flipped
            rec.update(
                {
                    "right": float(side == "right"),
                    "box_center": centre,
                    "box_size": BOX_SIZE_PX,
                    "img_size": np.array([w, h], float),
                    "pred_cam": cam,
                    "pred_mano_params": {"global_orient": rot[:1], "hand_pose": rot[1:], "betas": beta},
                }
            )
        elif layout == "wilor":
            rec.update(
                {
                    "is_right": float(side == "right"),
                    "wilor_preds": {
                        "global_orient": theta[None, :1],
                        "hand_pose": theta[None, 1:],
                        "betas": beta[None],
                        "pred_cam_t_full": transl[None],
                        "scaled_focal_length": focal,
                    },
                }
            )
        else:
            rec["side"] = side
            if pose_format == "rotmat":
                rot = rodrigues(theta)
                rec["global_orient"], rec["hand_pose"] = rot[0], rot[1:]
            elif pose_format == "pca":
                comps, mean = pca[side]
                rec["global_orient"] = theta[0]
                rec["hand_pose"] = (theta[1:].reshape(45) - mean) @ comps[:pca_count].T
            else:
                rec["global_orient"], rec["hand_pose"] = theta[0], theta[1:]
            rec["betas"] = beta
            if camera == "weak":
                centre = np.array([w / 2 - 15.0, h / 2 + 8.0])
                rec.update(
                    {
                        "pred_cam": weak_camera(transl, focal, (w, h), centre),
                        "box_center": centre,
                        "box_size": BOX_SIZE_PX,
                    }
                )
            else:
                rec["transl"] = transl
        recs.append(rec)
    top = {"image_size": [w, h], "fps": capture.fps}
    if layout == "handcap":
        top.update(
            {
                "format": "handcap.mano_results",
                "focal_length": focal,
                "pose_format": pose_format,
                "pose_mean": "mean" if pose_format == "pca" else "flat",
            }
        )
    if path.suffix.lower() == ".json":
        body: dict = {"hands": recs}
        if layout == "wilor":  # per frame, as a video loop over WiLoR-mini's predict() would collect them
            frames: dict[int, list] = {}
            for rec in recs:
                frames.setdefault(rec.pop("frame"), []).append(rec)
            body = {"frames": [{"frame": f, "hands": hs} for f, hs in sorted(frames.items())]}
        text = json.dumps({**top, **body}, default=_jsonable)
        path.write_text(text, encoding="utf-8")
        return path
    cols: dict[str, list] = {}
    for rec in recs:
        for key, value in _flat(rec).items():
            cols.setdefault(key, []).append(value)
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    arrays.update({k: np.asarray(v) for k, v in top.items()})
    np.savez(path, **arrays)
    return path


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}/{k}" if prefix else k
        out.update(_flat(v, name) if isinstance(v, dict) else {name: v})
    return out


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _mediapipe_hands(capture: Capture):
    """(frame row, MediaPipe label, normalised (21, 3) landmarks, world (21, 3)) of every valid row."""
    from ..fitting.ik import ray_rotation

    k = capture.intrinsics
    w, _ = capture.image_size
    for h in capture.hands.values():
        label = "Left" if h.side == "right" else "Right"  # MediaPipe names the mirrored hand
        for row in np.flatnonzero(h.valid):
            kp = h.kp3d[row].astype(np.float64)
            uv = h.kp2d[row].astype(np.float64)
            z = (kp[:, 2] - kp[0, 2]) / kp[0, 2] * k.fx / w
            lm = np.concatenate([uv / capture.image_size, z[:, None]], 1)
            world = (kp - kp.mean(0)) @ ray_rotation(uv.mean(0)[None], k.matrix)[0]
            yield row, label, lm, world


def write_mediapipe_json(capture: Capture, path, world: bool = True) -> Path:
    frames = [{"frame": int(f), "hands": []} for f in capture.frames]
    for row, label, lm, wl in _mediapipe_hands(capture):
        hand = {
            "handedness": [{"category_name": label, "score": 0.97}],
            "landmarks": [{"x": float(a), "y": float(b), "z": float(c)} for a, b, c in lm],
        }
        if world:
            hand["world_landmarks"] = wl.tolist()
        frames[row]["hands"].append(hand)
    obj = {"image_size": list(capture.image_size), "fps": capture.fps, "frames": frames}
    Path(path).write_text(json.dumps(obj), encoding="utf-8")
    return Path(path)


def write_mediapipe_csv(capture: Capture, path, world: bool = True) -> Path:
    header = ["frame", "handedness", "score"] + [f"{a}{k}" for k in range(NUM_KEYPOINTS) for a in "xyz"]
    if world:
        header += [f"w{a}{k}" for k in range(NUM_KEYPOINTS) for a in "xyz"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(header)
        for row, label, lm, wl in sorted(_mediapipe_hands(capture), key=lambda r: r[0]):
            cells = [int(capture.frames[row]), label, 0.97] + [repr(float(v)) for v in lm.reshape(-1)]
            if world:
                cells += [repr(float(v)) for v in wl.reshape(-1)]
            out.writerow(cells)
    return Path(path)


def write_freemocap(capture: Capture, folder, ext: str = ".csv") -> list[Path]:
    """``mediapipe_<side>_hand_3d_xyz.csv`` / ``.npy`` per hand: camera-frame keypoints in mm, one row per
    capture frame, empty (CSV) or NaN (npy) where the hand was not seen."""
    folder = Path(folder)
    written = []
    for side, h in capture.hands.items():
        pts = np.where(h.valid[:, None, None], h.kp3d.astype(np.float64) * 1000.0, np.nan)
        p = folder / f"mediapipe_{side}_hand_3d_xyz{ext}"
        if ext == ".npy":
            np.save(p, pts)
        else:
            with open(p, "w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow([f"{side}_hand_{n}_{a}" for n in MP_NAMES for a in "xyz"])
                for row in pts:
                    out.writerow(["" if not np.isfinite(v) else repr(float(v)) for v in row.reshape(-1)])
        written.append(p)
    return written
