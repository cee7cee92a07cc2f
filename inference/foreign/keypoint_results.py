"""Keypoint results of other tools (MediaPipe landmarks, FreeMoCap's hand data) -> per-side keypoints.

numpy and the standard library only. The fit that turns them into a capture is ``keypoint_fit``.

* MediaPipe (JSON or CSV): per frame and hand 21 landmarks with x, y normalised to [0, 1] by the image
  width and height, z a relative depth at the scale of x (about 0 at the wrist), optional world
  landmarks in metres, and a handedness label. MediaPipe's label assumes a mirrored selfie image, so for
  ordinary footage it names the other hand: HandCap swaps it unless ``mirrored`` says the footage is a
  selfie view (docs/hand-conventions);
* FreeMoCap: ``mediapipe_right_hand_3d_xyz.csv`` (columns ``right_hand_wrist_x`` ... ``_z``, one row per
  frame, millimetres, FreeMoCap's world frame, empty or NaN where the hand was not tracked) or the
  ``.npy`` of shape (frames, 21, 3); the file of the other hand beside it is read too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.keypoints import NUM_KEYPOINTS, HandKeypoint
from .association import HandRecord, link_records
from .common import ForeignOptions, ForeignResultsError, as_array, image_size_of, load_json

#: MediaPipe's HandLandmark names, lower case, in HandKeypoint order (FreeMoCap's column names).
MP_NAMES = tuple(
    n.lower().replace("index_", "index_finger_").replace("middle_", "middle_finger_").replace("ring_", "ring_finger_")
    for n in HandKeypoint.__members__
)


@dataclass
class SideKeypoints:
    """One hand over the T frames of a ``KeypointResults``.

    Attributes:
        kp2d: (T, 21, 2) pixels (rows of missing frames are zeros).
        world: (T, 21, 3) metres, camera-aligned axes about any origin near the hand, as seen along the
            hand's viewing ray (MediaPipe's world landmarks), or None.
        camera: (T, 21, 3) metres in the camera frame (FreeMoCap through the virtual camera), or None.
        score: (T,) hand confidence in [0, 1] (0 where missing).
        valid: (T,) bool.
    """

    kp2d: np.ndarray
    world: np.ndarray | None
    camera: np.ndarray | None
    score: np.ndarray
    valid: np.ndarray


@dataclass
class KeypointResults:
    """frames: (T,) source frame indices; image_size: (w, h) pixels; fps: None when the file gives none;
    hands: track key ("right", "left", "right_2", ...; ``association``) -> SideKeypoints; info: what the
    reader decided (layout, labels, virtual camera)."""

    frames: np.ndarray
    image_size: tuple[int, int]
    fps: float | None
    layout: str
    hands: dict[str, SideKeypoints]
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _swap(side: str) -> str:
    return "left" if side == "right" else "right"


def _label(h: dict, path: Path, where: str) -> tuple[str, float | None]:
    """(label as MediaPipe wrote it, its score) from the forms MediaPipe's APIs serialise."""
    v = h.get("handedness", h.get("label", h.get("category_name")))
    score = None
    if isinstance(v, list):
        v = v[0] if v else None
    if isinstance(v, dict):
        score = v.get("score")
        v = v.get("category_name", v.get("label", v.get("display_name")))
    if not isinstance(v, str) or v.strip().lower() not in ("left", "right"):
        raise ForeignResultsError(f"{path}: {where}: handedness must be 'Left' or 'Right', got {v!r}")
    return v.strip().lower(), score


def _landmarks(value, path: Path, where: str, dims: int) -> np.ndarray:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        try:
            value = [[p["x"], p["y"], p.get("z", 0.0)] for p in value]
        except (KeyError, TypeError):
            raise ForeignResultsError(f"{path}: {where}: landmarks need 'x' and 'y'") from None
    arr = as_array(value, where, path)
    if arr.ndim != 2 or arr.shape[0] != NUM_KEYPOINTS or arr.shape[1] not in (2, 3):
        raise ForeignResultsError(f"{path}: {where}: expected 21 landmarks of 2 or 3 values, got shape {arr.shape}")
    if dims == 3 and arr.shape[1] == 2:
        arr = np.concatenate([arr, np.zeros((NUM_KEYPOINTS, 1))], 1)
    return arr


def _frame_hands(fr: dict, path: Path, i: int) -> list[dict]:
    """Hand dicts of one frame: {"hands": [...]} or the Tasks API's parallel lists."""
    if "hands" in fr:
        if not isinstance(fr["hands"], list):
            raise ForeignResultsError(f"{path}: frames[{i}].hands must be a list")
        return fr["hands"]
    lms = fr.get("hand_landmarks", fr.get("multi_hand_landmarks", []))
    world = fr.get("hand_world_landmarks", fr.get("multi_hand_world_landmarks", []))
    labels = fr.get("handedness", fr.get("multi_handedness", []))
    if not (isinstance(lms, list) and isinstance(labels, list)) or len(labels) != len(lms):
        raise ForeignResultsError(f"{path}: frames[{i}]: hand_landmarks and handedness must be lists of equal length")
    out = []
    for j, lm in enumerate(lms):
        lm = lm.get("landmark", lm) if isinstance(lm, dict) else lm
        h = {"landmarks": lm, "handedness": labels[j]}
        if isinstance(world, list) and j < len(world):
            w = world[j]
            h["world_landmarks"] = w.get("landmark", w) if isinstance(w, dict) else w
        out.append(h)
    return out


def is_mediapipe_json(obj) -> bool:
    frames = obj.get("frames") if isinstance(obj, dict) else None
    if not isinstance(frames, list):
        return False
    keys = ("landmarks", "hand_landmarks", "multi_hand_landmarks")
    for fr in frames:
        if isinstance(fr, dict):
            if any(k in fr for k in keys[1:]):
                return True
            for h in fr.get("hands", []) if isinstance(fr.get("hands"), list) else []:
                if isinstance(h, dict) and "landmarks" in h:
                    return True
    return False


def _collect(entries, t, size, options, path, layout, frames, fps, warnings) -> KeypointResults:
    """entries: (frame row, label, score, (21, 3) normalised landmarks, (21, 3) world or None)."""
    w, h = size
    links = []
    for row, label, score, lm, _ in entries:
        px = lm[:, :2] * [w, h]
        spread = float(np.sqrt(((px - px.mean(0)) ** 2).sum(1).mean()))
        s = 1.0 if score is None else float(np.clip(score, 0.0, 1.0))
        side = label if options.mirrored else _swap(label)
        links.append(HandRecord(int(frames[row]), side, px.mean(0), max(spread, 1.0), s))
    keys, link_warnings = link_records(links, options.hands)
    warnings += link_warnings
    acc: dict[str, dict] = {}
    for (row, _, _, lm, world), key, link in zip(entries, keys, links, strict=True):
        if key is None:
            continue
        d = acc.setdefault(
            key,
            {
                "kp2d": np.zeros((t, NUM_KEYPOINTS, 2)),
                "z": np.zeros((t, NUM_KEYPOINTS)),
                "world": np.full((t, NUM_KEYPOINTS, 3), np.nan),
                "score": np.zeros(t),
                "valid": np.zeros(t, bool),
            },
        )
        d["kp2d"][row] = lm[:, :2] * [w, h]
        d["z"][row] = lm[:, 2] * w
        d["world"][row] = np.nan if world is None else world
        d["score"][row], d["valid"][row] = link.score, True
    if not acc:
        raise ForeignResultsError(f"{path}: no hand in any frame")
    hands = {}
    for key, d in acc.items():
        world = d["world"]
        missing = d["valid"] & ~np.isfinite(world).all((1, 2))
        if missing.any():
            world[missing] = pseudo_world(d["kp2d"][missing], d["z"][missing])
            if not np.any(d["z"][missing]):
                warnings.append(f"{key} hand: 2D landmarks only (no z, no world landmarks): the fit sees a flat hand")
        world[~d["valid"]] = 0.0
        hands[key] = SideKeypoints(d["kp2d"], world, None, d["score"], d["valid"])
    info = {
        "labels": "as written (mirrored footage)" if options.mirrored else "swapped (MediaPipe assumes a selfie view)"
    }
    return KeypointResults(frames, size, fps, layout, hands, warnings, info)


def pseudo_world(kp2d: np.ndarray, z_px: np.ndarray) -> np.ndarray:
    """(N, 21, 3) metres from image landmarks and MediaPipe's relative z (pixels at x's scale): the shape
    the image shows, scaled so that wrist to middle MCP has the built-in hand's rest length."""
    from ...core.handmodel import load_builtin

    j = load_builtin("right").j_template
    span = float(np.linalg.norm(j[4] - j[0]))  # MANO joint 4 = middle MCP
    p = np.concatenate([kp2d, z_px[..., None]], -1)
    d = np.linalg.norm(p[:, HandKeypoint.MIDDLE_MCP] - p[:, HandKeypoint.WRIST], axis=-1)
    return (p - p[:, :1]) * (span / np.maximum(d, 1e-6))[:, None, None]


def read_mediapipe_json(path: Path, obj, options: ForeignOptions) -> KeypointResults:
    if not isinstance(obj, dict) or not isinstance(obj.get("frames"), list):
        raise ForeignResultsError(f"{path}: a MediaPipe results file needs a 'frames' list")
    size_src = obj.get("image_size") or ([obj["width"], obj["height"]] if "width" in obj and "height" in obj else None)
    if size_src is None and options.image_size is None:
        raise ForeignResultsError(f"{path}: no image size ('image_size' or 'width'/'height'); give --image-size WxH")
    size = image_size_of(size_src, path) if size_src is not None else tuple(options.image_size)
    frames_list = obj["frames"]
    frames = []
    entries = []
    for i, fr in enumerate(frames_list):
        if not isinstance(fr, dict):
            raise ForeignResultsError(f"{path}: frames[{i}] is not an object")
        frames.append(int(fr.get("frame", fr.get("frame_index", i))))
        for j, h in enumerate(_frame_hands(fr, path, i)):
            where = f"frames[{i}].hands[{j}]"
            if not isinstance(h, dict):
                raise ForeignResultsError(f"{path}: {where} is not an object")
            label, lscore = _label(h, path, where)
            if "landmarks" not in h:
                raise ForeignResultsError(f"{path}: {where} has no 'landmarks'")
            lm = _landmarks(h["landmarks"], path, where + ".landmarks", 3)
            world = h.get("world_landmarks")
            world = None if world is None else _landmarks(world, path, where + ".world_landmarks", 3)
            entries.append((i, label, h.get("score", lscore), lm, world))
    frames = np.asarray(frames, np.int64)
    if len(frames) == 0 or np.any(np.diff(frames) <= 0):
        raise ForeignResultsError(f"{path}: frame indices must be present and strictly increasing")
    fps = float(obj["fps"]) if isinstance(obj.get("fps"), int | float) else None
    return _collect(entries, len(frames), size, options, path, "mediapipe", frames, fps, [])


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ForeignResultsError(f"{path}: cannot read as CSV ({exc})") from None
    if len(rows) < 2:
        raise ForeignResultsError(f"{path}: a CSV needs a header row and at least one data row")
    return [c.strip() for c in rows[0]], rows[1:]


def _floats(cells: list[str], path: Path, line: int) -> np.ndarray:
    try:
        return np.array([float(c) if c.strip() else np.nan for c in cells])
    except ValueError:
        raise ForeignResultsError(f"{path}: line {line}: non-numeric value") from None


def read_mediapipe_csv(path: Path, header: list[str], rows, options: ForeignOptions) -> KeypointResults:
    """Columns: frame, handedness, [score], x0, y0, [z0], ... x20, y20, [z20], [wx0, wy0, wz0, ...]."""
    col = {c.lower(): i for i, c in enumerate(header)}
    need = ["frame", "handedness"] + [f"{a}{k}" for k in range(NUM_KEYPOINTS) for a in "xy"]
    missing = [c for c in need if c not in col]
    if missing:
        raise ForeignResultsError(
            f"{path}: MediaPipe CSV lacks columns {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    if options.image_size is None:
        raise ForeignResultsError(f"{path}: a CSV does not hold the image size; give it (--image-size WxH)")
    has_z = all(f"z{k}" in col for k in range(NUM_KEYPOINTS))
    has_w = all(f"w{a}{k}" in col for k in range(NUM_KEYPOINTS) for a in "xyz")
    parsed = []
    for n, r in enumerate(rows, start=2):
        if len(r) != len(header):
            raise ForeignResultsError(f"{path}: line {n} has {len(r)} cells, the header {len(header)}")
        label, _ = _label({"handedness": r[col["handedness"]]}, path, f"line {n}")
        get = lambda names, r=r, n=n: _floats([r[col[c]] for c in names], path, n)  # noqa: E731
        lm = np.stack(
            [
                get([f"x{k}" for k in range(21)]),
                get([f"y{k}" for k in range(21)]),
                get([f"z{k}" for k in range(21)]) if has_z else np.zeros(21),
            ],
            -1,
        )
        world = np.stack([get([f"w{a}{k}" for k in range(21)]) for a in "xyz"], -1) if has_w else None
        if not np.all(np.isfinite(lm)) or (world is not None and not np.all(np.isfinite(world))):
            raise ForeignResultsError(f"{path}: line {n}: empty, NaN or inf landmark values")
        score = float(r[col["score"]]) if "score" in col and r[col["score"]].strip() else None
        try:
            frame = int(r[col["frame"]])
        except ValueError:
            raise ForeignResultsError(f"{path}: line {n}: frame {r[col['frame']]!r} is not an integer") from None
        parsed.append((frame, label, score, lm, world))
    frames = np.array(sorted({p[0] for p in parsed}), np.int64)
    row_of = {int(f): i for i, f in enumerate(frames)}
    entries = [(row_of[f], lab, s, lm, w) for f, lab, s, lm, w in parsed]
    return _collect(entries, len(frames), tuple(options.image_size), options, path, "mediapipe", frames, None, [])


def _freemocap_side(path: Path) -> str | None:
    name = path.name.lower()
    return "right" if "right" in name else "left" if "left" in name else None


def _freemocap_points(path: Path, side: str | None) -> tuple[str, np.ndarray]:
    """(side, (T, 21, 3) metres with NaN where missing) of one FreeMoCap hand file."""
    if path.suffix.lower() == ".npy":
        from .common import load_npz

        pts = np.asarray(load_npz(path)["points"], np.float64)
        if pts.ndim != 3 or pts.shape[1:] != (NUM_KEYPOINTS, 3):
            raise ForeignResultsError(f"{path}: FreeMoCap hand data must have shape (frames, 21, 3), got {pts.shape}")
        if side is None:
            raise ForeignResultsError(f"{path}: the file name must say 'right' or 'left' (FreeMoCap names them so)")
        return side, pts / 1000.0
    header, rows = _read_csv(path)
    low = [c.lower() for c in header]
    sides = [s for s in ("right", "left") if f"{s}_hand_wrist_x" in low]
    if len(sides) != 1:
        raise ForeignResultsError(f"{path}: expected FreeMoCap columns right_hand_wrist_x ... or left_hand_wrist_x ...")
    side = sides[0]
    try:
        cols = [low.index(f"{side}_hand_{n}_{a}") for n in MP_NAMES for a in "xyz"]
    except ValueError as exc:
        raise ForeignResultsError(f"{path}: FreeMoCap CSV lacks a column ({exc})") from None
    pts = np.stack([_floats([r[c] if c < len(r) else "" for c in cols], path, i + 2) for i, r in enumerate(rows)])
    if np.any(np.isinf(pts)):
        raise ForeignResultsError(f"{path}: contains inf values")
    return side, pts.reshape(-1, NUM_KEYPOINTS, 3) / 1000.0


def read_freemocap(path: Path, options: ForeignOptions) -> KeypointResults:
    """Both hands' 3D points (the sibling file of the other side too), seen by a virtual camera whose axes
    are FreeMoCap's world axes, centred on the hands and far enough back to see them all."""
    from .common import intrinsics

    side, pts = _freemocap_points(path, _freemocap_side(path))
    data = {side: pts}
    other = path.with_name(path.name.replace(side, "left" if side == "right" else "right"))
    if other != path and other.is_file():
        oside, opts = _freemocap_points(other, "left" if side == "right" else "right")
        if len(opts) != len(pts):
            raise ForeignResultsError(f"{other}: {len(opts)} frames, but {path.name} has {len(pts)}")
        data[oside] = opts
    t = len(pts)
    valid = {s: np.isfinite(p).all((1, 2)) for s, p in data.items()}
    if not any(v.any() for v in valid.values()):
        raise ForeignResultsError(f"{path}: no frame has all 21 points of a hand")
    seen = np.concatenate([p[valid[s]].reshape(-1, 3) for s, p in data.items()])
    size = tuple(options.image_size) if options.image_size else (1280, 720)
    k = intrinsics(size, options)
    centre = seen.mean(0)
    rel = seen - centre
    reach = np.abs(rel[:, :2]).max() * 1.2 * k.fx / (0.5 * min(size))
    offset = np.array([0.0, 0.0, max(0.5, reach + np.abs(rel[:, 2]).max())]) - centre
    hands = {}
    for s, p in data.items():
        cam = np.where(valid[s][:, None, None], p + offset, 0.0)
        kp2d = np.where(
            valid[s][:, None, None], cam[..., :2] / np.maximum(cam[..., 2:], 1e-6) * [k.fx, k.fy] + [k.cx, k.cy], 0.0
        )
        hands[s] = SideKeypoints(kp2d, None, cam, valid[s].astype(np.float64), valid[s])
    info = {
        "virtual_camera": {
            "size": list(size),
            "fx": k.fx,
            "world_to_camera_offset_m": offset.round(6).tolist(),
            "note": "camera point = FreeMoCap world point (m) + offset; axes are the world's",
        }
    }
    warnings = [] if options.image_size else ["FreeMoCap data has no camera: a virtual 1280x720 camera is used"]
    return KeypointResults(np.arange(t, dtype=np.int64), size, None, "freemocap", hands, warnings, info)


def read_keypoints(path: Path, options: ForeignOptions, obj=None) -> KeypointResults:
    """MediaPipe (.json / .csv) or FreeMoCap (.csv / .npy) keypoints of ``path``."""
    ext = path.suffix.lower()
    if ext == ".npy":
        return read_freemocap(path, options)
    if ext == ".csv":
        header, rows = _read_csv(path)
        if any(c.lower().startswith(("right_hand_", "left_hand_")) for c in header):
            return read_freemocap(path, options)
        return read_mediapipe_csv(path, header, rows, options)
    return read_mediapipe_json(path, load_json(path) if obj is None else obj, options)
