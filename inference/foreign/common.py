"""Shared pieces of the foreign-result readers: the error type, the options, containers, camera.

Containers are read without pickle: ``.npz`` / ``.npy`` with ``allow_pickle=False``, ``.json`` with the
standard library, ``.csv`` with the ``csv`` module. Every problem is a :class:`ForeignResultsError`
whose message names the file and what is wrong with it (docs/foreign-results.md has the layouts).
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.capture import CameraIntrinsics, Capture
from ...core.request import MAX_HANDS

#: What to set when MANO's own arrays (PCA components, the mean pose) are needed but absent.
MANO_HINT = "pass --mano-dir DIR (command line) or set Preferences > HandCap > MANO Folder (Blender)"


#: layout -> (kind, what it is). "mano": MANO parameters; "keypoints": 21 keypoints, fitted by HandCap.
LAYOUTS = {
    "handcap": ("mano", "HandCap's documented MANO-parameter layout (docs/foreign-results.md)"),
    "hamer": (
        "mano",
        "a dump of HaMeR's demo outputs: pred_mano_params, pred_cam, box_center, box_size, img_size, right",
    ),
    "wilor": (
        "mano",
        "a dump of WiLoR / WiLoR-mini outputs: wilor_preds {global_orient, hand_pose, betas, "
        "pred_cam_t_full, scaled_focal_length}, is_right",
    ),
    "mediapipe": ("keypoints", "MediaPipe hand landmarks (normalised x, y, z; handedness), JSON or CSV"),
    "freemocap": ("keypoints", "FreeMoCap's mediapipe_{right,left}_hand_3d_xyz .csv / .npy (mm, its world frame)"),
}


class ForeignResultsError(ValueError):
    """A results file of another tool cannot be read or converted (the message says which and why)."""


@dataclass
class ForeignOptions:
    """How to read a results file of another tool.

    Attributes:
        layout: "auto" (from the file's extension and keys) or one of ``LAYOUTS``.
        model: hand model of the capture, "builtin" or "mano" (the user's MANO files in ``mano_dir``).
        mano_dir: folder with MANO_RIGHT.pkl / MANO_LEFT.pkl; needed for PCA poses and mean-relative poses.
        mano_cache_dir: where converted MANO arrays are cached (None: ``~/.cache/handcap``).
        pose_format: "auto" (from the shapes), "axis_angle", "rotmat" or "pca".
        pose_mean: "auto" (PCA: "mean", as smplx's default; else "flat"), "flat" or "mean" (relative to
            MANO's ``hands_mean``, smplx ``flat_hand_mean=False``).
        left_mirrored: left hands are given as the mirrored right hand (HaMeR, WiLoR); None = the layout's default.
        image_size: (width, height) pixels where the file does not say.
        fps: frame rate where the file does not say (None: 30 for a clip, with a warning).
        focal_px / fov_deg: camera override (else the file's, else the layout's default).
        hands: most hand tracks to keep (1..``MAX_HANDS``; several people's hands: ``association``), the
            most seen of each side first.
        mirrored: keypoint files: the footage was a mirrored selfie view (MediaPipe's labels then are true).
        device: device of the keypoint fit ("auto", "cpu", "cuda").
        fit: ``inference.fitting.fit.FitOptions`` for keypoint files (None: defaults).
    """

    layout: str = "auto"
    model: str = "builtin"
    mano_dir: str | None = None
    mano_cache_dir: str | None = None
    pose_format: str = "auto"
    pose_mean: str = "auto"
    left_mirrored: bool | None = None
    image_size: tuple[int, int] | None = None
    fps: float | None = None
    focal_px: float | None = None
    fov_deg: float | None = None
    hands: int = 2
    mirrored: bool = False
    device: str = "cpu"
    fit: object | None = None

    def validate(self) -> None:
        if self.layout != "auto" and self.layout not in LAYOUTS:
            raise ForeignResultsError(f"layout must be 'auto' or one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.model not in ("builtin", "mano"):
            raise ForeignResultsError(f"model must be 'builtin' or 'mano', got {self.model!r}")
        if self.model == "mano" and not self.mano_dir:
            raise ForeignResultsError(f"the MANO hand model needs your MANO files: {MANO_HINT}")
        if self.pose_format not in ("auto", "axis_angle", "rotmat", "pca"):
            raise ForeignResultsError(f"pose format must be auto, axis_angle, rotmat or pca, got {self.pose_format!r}")
        if self.pose_mean not in ("auto", "flat", "mean"):
            raise ForeignResultsError(f"pose mean must be auto, flat or mean, got {self.pose_mean!r}")
        if isinstance(self.hands, bool) or not isinstance(self.hands, int) or not 1 <= self.hands <= MAX_HANDS:
            raise ForeignResultsError(f"hands must be a whole number 1..{MAX_HANDS}, got {self.hands!r}")
        if self.focal_px is not None and self.fov_deg is not None:
            raise ForeignResultsError("give only one of the focal length in pixels and the field of view")
        if self.image_size is not None:
            w, h = self.image_size
            if not (w > 0 and h > 0):
                raise ForeignResultsError(f"image size must be positive, got {w}x{h}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps >= 0):
            raise ForeignResultsError(f"fps must be a finite number >= 0, got {self.fps}")


@dataclass
class ForeignImport:
    """A converted results file: the capture (not yet written), its layout and notes for the user."""

    capture: Capture
    layout: str
    warnings: list[str] = field(default_factory=list)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All members of an ``.npz`` (no pickle); an ``.npy`` becomes {"points": array}."""
    try:
        if path.suffix.lower() == ".npy":
            return {"points": np.load(path, allow_pickle=False)}
        if not zipfile.is_zipfile(path):
            raise ForeignResultsError(f"{path}: not an .npz archive (truncated or not numpy's format)")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if isinstance(exc, ForeignResultsError):
            raise
        # numpy refuses object (pickled) members under allow_pickle=False
        raise ForeignResultsError(f"{path}: refused to load pickled or malformed data ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ForeignResultsError(f"{path}: unreadable numpy file ({exc})") from None


def load_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ForeignResultsError(f"{path}: cannot read as UTF-8 text ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ForeignResultsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def as_array(value, what: str, path: Path, dtype=np.float64) -> np.ndarray:
    """A numeric array from JSON lists or numpy data; non-numeric values and NaN/inf are errors."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ForeignResultsError(f"{path}: '{what}' is not numeric") from None
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ForeignResultsError(f"{path}: '{what}' contains NaN or inf")
    return arr


def image_size_of(value, path: Path) -> tuple[int, int]:
    arr = as_array(value, "image size", path).reshape(-1)
    if arr.size < 2 or not np.all(arr[:2] > 0):
        raise ForeignResultsError(f"{path}: image size must be [width, height] > 0, got {arr.tolist()}")
    return int(round(arr[0])), int(round(arr[1]))


def intrinsics(
    size: tuple[int, int], options: ForeignOptions, focal: float | None = None, k: np.ndarray | None = None
) -> CameraIntrinsics:
    """Camera of the capture: the options' override, else the file's K or focal length, else HandCap's
    default (``CameraIntrinsics.default``). Principal point at the image centre unless K says otherwise."""
    w, h = size
    if options.focal_px is not None:
        if not (math.isfinite(options.focal_px) and options.focal_px > 0):
            raise ForeignResultsError(f"focal length must be positive, got {options.focal_px}")
        return CameraIntrinsics(float(options.focal_px), float(options.focal_px), w / 2.0, h / 2.0, w, h)
    if options.fov_deg is not None:
        try:
            return CameraIntrinsics.from_fov(w, h, float(options.fov_deg))
        except ValueError as exc:
            raise ForeignResultsError(str(exc)) from None
    if k is not None:
        k = np.asarray(k, np.float64)
        if k.shape != (3, 3) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ForeignResultsError(f"camera matrix K must be 3x3 with positive focal lengths, got {k.tolist()}")
        return CameraIntrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), w, h)
    if focal is not None:
        if not (math.isfinite(focal) and focal > 0):
            raise ForeignResultsError(f"focal length must be positive, got {focal}")
        return CameraIntrinsics(float(focal), float(focal), w / 2.0, h / 2.0, w, h)
    return CameraIntrinsics.default(w, h)


def clip_fps(fps: float | None, options: ForeignOptions, num_frames: int, warnings: list[str]) -> float:
    """The file's frame rate, else the option's, else 30 (with a warning) for clips and 0 for one frame."""
    if options.fps is not None:
        return float(options.fps)
    if fps is not None and math.isfinite(fps) and fps >= 0:
        return float(fps)
    if num_frames <= 1:
        return 0.0
    warnings.append("the file gives no frame rate: 30 fps assumed (set it with --fps)")
    return 30.0


def hold_fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows where ``valid`` is False take the nearest valid row (earlier one on ties); at least one valid."""
    idx = np.flatnonzero(valid)
    t = np.arange(len(valid))
    pos = np.clip(np.searchsorted(idx, t), 0, len(idx) - 1)
    prev = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    nxt = idx[pos]
    nearest = np.where(np.abs(t - prev) <= np.abs(nxt - t), prev, nxt)
    return values[nearest]
