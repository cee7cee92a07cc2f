"""MANO-parameter results of other tools (HaMeR, WiLoR, HandCap's own layout) -> ``Capture``.

numpy only (no torch, no scipy, no bpy): the built-in model's forward pass is ``core.handmodel.forward``.
The user's MANO files are read only when asked for (``model="mano"``, PCA poses, mean-relative poses).

Conventions (docs/foreign-results.md; MANO facts in docs/hand-model.md):

* pose: axis-angle (16 x 3, or global 3 + hand 15 x 3 / 45), rotation matrices (HaMeR's (1|15, 3, 3)),
  or PCA coefficients (6, 12, 45) of ``hands_components``; relative to the flat hand, or with
  ``pose_mean="mean"`` to MANO's ``hands_mean`` (smplx ``flat_hand_mean=False``). The capture stores
  flat-hand axis-angle;
* left hands of HaMeR and WiLoR are the mirrored right hand (the crop is flipped, the right model is run,
  and the demo flips x of the vertices and the sign of the camera's tx): pose rows mirror as
  (x, y, z) -> (x, -y, -z), which is the left model's pose since HandCap's left model is the right one
  mirrored in x;
* camera: ``transl`` (MANO convention, camera = MANO(theta, beta) + transl), or HaMeR's weak-perspective
  crop camera (s, tx, ty) with the crop's ``box_center`` / ``box_size`` and ``img_size``:
  t = [tx + 2 (cx - w/2) / (b s), ty + 2 (cy - h/2) / (b s), 2 f / (b s)], f = 5000 / 256 * max(w, h)
  unless the file or the options give one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core import quat
from ...core.capture import Capture, HandTrack, project_points
from ...core.capture_checks import key_side, track_order
from ...core.handmodel import HandModelData, forward, load_builtin, rest_joints
from ...core.keypoints import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS
from .association import HandRecord, link_records, record_track_id
from .common import (
    MANO_HINT,
    ForeignImport,
    ForeignOptions,
    ForeignResultsError,
    as_array,
    clip_fps,
    hold_fill,
    image_size_of,
    intrinsics,
)
from .layouts import HAMER_CROP, HAMER_FOCAL

MIRROR_ROTVEC = np.array([1.0, -1.0, -1.0])
PCA_SIZES = (6, 12, 45)
HAND_SIZE_M = 0.1  # a hand's extent, for its size in pixels when linking records into tracks


def rotmat_to_rotvec(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors (through quaternions, Shepperd's choice
    of the largest diagonal term for accuracy at every angle)."""
    r = np.asarray(r, np.float64)
    tr = np.trace(r, axis1=-2, axis2=-1)
    diag = np.stack([tr, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], -1)
    pick = np.argmax(diag, -1)
    q = np.empty(r.shape[:-2] + (4,))
    m = {(i, j): r[..., i, j] for i in range(3) for j in range(3)}
    cands = [
        np.stack([1 + tr, m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]], -1),
        np.stack([m[2, 1] - m[1, 2], 1 + 2 * m[0, 0] - tr, m[0, 1] + m[1, 0], m[0, 2] + m[2, 0]], -1),
        np.stack([m[0, 2] - m[2, 0], m[0, 1] + m[1, 0], 1 + 2 * m[1, 1] - tr, m[1, 2] + m[2, 1]], -1),
        np.stack([m[1, 0] - m[0, 1], m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], 1 + 2 * m[2, 2] - tr], -1),
    ]
    for i, c in enumerate(cands):
        q = np.where((pick == i)[..., None], c, q)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return quat.log(q)


def _check_rotations(r: np.ndarray, what: str) -> None:
    err = np.abs(np.einsum("...ji,...jk->...ik", r, r) - np.eye(3)).max()
    if err > 1e-3 or np.any(np.linalg.det(r) <= 0):
        raise ForeignResultsError(f"{what}: 3x3 matrices that are not rotations (|R^T R - I| = {err:.2g})")


def _squeeze_to(arr: np.ndarray, ndim: int) -> np.ndarray:
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr[0]
    return arr


class ManoPoseSpace:
    """``hands_components`` / ``hands_mean`` of the user's MANO files, loaded on first use."""

    def __init__(self, options: ForeignOptions):
        self.options = options
        self._arrays: dict[str, dict] = {}

    def get(self, side: str, why: str) -> dict:
        if not self.options.mano_dir:
            raise ForeignResultsError(f"{why} need MANO's own arrays, which HandCap does not ship: {MANO_HINT}")
        if side not in self._arrays:
            from ..handmodel.mano import convert_mano  # reads the user's pickles once (then a cache)

            try:
                self._arrays[side] = convert_mano(self.options.mano_dir, side, self.options.mano_cache_dir)
            except ValueError as exc:  # HandModelError: missing or unreadable MANO file
                raise ForeignResultsError(f"{why}: {exc}") from None
        return self._arrays[side]


def record_pose(rec: dict, index: int, src_side: str, fmt: str, mean: str, space: ManoPoseSpace, path: Path):
    """(16, 3) flat-hand axis-angle of one record, in the convention of ``src_side``'s model; and the format."""
    what = f"{path}: hand record {index}"
    if "full_pose" in rec:
        full = as_array(rec["full_pose"], "full_pose", path)
        full = _squeeze_to(full, 3 if full.shape[-2:] == (3, 3) else 2)
        if full.shape in ((16, 3, 3),):
            glob, hand = full[:1], full[1:]
        elif full.size == 48:
            glob, hand = full.reshape(16, 3)[:1], full.reshape(16, 3)[1:]
        else:
            raise ForeignResultsError(
                f"{what}: full_pose has shape {full.shape}, expected (16, 3), (48,) or (16, 3, 3)"
            )
    else:
        missing = [k for k in ("global_orient", "hand_pose") if k not in rec]
        if missing:
            raise ForeignResultsError(f"{what}: lacks {' and '.join(repr(m) for m in missing)}")
        glob = as_array(rec["global_orient"], "global_orient", path)
        hand = as_array(rec["hand_pose"], "hand_pose", path)
    glob = _squeeze_to(np.asarray(glob), 2)
    if glob.shape in ((1, 3, 3), (3, 3)):
        _check_rotations(glob.reshape(3, 3), f"{what} global_orient")
        g = rotmat_to_rotvec(glob.reshape(3, 3))
    elif glob.size == 3:
        g = glob.reshape(3)
    else:
        raise ForeignResultsError(f"{what}: global_orient has shape {glob.shape}, expected (3,) or (3, 3)")
    hand = np.asarray(hand)
    if hand.size == 135 and hand.shape[-2:] == (3, 3):
        kind, hand = "rotmat", hand.reshape(15, 3, 3)
    elif hand.size == 45 and fmt != "pca" and hand.shape[-1] in (3, 45):
        kind, hand = "axis_angle", hand.reshape(45)
    elif (fmt == "pca" or hand.size in PCA_SIZES[:2]) and 0 < hand.size <= 45 and max(hand.shape) == hand.size:
        kind, hand = "pca", hand.reshape(-1)
    else:
        raise ForeignResultsError(
            f"{what}: hand_pose has shape {hand.shape}; expected (15, 3) or (45,) axis-angle, (15, 3, 3) rotation "
            f"matrices or PCA coefficients ({', '.join(map(str, PCA_SIZES))})"
        )
    if fmt not in ("auto", kind):
        raise ForeignResultsError(f"{what}: hand_pose of shape {hand.shape} is not in the {fmt} format asked for")
    if kind == "rotmat":
        _check_rotations(hand, f"{what} hand_pose")
        h = rotmat_to_rotvec(hand).reshape(45)
    elif kind == "axis_angle":
        h = hand.reshape(45)
    else:
        comps = space.get(src_side, f"PCA pose coefficients ({hand.size} per hand)")["hands_components"]
        h = hand.reshape(-1) @ comps[: hand.size]
    relative = mean if mean != "auto" else ("mean" if kind == "pca" else "flat")
    if relative == "mean":
        h = h + space.get(src_side, "poses relative to MANO's mean hand (flat_hand_mean=False)")["hands_mean"]
    return np.concatenate([g, h]).reshape(NUM_JOINTS, 3), kind, relative


def _side_of(rec: dict, index: int, path: Path) -> str:
    if "is_right" in rec:
        v = np.asarray(rec["is_right"]).reshape(-1)
        if v.size != 1 or v.dtype.kind not in "biuf":
            raise ForeignResultsError(f"{path}: hand record {index}: 'is_right' must be one number")
        return "right" if float(v[0]) > 0.5 else "left"
    if "side" in rec:
        text = str(np.asarray(rec["side"]).reshape(-1)[0]).strip().lower()
        if text in ("right", "r"):
            return "right"
        if text in ("left", "l"):
            return "left"
        raise ForeignResultsError(f"{path}: hand record {index}: side {text!r} is neither right nor left")
    raise ForeignResultsError(f"{path}: hand record {index} says no side ('is_right', 'right' or 'side')")


def _scalar(value, what: str, path: Path) -> float:
    arr = as_array(value, what, path).reshape(-1)
    if arr.size != 1:
        raise ForeignResultsError(f"{path}: '{what}' must be one number, got shape {np.shape(value)}")
    return float(arr[0])


def record_transl(rec, index, side, mirrored, cam_flipped, focal, size, path) -> tuple[np.ndarray, str]:
    """Camera-frame MANO translation of one record and how it was given ("transl" / "weak-perspective")."""
    what = f"{path}: hand record {index}"
    if "transl" in rec:
        t = _squeeze_to(as_array(rec["transl"], "transl", path), 1)
        if t.shape != (3,):
            raise ForeignResultsError(f"{what}: translation has shape {t.shape}, expected (3,)")
        return t, "transl"
    need = [k for k in ("cam", "box_center", "box_size") if k not in rec]
    if need:
        raise ForeignResultsError(
            f"{what}: no translation ('transl' / 'pred_cam_t_full') and no weak-perspective camera "
            f"('pred_cam' with 'box_center', 'box_size', 'img_size'): lacks {need}"
        )
    cam = _squeeze_to(as_array(rec["cam"], "pred_cam", path), 1)
    center = _squeeze_to(as_array(rec["box_center"], "box_center", path), 1)
    box = _scalar(rec["box_size"], "box_size", path)
    if cam.shape != (3,) or center.shape != (2,):
        raise ForeignResultsError(f"{what}: pred_cam must be (s, tx, ty) and box_center (cx, cy)")
    s, tx, ty = cam
    if not (s > 0 and box > 0):
        raise ForeignResultsError(f"{what}: weak-perspective scale and box size must be positive, got {s}, {box}")
    if side == "left" and mirrored and not cam_flipped:
        tx = -tx  # the network saw the flipped crop
    w, h = size
    bs = box * s
    return np.array([tx + 2 * (center[0] - w / 2) / bs, ty + 2 * (center[1] - h / 2) / bs, 2 * focal / bs]), "weak"


def load_model(side: str, options: ForeignOptions) -> HandModelData:
    if options.model == "builtin":
        return load_builtin(side)
    from ..handmodel.mano import load_mano_data

    try:
        return load_mano_data(options.mano_dir, side, cache_dir=options.mano_cache_dir)
    except ValueError as exc:
        raise ForeignResultsError(f"MANO hand model: {exc}") from None


def _setting(options_value, file_value, default):
    if options_value not in (None, "auto"):
        return options_value
    if file_value is not None:
        return file_value
    return default


def mano_capture(path: Path, layout: str, records: list[dict], top: dict, options: ForeignOptions) -> ForeignImport:
    """Build the capture of MANO-parameter records (see ``layouts.records_from_*``)."""
    warnings: list[str] = []
    if not records:
        raise ForeignResultsError(f"{path}: holds no hand records")
    vendor = layout in ("hamer", "wilor")
    fmt = _setting(options.pose_format, top.get("pose_format"), "auto")
    mean = _setting(options.pose_mean, top.get("pose_mean"), "auto")
    mirrored = bool(_setting(options.left_mirrored, top.get("left_mirrored"), vendor))
    cam_flipped = bool(top.get("pred_cam_flipped", False))
    for name, value, allowed in (
        ("pose_format", fmt, ("auto", "axis_angle", "rotmat", "pca")),
        ("pose_mean", mean, ("auto", "flat", "mean")),
    ):
        if value not in allowed:
            raise ForeignResultsError(f"{path}: {name} {value!r} is not one of {', '.join(allowed)}")
    size_src = top.get("image_size", records[0].get("img_size"))
    if size_src is None and options.image_size is None:
        raise ForeignResultsError(f"{path}: the image size is not in the file; give it (--image-size WxH)")
    size = image_size_of(size_src, path) if size_src is not None else tuple(int(v) for v in options.image_size)
    focal = top.get("focal_length", records[0].get("focal_length"))
    focal = None if focal is None else _scalar(focal, "focal_length", path)
    if focal is None and vendor:
        focal = HAMER_FOCAL / HAMER_CROP * max(size)
    k = intrinsics(size, options, focal, as_array(top["K"], "K", path) if "K" in top else None)
    space = ManoPoseSpace(options)
    entries: list[tuple] = []  # (theta, beta, transl, score) per record
    links: list[HandRecord] = []
    models: dict[str, HandModelData] = {}
    how: set[str] = set()
    for i, rec in enumerate(records):
        side = _side_of(rec, i, path)
        src = "right" if side == "left" and mirrored else side
        theta, kind, relative = record_pose(rec, i, src, fmt, mean, space, path)
        if src != side:
            theta = theta * MIRROR_ROTVEC
        beta = _squeeze_to(as_array(rec.get("betas", np.zeros(NUM_BETAS)), "betas", path), 1)
        if beta.shape != (NUM_BETAS,):
            raise ForeignResultsError(f"{path}: hand record {i}: betas has shape {beta.shape}, expected (10,)")
        t, cam_kind = record_transl(rec, i, side, mirrored, cam_flipped, k.fx, size, path)
        frame = int(round(_scalar(rec.get("frame", 0), "frame", path)))
        if frame < 0:
            raise ForeignResultsError(f"{path}: hand record {i}: frame {frame} is negative")
        score = float(np.clip(_scalar(rec.get("score", 1.0), "score", path), 0.0, 1.0))
        how.add(f"{kind}/{relative}/{cam_kind}")
        if side not in models:
            models[side] = load_model(side, options)
        wrist = rest_joints(models[side], beta)[0] + t  # MANO turns the hand about its rest wrist
        z = float(wrist[2])
        if not z > 1e-3:  # before linking: a hand seen from behind would only make a track of its own
            raise ForeignResultsError(
                f"{path}: the {side} hand is behind the camera in frame {frame} (check the camera)"
            )
        centre = k.matrix[:2, :2] @ (wrist[:2] / z) + k.matrix[:2, 2]
        entries.append((theta, beta, t, score))
        try:
            ident = record_track_id(rec)
        except ValueError as exc:
            raise ForeignResultsError(f"{path}: hand record {i}: {exc}") from None
        links.append(HandRecord(frame, side, centre, k.fx * HAND_SIZE_M / z, score, ident))
    keys, link_warnings = link_records(links, options.hands)
    warnings += link_warnings
    all_frames = sorted({r.frame for r, key in zip(links, keys, strict=True) if key is not None})
    frames = np.arange(all_frames[0], all_frames[-1] + 1, dtype=np.int64)
    by_key: dict[str, dict[int, tuple]] = {}
    for r, key, entry in zip(links, keys, entries, strict=True):
        if key is not None:
            by_key.setdefault(key, {})[r.frame] = entry
    hands = {}
    for key in sorted(by_key, key=track_order):
        hands[key] = _track(key, by_key[key], frames, k, models[key_side(key)], warnings, path)
    fps = clip_fps(_scalar(top["fps"], "fps", path) if "fps" in top else None, options, len(frames), warnings)
    capture = Capture(
        source=str(path),
        frames=frames,
        fps=fps,
        image_size=size,
        intrinsics=k,
        hand_model=next(iter(hands.values()))[1],
        hands={s: h for s, (h, _) in hands.items()},
        info={
            "imported": {
                "file": str(path),
                "layout": layout,
                "pose": sorted(how),
                "left_mirrored": mirrored,
                "records": len(records),
            },
            "warnings": list(warnings),
        },
    )
    return ForeignImport(capture, layout, warnings)


def _track(key, by_frame, frames, k, model, warnings, path) -> tuple[HandTrack, str]:
    side = key_side(key)
    t = len(frames)
    valid = np.isin(frames, list(by_frame))
    rows = np.flatnonzero(valid)
    theta = np.zeros((t, NUM_JOINTS, 3))
    betas = np.zeros((t, NUM_BETAS))
    transl = np.zeros((t, 3))
    conf = np.zeros(t)
    for r in rows:
        theta[r], betas[r], transl[r], conf[r] = by_frame[int(frames[r])]
    # one shape per clip: the mean; each frame's translation keeps its own wrist (J0 moves with beta)
    beta = betas[rows].mean(0)
    j0 = rest_joints(model, betas[rows])[:, 0]
    transl[rows] = transl[rows] + j0 - rest_joints(model, beta)[0]
    if np.ptp(betas[rows], axis=0).max() > 1e-6:
        own = forward(model, theta[rows], betas[rows], transl[rows]).keypoints
        shared = forward(model, theta[rows], beta, transl[rows]).keypoints
        dev = 1000 * np.linalg.norm(own - shared, axis=-1).max()
        if dev > 0.5:
            warnings.append(
                f"{key} hand: per-frame shapes averaged to one per clip (keypoints move up to {dev:.1f} mm)"
            )
    theta, transl = hold_fill(theta, valid), hold_fill(transl, valid)
    kp3d = forward(model, theta, beta, transl).keypoints
    if np.any(kp3d[valid][..., 2] <= 1e-3):
        bad = frames[valid][np.any(kp3d[valid][..., 2] <= 1e-3, axis=1)][0]
        raise ForeignResultsError(f"{path}: the {key} hand is behind the camera in frame {bad} (check the camera)")
    kp2d = project_points(kp3d, k.matrix)
    track = HandTrack(
        side=side,
        theta=theta.astype(np.float32),
        beta=beta.astype(np.float32),
        transl=transl.astype(np.float32),
        kp2d=kp2d.astype(np.float32),
        kp3d=kp3d.astype(np.float32),
        frame_conf=conf.astype(np.float32),
        kp_conf=np.repeat(conf[:, None], NUM_KEYPOINTS, 1).astype(np.float32),
        valid=valid,
        rest_joints=rest_joints(model, beta).astype(np.float32),
    )
    return track, model.model_id
