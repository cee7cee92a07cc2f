"""The capture file: the versioned seam between ``inference/`` and Blender.

A capture is one ``.npz`` archive (no pickle: read with ``allow_pickle=False``)
holding a JSON metadata entry ``meta`` (UTF-8 bytes as a uint8 array) and, per
hand track, arrays named ``<side>.<field>``. Units and frames:

* camera frame: OpenCV axes (x right, y down, z forward), metres;
* image coordinates: pixels, origin at the top-left corner of the top-left pixel;
* pose ``theta``: MANO joint order (``ManoJoint``), axis-angle in radians,
  relative to the FLAT hand (MANO ``flat_hand_mean=True``), row 0 the global
  orientation about the wrist joint J0, then translation ``transl`` is added
  (MANO's convention: ``wrist_cam = R0 @ 0 + J0(beta) + transl``).

See README "Capture file" for the full table.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .keypoints import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS

FORMAT_NAME = "handcap.capture"
FORMAT_VERSION = 2
# version 1 had no ``joint_offsets`` (read as zeros)
READABLE_VERSIONS = (1, 2)
SIDES = ("right", "left")
#: Frames whose ``frame_conf`` is below this are doubtful (e.g. a crop that read as the other hand): smoothing
#: replaces them by default and the overlay readout reports them apart.
DOUBTFUL_CONFIDENCE = 0.3


class CaptureFormatError(ValueError):
    """A capture file (or a capture about to be written) is invalid."""


@dataclass
class CameraIntrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        """3x3 K matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> CameraIntrinsics:
        """Horizontal field of view in degrees, principal point at the image centre."""
        if not 1.0 <= fov_deg <= 179.0:
            raise ValueError(f"field of view {fov_deg} deg is outside 1..179")
        f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height))

    @classmethod
    def from_focal_mm(cls, width: int, height: int, focal_mm: float, sensor_mm: float = 36.0) -> CameraIntrinsics:
        """Focal length and sensor width in millimetres (sensor fitted to the image width)."""
        if focal_mm <= 0 or sensor_mm <= 0:
            raise ValueError("focal length and sensor width must be positive")
        f = focal_mm / sensor_mm * width
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height))

    @classmethod
    def default(cls, width: int, height: int) -> CameraIntrinsics:
        """Documented default when nothing is known: a 55 degree horizontal field of view
        (typical of phone and webcam footage; a 36 mm-sensor 35 mm lens is 54.4 deg)."""
        return cls.from_fov(width, height, 55.0)


def project_points(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points (OpenCV axes) -> (..., 2) pixels; points at or behind the camera -> NaN."""
    p = np.asarray(points, dtype=np.float64)
    z = p[..., 2:3]
    return p[..., :2] / np.where(z > 1e-9, z, np.nan) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


@dataclass
class HandTrack:
    """One physical hand over the clip (T = number of captured frames).

    Attributes:
        side: "right" or "left", decided once for the whole track.
        theta: (T, 16, 3) float32, MANO-order axis-angle (radians), flat-hand relative.
        beta: (10,) float32 shape coefficients of the hand model, one per clip.
        transl: (T, 3) float32 camera-frame translation in metres (MANO convention).
        kp2d: (T, 21, 2) float32 observed 2D keypoints in pixels (HandKeypoint order).
        kp3d: (T, 21, 3) float32 fitted 3D keypoints, camera frame, metres.
        frame_conf: (T,) float32 in [0, 1], detection confidence of the hand per frame (below
            ``DOUBTFUL_CONFIDENCE``: doubtful evidence, see ``inference.fitting.tracks``).
        kp_conf: (T, 21) float32 in [0, 1], per-keypoint confidence.
        valid: (T,) bool, False where the hand was not found (other rows then hold
            interpolated or zero values and must not be keyed).
        rest_joints: (16, 3) float32 rest joints of the hand in metres, template axes, so a reader
            can build the skeleton without the model: J(beta) + joint_offsets.
        joint_offsets: (16, 3) float32 metres, the fit's per-clip calibration of the skeleton beyond beta
            (``inference.fitting.identity``; zero but for the palm's joints). None = zeros.
    """

    side: str
    theta: np.ndarray
    beta: np.ndarray
    transl: np.ndarray
    kp2d: np.ndarray
    kp3d: np.ndarray
    frame_conf: np.ndarray
    kp_conf: np.ndarray
    valid: np.ndarray
    rest_joints: np.ndarray
    joint_offsets: np.ndarray | None = None

    FIELDS = (
        "theta",
        "beta",
        "transl",
        "kp2d",
        "kp3d",
        "frame_conf",
        "kp_conf",
        "valid",
        "rest_joints",
        "joint_offsets",
    )

    def __post_init__(self) -> None:
        if self.joint_offsets is None:
            self.joint_offsets = np.zeros((NUM_JOINTS, 3), np.float32)

    def shapes(self, t: int) -> dict[str, tuple[int, ...]]:
        return {
            "theta": (t, NUM_JOINTS, 3),
            "beta": (NUM_BETAS,),
            "transl": (t, 3),
            "kp2d": (t, NUM_KEYPOINTS, 2),
            "kp3d": (t, NUM_KEYPOINTS, 3),
            "frame_conf": (t,),
            "kp_conf": (t, NUM_KEYPOINTS),
            "valid": (t,),
            "rest_joints": (NUM_JOINTS, 3),
            "joint_offsets": (NUM_JOINTS, 3),
        }


@dataclass
class Capture:
    """A whole clip (or one photo, T = 1).

    Attributes:
        source: path of the video, image sequence pattern or photo.
        frames: (T,) int64 frame indices in the source (0-based).
        fps: frames per second of the source (0 for a photo).
        image_size: (width, height) in pixels.
        intrinsics: camera intrinsics used for the fit.
        hand_model: id of the hand model, e.g. "builtin-v1" or "mano".
        hands: side -> HandTrack (at most one per side).
        info: free JSON-serialisable extras (fit residuals, tool versions, options).
    """

    source: str
    frames: np.ndarray
    fps: float
    image_size: tuple[int, int]
    intrinsics: CameraIntrinsics
    hand_model: str
    hands: dict[str, HandTrack] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(len(self.frames))

    def validate(self) -> None:
        """Raise CaptureFormatError naming the first problem found."""
        t = self.num_frames
        frames = np.asarray(self.frames)
        if frames.ndim != 1 or not np.issubdtype(frames.dtype, np.integer):
            raise CaptureFormatError(f"frames must be a 1-D integer array, got {frames.dtype} {frames.shape}")
        if t and np.any(np.diff(frames) <= 0):
            raise CaptureFormatError("frames must be strictly increasing")
        if not np.isfinite(self.fps) or self.fps < 0:
            raise CaptureFormatError(f"fps must be a finite number >= 0, got {self.fps}")
        w, h = self.image_size
        if w <= 0 or h <= 0:
            raise CaptureFormatError(f"image size must be positive, got {w}x{h}")
        k = self.intrinsics
        if not all(np.isfinite([k.fx, k.fy, k.cx, k.cy])) or k.fx <= 0 or k.fy <= 0:
            raise CaptureFormatError("camera intrinsics must be finite with positive focal lengths")
        for side, track in self.hands.items():
            if side not in SIDES or track.side != side:
                raise CaptureFormatError(f"hand track key {side!r} / side {track.side!r} must be one of {SIDES}")
            for name, shape in track.shapes(t).items():
                arr = np.asarray(getattr(track, name))
                if arr.shape != shape:
                    raise CaptureFormatError(f"{side}.{name}: expected shape {shape}, got {arr.shape}")
                if arr.dtype != np.bool_ and not np.all(np.isfinite(arr)):
                    raise CaptureFormatError(f"{side}.{name}: contains NaN or inf")


def write_capture(path: str | os.PathLike, capture: Capture) -> Path:
    """Validate and write ``capture`` atomically (temp file in the same folder, then rename)."""
    capture.validate()
    path = Path(path)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "source": str(capture.source),
        "fps": float(capture.fps),
        "image_size": [int(v) for v in capture.image_size],
        "intrinsics": {k: float(getattr(capture.intrinsics, k)) for k in ("fx", "fy", "cx", "cy")},
        "hand_model": capture.hand_model,
        "sides": sorted(capture.hands),
        "info": capture.info,
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "frames": np.asarray(capture.frames, dtype=np.int64),
    }
    for side, track in capture.hands.items():
        for name in HandTrack.FIELDS:
            dtype = np.bool_ if name == "valid" else np.float32
            arrays[f"{side}.{name}"] = np.asarray(getattr(track, name), dtype=dtype)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_capture(path: str | os.PathLike) -> Capture:
    """Read and validate a capture file; raises CaptureFormatError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CaptureFormatError(f"{path}: no such capture file")
    if not zipfile.is_zipfile(path):
        raise CaptureFormatError(f"{path}: not an .npz archive, so not a capture file (truncated or corrupt?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CaptureFormatError(f"{path}: not a readable capture file (truncated or corrupt: {exc})") from None
    except ValueError as exc:  # numpy raises this for object arrays under allow_pickle=False
        raise CaptureFormatError(f"{path}: refused to load ({exc})") from None
    if "meta" not in data:
        raise CaptureFormatError(f"{path}: no 'meta' entry; not a HandCap capture file")
    try:
        meta = json.loads(data["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureFormatError(f"{path}: metadata is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise CaptureFormatError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if meta.get("version") not in READABLE_VERSIONS:
        raise CaptureFormatError(
            f"{path}: capture format version {meta.get('version')!r} is not supported"
            f" (this HandCap reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    optional = {"joint_offsets"} if meta.get("version") == 1 else set()
    try:
        w, h = meta["image_size"]
        k = meta["intrinsics"]
        hands = {}
        for side in meta["sides"]:
            missing = [n for n in HandTrack.FIELDS if f"{side}.{n}" not in data and n not in optional]
            if missing:
                raise CaptureFormatError(f"{path}: hand {side!r} lacks arrays {missing}")
            hands[side] = HandTrack(side=side, **{n: data.get(f"{side}.{n}") for n in HandTrack.FIELDS})
        cap = Capture(
            source=meta["source"],
            frames=data["frames"],
            fps=float(meta["fps"]),
            image_size=(int(w), int(h)),
            intrinsics=CameraIntrinsics(k["fx"], k["fy"], k["cx"], k["cy"], int(w), int(h)),
            hand_model=meta["hand_model"],
            hands=hands,
            info=meta.get("info", {}),
        )
    except (KeyError, TypeError) as exc:
        raise CaptureFormatError(f"{path}: metadata lacks or mangles field {exc}") from None
    try:
        cap.validate()
    except CaptureFormatError as exc:
        raise CaptureFormatError(f"{path}: {exc}") from None
    return cap
