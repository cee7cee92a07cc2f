"""The adapter table: key names of the layouts HandCap reads, and records of MANO-parameter files.

A MANO-parameter file holds one record per hand and frame. Whatever the container (``.npz`` columns,
JSON records, JSON frames with hands, nested dicts such as HaMeR's ``pred_mano_params`` or WiLoR-mini's
``wilor_preds``), keys are reduced to their last path component and renamed with ``ALIASES``; the result
is a list of per-hand dicts with canonical keys (``RECORD_FIELDS``) and a dict of file-level settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import ForeignResultsError

#: HaMeR and WiLoR cameras: focal length = FOCAL_LENGTH / IMAGE_SIZE * max(image width, height).
HAMER_FOCAL, HAMER_CROP = 5000.0, 256.0

#: last key component -> canonical record field
ALIASES = {
    "global_orient": "global_orient",
    "global_orientation": "global_orient",
    "root_pose": "global_orient",
    "hand_pose": "hand_pose",
    "full_pose": "full_pose",
    "theta": "full_pose",
    "betas": "betas",
    "beta": "betas",
    "transl": "transl",
    "translation": "transl",
    "cam_t": "transl",
    "cam_t_full": "transl",
    "pred_cam_t_full": "transl",
    "pred_cam": "cam",
    "cam": "cam",
    "box_center": "box_center",
    "box_size": "box_size",
    "img_size": "img_size",
    "scaled_focal_length": "focal_length",
    "focal_length": "focal_length",
    "is_right": "is_right",
    "right": "is_right",
    "side": "side",
    "handedness": "side",
    "frame": "frame",
    "frame_index": "frame",
    "frame_idx": "frame",
    "score": "score",
    "confidence": "score",
    "track_id": "track_id",  # the tool's own id of the hand over time (links records into tracks)
    "person_id": "track_id",  # with the side, one person's hand
    "k": "K",
    "camera_matrix": "K",
}
RECORD_FIELDS = frozenset(ALIASES.values()) - {"K"}
#: file-level settings (JSON top level or 0-d npz members)
FILE_FIELDS = (
    "format",
    "layout",
    "image_size",
    "fps",
    "K",
    "focal_length",
    "pose_format",
    "pose_mean",
    "left_mirrored",
    "pred_cam_flipped",
)
POSE_FIELDS = ("global_orient", "hand_pose", "full_pose")


def _base(key: str) -> str:
    return key.replace(".", "/").rsplit("/", 1)[-1].lower()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def detect_layout(path: Path, keys: set[str], forced: str) -> str:
    """The layout named by the options, else the one the file's keys point to."""
    if forced != "auto":
        return forced
    low = {k.lower() for k in keys}
    if any("pred_mano_params" in k for k in low):
        return "hamer"
    if any("wilor_preds" in k for k in low):
        return "wilor"
    bases = {_base(k) for k in low}
    if "right" in bases and "pred_cam" in bases:
        return "hamer"
    if "is_right" in bases and ("pred_cam_t_full" in bases or "scaled_focal_length" in bases):
        return "wilor"
    return "handcap"


def _canonical(flat: dict, path: Path, layout: str) -> tuple[dict, dict]:
    """(record fields, file-level fields) of one flattened dict."""
    rec, top = {}, {}
    for key, value in flat.items():
        base = _base(key)
        if layout == "hamer" and base == "focal_length":
            continue  # HaMeR's out['focal_length'] is the 256-pixel crop's camera, not the image's
        name = ALIASES.get(base, base)
        if name in RECORD_FIELDS:
            if name in rec:
                raise ForeignResultsError(f"{path}: two entries give '{name}' ({key!r} and another)")
            rec[name] = value
        elif name in FILE_FIELDS:
            top[name] = value
    return rec, top


def _top_scalar(value):
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value
    return value


def records_from_json(obj, path: Path, layout_option: str) -> tuple[str, list[dict], dict]:
    """(layout, per-hand records, file-level settings) of a parsed JSON MANO-parameter file."""
    if isinstance(obj, list):
        obj = {"hands": obj}
    if not isinstance(obj, dict):
        raise ForeignResultsError(f"{path}: expected a JSON object or a list of hand records")
    flat_keys = set(_flatten(obj))
    for fr in obj.get("frames", []) if isinstance(obj.get("frames"), list) else []:
        if isinstance(fr, dict):
            for h in fr.get("hands", []) or []:
                if isinstance(h, dict):
                    flat_keys |= set(_flatten(h))
    for h in obj.get("hands", []) if isinstance(obj.get("hands"), list) else []:
        if isinstance(h, dict):
            flat_keys |= set(_flatten(h))
    layout = detect_layout(path, flat_keys, layout_option)
    top = {}
    for k in FILE_FIELDS:
        if k in obj and not isinstance(obj[k], dict):
            top[k] = obj[k]
    raw: list[tuple[dict, int | None]] = []
    if isinstance(obj.get("frames"), list):
        for i, fr in enumerate(obj["frames"]):
            if isinstance(fr, list):
                raw += [(h, i) for h in fr]
            elif isinstance(fr, dict):
                hands = fr.get("hands", [])
                if not isinstance(hands, list):
                    raise ForeignResultsError(f"{path}: frames[{i}].hands must be a list")
                raw += [
                    (dict(h, frame=fr.get("frame", i)) if isinstance(h, dict) and "frame" not in h else h, i)
                    for h in hands
                ]
            else:
                raise ForeignResultsError(f"{path}: frames[{i}] must be an object or a list of hands")
    elif isinstance(obj.get("hands"), list):
        for i, h in enumerate(obj["hands"]):
            if isinstance(h, list):  # a list per frame (WiLoR-mini's predict() output per image)
                raw += [(x, i) for x in h]
            else:
                raw.append((h, None))
    else:
        rec, top2 = _canonical(_flatten(obj), path, layout)
        return layout, split_columns(rec, path), {**top2, **top}
    records = []
    for i, (h, frame) in enumerate(raw):
        if not isinstance(h, dict):
            raise ForeignResultsError(f"{path}: hand record {i} is not an object")
        rec, _ = _canonical(_flatten(h), path, layout)
        if "frame" not in rec:
            rec["frame"] = frame if frame is not None else 0
        records.append(rec)
    return layout, records, top


def records_from_npz(data: dict[str, np.ndarray], path: Path, layout_option: str) -> tuple[str, list[dict], dict]:
    """(layout, per-hand records, file-level settings) of an npz whose members are columns (leading N)."""
    layout = detect_layout(path, set(data), layout_option)
    rec, top = _canonical(data, path, layout)
    return layout, split_columns(rec, path), {k: _top_scalar(v) for k, v in top.items()}


def split_columns(columns: dict, path: Path) -> list[dict]:
    """Column arrays with a leading record axis -> one dict per record; 0-d entries apply to all."""
    pose = [k for k in POSE_FIELDS if k in columns]
    if not pose:
        raise ForeignResultsError(
            f"{path}: no pose found (expected 'global_orient' and 'hand_pose', or 'full_pose'; "
            "see docs/foreign-results.md)"
        )
    n = len(np.asarray(columns[pose[0]], dtype=object if isinstance(columns[pose[0]], list) else None))
    records = [{} for _ in range(n)]
    for key, value in columns.items():
        arr = np.asarray(value)
        if key in ("side",) and arr.ndim == 0:
            for r in records:
                r[key] = arr.item()
            continue
        per_record_0d = key in ("box_size", "focal_length", "is_right", "frame", "score", "side", "track_id")
        if arr.ndim == 0 or (key in ("img_size",) and arr.ndim == 1):
            for r in records:
                r[key] = arr
        elif arr.shape[0] == n and (arr.ndim >= 1 if per_record_0d else arr.ndim >= 2):
            for i, r in enumerate(records):
                r[key] = arr[i]
        else:
            raise ForeignResultsError(f"{path}: '{key}' has shape {arr.shape}, expected a first axis of {n} hands")
    for r in records:
        r.setdefault("frame", 0)  # no frame index: one image (HaMeR's demo runs per image)
    return records
