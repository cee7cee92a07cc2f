"""Validation of capture data (``core.capture``): value types, ranges and the hand skeleton.

Every check raises ``CaptureFormatError`` with one line naming the field and what was expected. The limits
are the ones ``Capture.validate`` enforces for the reader, the writer and the importer.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .keypoints import MANO_PARENTS, ManoJoint

SIDES = ("right", "left")
#: Track keys: ``right`` / ``left`` for a side's first track, ``right_2``, ``left_3``, ... for further ones.
TRACK_KEY = re.compile(r"^(right|left)(?:_([2-9]|[1-9][0-9]+))?$")


class CaptureFormatError(ValueError):
    """A capture file (or a capture about to be written) is invalid."""


# Read-time limits (checked by ``Capture.validate``, so by the reader and the writer). Past them a file is no
# capture HandCap made, and accepting it would only move the failure into the importer (Blender's frame,
# resolution, pixel-aspect and lens-shift limits) or into an absurd allocation.
MAX_FRAME = 1_048_574  # Blender's largest frame number (MAXFRAME)
MAX_IMAGE_SIDE = 65_536  # Blender's largest render resolution
MAX_FPS = 10_000.0
FOCAL_RANGE = (1e-3, 1e3)  # fx, fy in image widths: fields of view of about 179.9 to 0.06 degrees
MAX_PIXEL_ASPECT = 100.0  # fx / fy (Blender's pixel aspect goes to 200)
MAX_SHIFT = 10.0  # principal point off centre, image widths (Blender's lens shift limit)
BONE_LENGTH_M = (1e-3, 0.5)  # every rest bone, joint to parent: a hand's are 1-10 cm
#: (low, high) of every value of a float field; fits stay far inside (|beta| <= ~5, offsets a few mm).
FIELD_RANGES = {
    "theta": (-1e3, 1e3),  # radians
    "beta": (-100.0, 100.0),  # standard deviations of the shape space
    "transl": (-1e3, 1e3),  # metres
    "kp2d": (-1e6, 1e6),  # pixels
    "kp3d": (-1e3, 1e3),  # metres
    "frame_conf": (0.0, 1.0),
    "kp_conf": (0.0, 1.0),
    "rest_joints": (-1.0, 1.0),  # metres
    "joint_offsets": (-0.1, 0.1),  # metres
}


def _is_number(v) -> bool:
    """A real, finite number that converts to a float (JSON integers may have any number of digits)."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(name: str, value, empty_ok: bool) -> None:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise CaptureFormatError(f"{name} must be a {'' if empty_ok else 'non-empty '}string, got {_short(value)}")
    try:
        value.encode("utf-8")  # a lone surrogate from JSON "\ud800" would fail in Blender
    except UnicodeEncodeError:
        raise CaptureFormatError(f"{name} is not valid text: {_short(value)}") from None
    if "\x00" in value:
        raise CaptureFormatError(f"{name} contains a NUL character: {_short(value)}")


def _check_intrinsics(k, w: int, h: int) -> None:
    """``k``: a ``capture.CameraIntrinsics`` (or anything with fx, fy, cx, cy) of a w x h px image."""
    values = [getattr(k, n, None) for n in ("fx", "fy", "cx", "cy")]
    if not all(_is_number(v) for v in values):
        raise CaptureFormatError(f"camera intrinsics must be finite numbers, got {_short(values)}")
    fx, fy, cx, cy = (float(v) for v in values)
    lo, hi = FOCAL_RANGE
    if not (lo * w <= fx <= hi * w and lo * w <= fy <= hi * w):
        raise CaptureFormatError(
            f"camera intrinsics must be finite with positive focal lengths of {lo:g}..{hi:g} image widths, "
            f"got fx {fx:.6g}, fy {fy:.6g} px for a width of {w} px"
        )
    if not 1 / MAX_PIXEL_ASPECT <= fx / fy <= MAX_PIXEL_ASPECT:
        raise CaptureFormatError(f"camera pixel aspect fx / fy = {fx / fy:.6g} is outside 1/{MAX_PIXEL_ASPECT:g}..")
    # the lens shifts camera_math gives Blender, in image widths
    if abs(w / 2 - cx) > MAX_SHIFT * w or abs(cy - h / 2) * fx / fy > MAX_SHIFT * w:
        raise CaptureFormatError(
            f"principal point ({cx:.6g}, {cy:.6g}) px is more than {MAX_SHIFT:g} widths off centre"
        )


def key_side(key) -> str | None:
    """The side of a track key ("right_2" -> "right"), None for anything that is no track key."""
    m = TRACK_KEY.match(key) if isinstance(key, str) else None
    return m.group(1) if m else None


def track_order(key: str) -> tuple[int, int]:
    """Sort key of a track key: right before left, then each side's first track first ("right", "right_2",
    ..., "right_10", "left", ...)."""
    m = TRACK_KEY.match(key)
    return SIDES.index(m.group(1)), int(m.group(2) or 1)


def _check_track(key, track, shapes: dict[str, tuple[int, ...]], extra_tracks: bool = True) -> None:
    """One track under ``key``: the key names its side (``extra_tracks``: ``right_2`` ... allowed, as from
    version 3), and each field in ``shapes`` has its shape, dtype and range."""
    side = key_side(key)
    if side is None or (not extra_tracks and key not in SIDES) or getattr(track, "side", None) != side:
        allowed = "right, left, right_2, left_2, ..." if extra_tracks else "right, left"
        raise CaptureFormatError(
            f"hand track key {_short(key)} / side {_short(getattr(track, 'side', None))}: the key must be one of "
            f"{allowed} and name the track's side ({SIDES})"
        )
    for name, shape in shapes.items():
        try:
            arr = np.asarray(getattr(track, name))
        except (ValueError, TypeError) as exc:
            raise CaptureFormatError(f"{key}.{name}: not an array ({exc})") from None
        if arr.shape != shape:
            raise CaptureFormatError(f"{key}.{name}: expected shape {shape}, got {arr.shape}")
        if name in ("valid", "bridged"):
            if arr.dtype != np.bool_:
                raise CaptureFormatError(f"{key}.{name}: expected bool, got {arr.dtype}")
            continue
        if arr.dtype.kind not in "fiu":
            raise CaptureFormatError(f"{key}.{name}: expected float32 numbers, got {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise CaptureFormatError(f"{key}.{name}: contains NaN or inf")
        lo, hi = FIELD_RANGES.get(name, (-np.inf, np.inf))
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise CaptureFormatError(
                f"{key}.{name}: values {arr.min():.6g}..{arr.max():.6g} are outside {lo:g}..{hi:g}"
            )
    if "bridged" in shapes and np.any(np.asarray(track.bridged) & np.asarray(track.valid)):
        raise CaptureFormatError(f"{key}.bridged: a bridged frame is one the hand was not seen in (valid False)")
    _check_skeleton(key, np.asarray(track.rest_joints, np.float64))


def _check_skeleton(side: str, rest: np.ndarray) -> None:
    """The rest joints must make a hand: bone lengths in range and a palm plane (the importer builds bones on it)."""
    bones = np.linalg.norm(rest[1:] - rest[MANO_PARENTS[1:]], axis=-1)
    lo, hi = BONE_LENGTH_M
    if bones.min() < lo or bones.max() > hi:
        raise CaptureFormatError(
            f"{side}.rest_joints: bone lengths {bones.min() * 1e3:.4g}..{bones.max() * 1e3:.4g} mm, "
            f"expected {lo * 1e3:g}..{hi * 1e3:g} mm (not a hand skeleton in metres)"
        )
    a = rest[ManoJoint.INDEX1] - rest[ManoJoint.WRIST]
    b = rest[ManoJoint.PINKY1] - rest[ManoJoint.WRIST]
    if np.linalg.norm(np.cross(a, b)) < 1e-3 * np.linalg.norm(a) * np.linalg.norm(b):
        raise CaptureFormatError(f"{side}.rest_joints: wrist, index and little-finger knuckles are on one line")
