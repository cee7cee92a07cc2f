"""The capture file: the versioned seam between ``inference/`` and Blender.

A capture is one ``.npz`` archive (no pickle: read with ``allow_pickle=False``)
holding a JSON metadata entry ``meta`` (UTF-8 bytes as a uint8 array) and, per
hand track, arrays named ``<key>.<field>`` (key "right", "left", "right_2", ...;
validation in ``capture_checks``). Units and frames:

* camera frame: OpenCV axes (x right, y down, z forward), metres;
* image coordinates: pixels, origin at the top-left corner of the top-left pixel;
* pose ``theta``: MANO joint order (``ManoJoint``), axis-angle in radians,
  relative to the FLAT hand (MANO ``flat_hand_mean=True``), row 0 the global
  orientation about the wrist joint J0, then translation ``transl`` is added
  (MANO's convention: ``wrist_cam = R0 @ 0 + J0(beta) + transl``).

See README "Capture file" for the full table.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .capture_checks import (  # noqa: F401  (limits and helpers re-exported: callers import them from here)
    BONE_LENGTH_M,
    FIELD_RANGES,
    FOCAL_RANGE,
    MAX_FPS,
    MAX_FRAME,
    MAX_IMAGE_SIDE,
    MAX_PIXEL_ASPECT,
    MAX_SHIFT,
    SIDES,
    TRACK_KEY,
    CaptureFormatError,
    _check_intrinsics,
    _check_text,
    _check_track,
    _is_int,
    _is_number,
    _short,
    key_side,
    track_order,
)
from .keypoints import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS
from .npzread import ZIP_ERRORS, NpzMemberError, read_member

FORMAT_NAME = "handcap.capture"
FORMAT_VERSION = 4
# version 1 had no ``joint_offsets`` (read as zeros)
# version 2 held at most one track per side, keyed "right" / "left"; version 3 any number (``track_key``)
# versions before 4 had no ``bridged`` mask (read as all False: nothing bridged)
READABLE_VERSIONS = (1, 2, 3, 4)
#: Frames whose ``frame_conf`` is below this are doubtful (e.g. a crop that read as the other hand): smoothing
#: replaces them by default and the overlay readout reports them apart.
DOUBTFUL_CONFIDENCE = 0.3

MAX_META_BYTES = 16 << 20
#: Most hand tracks in one capture (each is 11 members, 10 before version 4).
MAX_TRACKS = 32
MAX_MEMBERS = 2 + 11 * MAX_TRACKS


class CaptureWriteError(CaptureFormatError):
    """A valid capture could not be written (disk full, read-only or missing folder); an existing file at the
    destination is unchanged and no temporary file is left."""


@dataclass
class CameraIntrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height`` pixels.

    ``source`` says how they were obtained: "given" (camera options, a Movie Clip's or tracked camera, an
    annotated set's K), "estimated" (from the hands in the footage, ``inference.fitting.focal``), "default"
    (nothing known), "" (not recorded: files written before the field existed).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str = ""

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
        k = cls.from_fov(width, height, 55.0)
        k.source = "default"
        return k


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
        bridged: (T,) bool, frames of a short gap (``valid`` False) whose pose was filled from both sides of the
            gap (``inference.fitting.gaps``): not observed, but the importer keys them. None = none bridged.
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
    bridged: np.ndarray | None = None

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
        "bridged",
    )
    #: Boolean masks (the rest are float32 numbers).
    MASKS = ("valid", "bridged")

    def __post_init__(self) -> None:
        if self.joint_offsets is None:
            self.joint_offsets = np.zeros((NUM_JOINTS, 3), np.float32)
        if self.bridged is None:
            self.bridged = np.zeros(len(self.valid), bool)

    @property
    def keyed(self) -> np.ndarray:
        """(T,) bool, the frames a reader keys: observed or bridged."""
        return np.asarray(self.valid, bool) | np.asarray(self.bridged, bool)

    @staticmethod
    def shapes(t: int) -> dict[str, tuple[int, ...]]:
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
            "bridged": (t,),
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
        hands: track key -> HandTrack: "right" and "left" for each side's first track, "right_2", "left_2",
            ... for further ones (version 3; ``track_key``); each track's ``side`` is its key's side.
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
        """Raise CaptureFormatError naming the first problem found: types, shapes, NaN/inf and the plausible
        ranges above (everything the importer and the camera matching rely on)."""
        frames = np.asarray(self.frames)
        if frames.ndim != 1 or not np.issubdtype(frames.dtype, np.integer):
            raise CaptureFormatError(f"frames must be a 1-D integer array, got {frames.dtype} {frames.shape}")
        t = len(frames)
        if t and (frames.min() < 0 or frames.max() > MAX_FRAME):
            raise CaptureFormatError(f"frames must be 0..{MAX_FRAME}, got {frames.min()}..{frames.max()}")
        if t and np.any(np.diff(frames.astype(np.int64)) <= 0):
            raise CaptureFormatError("frames must be strictly increasing")
        if not _is_number(self.fps) or not 0 <= self.fps <= MAX_FPS:
            raise CaptureFormatError(f"fps must be a finite number 0..{MAX_FPS:g}, got {_short(self.fps)}")
        size = self.image_size
        if not (isinstance(size, tuple | list) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise CaptureFormatError(f"image size must be two integers (width, height), got {_short(size)}")
        w, h = (int(v) for v in size)
        if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE):
            raise CaptureFormatError(f"image size must be positive and at most {MAX_IMAGE_SIDE} px a side, got {w}x{h}")
        _check_intrinsics(self.intrinsics, w, h)
        _check_text("source", self.source, empty_ok=True)
        _check_text("hand_model", self.hand_model, empty_ok=False)
        if not isinstance(self.info, dict):
            raise CaptureFormatError(f"info must be a JSON object, got {type(self.info).__name__}")
        if not isinstance(self.hands, dict):
            raise CaptureFormatError(f"hands must be a dict key -> HandTrack, got {type(self.hands).__name__}")
        if len(self.hands) > MAX_TRACKS:
            raise CaptureFormatError(f"{len(self.hands)} hand tracks; a capture holds at most {MAX_TRACKS}")
        for key, track in self.hands.items():
            _check_track(key, track, HandTrack.shapes(t))

    def tracks_of(self, side: str) -> list[str]:
        """Keys of the tracks of ``side``, first track first ("right", "right_2", ...)."""
        return sorted((k for k in self.hands if key_side(k) == side), key=track_order)


def track_key(side: str, index: int) -> str:
    """Key of a side's ``index``-th track (0-based): "right", "right_2", "right_3", ..."""
    if side not in SIDES or index < 0:
        raise ValueError(f"no track key for side {side!r}, index {index!r}")
    return side if index == 0 else f"{side}_{index + 1}"


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
        "intrinsics": {
            **{k: float(getattr(capture.intrinsics, k)) for k in ("fx", "fy", "cx", "cy")},
            **({"source": str(capture.intrinsics.source)} if capture.intrinsics.source else {}),
        },
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
            dtype = np.bool_ if name in HandTrack.MASKS else np.float32
            arrays[f"{side}.{name}"] = np.asarray(getattr(track, name), dtype=dtype)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buf = io.BytesIO()
    # In memory first: a write error inside savez would leave its ZipFile half-closed (an unraisable error later).
    np.savez_compressed(buf, **arrays)
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())  # a full disk shows here, before the rename, not later
        os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CaptureWriteError(f"{path}: cannot write the capture ({reason}); nothing there was changed") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder refuses even that: then no temporary file was made either
    return path


def read_capture(path: str | os.PathLike) -> Capture:
    """Read and validate a capture file; raises CaptureFormatError with the reason (one line, naming the member
    or field). Sizes are checked from the .npy headers before anything is allocated."""
    path = Path(path)
    if not path.is_file():
        raise CaptureFormatError(f"{path}: no such capture file")
    if not zipfile.is_zipfile(path):
        raise CaptureFormatError(f"{path}: not an .npz archive, so not a capture file (truncated or corrupt?)")
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise CaptureFormatError(f"{path}: not a readable capture file (truncated or corrupt: {exc})") from None
    with archive:
        try:
            return _read_archive(archive)
        except (CaptureFormatError, NpzMemberError) as exc:
            raise CaptureFormatError(f"{path}: {exc}") from None


def _read_archive(z: zipfile.ZipFile) -> Capture:
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CaptureFormatError(f"{len(infos)} members; a capture has at most {MAX_MEMBERS}")
    names = [i.filename for i in infos]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CaptureFormatError(f"members {twice} appear more than once")
    odd = [n for n in names if not n.endswith(".npy")]
    if odd:
        raise CaptureFormatError(f"members {odd[:4]} are not .npy arrays; not a HandCap capture file")
    members = {i.filename.removesuffix(".npy"): i for i in infos}
    if "meta" not in members:
        raise CaptureFormatError("no 'meta' entry; not a HandCap capture file")
    meta = _read_meta(z, members["meta"])
    if "frames" not in members:
        raise CaptureFormatError("no 'frames' entry")
    frames = read_member(z, members["frames"], (None,), "iu", MAX_FRAME + 1)
    if frames.size and (frames.min() < 0 or frames.max() > MAX_FRAME):
        raise CaptureFormatError(f"frames must be 0..{MAX_FRAME}, got {frames.min()}..{frames.max()}")
    sides = meta["sides"]  # the track keys
    if len(sides) > MAX_TRACKS:
        raise CaptureFormatError(f"{len(sides)} hand tracks; a capture holds at most {MAX_TRACKS}")
    for key in sides:
        if key_side(key) is None or (meta["version"] < 3 and key not in SIDES):
            allowed = "right, left" if meta["version"] < 3 else "right, left, right_2, left_2, ..."
            raise CaptureFormatError(
                f"hand track key {_short(key)} is not valid in a version {meta['version']} capture ({allowed})"
            )
    optional = ({"joint_offsets"} if meta["version"] == 1 else set()) | ({"bridged"} if meta["version"] < 4 else set())
    for side in sides:
        missing = [n for n in HandTrack.FIELDS if f"{side}.{n}" not in members and n not in optional]
        if missing:
            raise CaptureFormatError(f"hand {side!r} lacks arrays {missing}")
    expected = {"meta", "frames"} | {f"{s}.{n}" for s in sides for n in HandTrack.FIELDS}
    extra = sorted(set(members) - expected)
    if extra:
        raise CaptureFormatError(f"members {extra[:4]} do not belong to a capture of hands {sides}")
    hands = {}
    for side in sides:
        arrays = {}
        for name, shape in HandTrack.shapes(len(frames)).items():
            info = members.get(f"{side}.{name}")
            arrays[name] = None if info is None else _read_field(z, info, name, shape)
        hands[side] = HandTrack(side=key_side(side), **arrays)
    w, h = meta["image_size"]
    k = meta["intrinsics"]
    cap = Capture(
        source=meta["source"],
        frames=frames.astype(np.int64),
        fps=float(meta["fps"]),
        image_size=(w, h),
        intrinsics=CameraIntrinsics(
            *(float(k[n]) for n in ("fx", "fy", "cx", "cy")),
            w,
            h,
            k["source"] if isinstance(k.get("source"), str) else "",
        ),
        hand_model=meta["hand_model"],
        hands=hands,
        info=meta.get("info", {}),
    )
    cap.validate()
    return cap


def _read_field(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in HandTrack.MASKS:
        return read_member(z, info, shape, "f").astype(np.float32)
    arr = read_member(z, info, shape, "b")
    if np.any(arr.view(np.uint8) > 1):
        raise CaptureFormatError(f"{info.filename.removesuffix('.npy')}: bool bytes other than 0 and 1")
    return arr


def _read_meta(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    """The metadata, its fields type-checked (ranges are ``Capture.validate``'s)."""
    raw = read_member(z, info, (None,), "u", MAX_META_BYTES, itemsize=1)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CaptureFormatError(f"metadata is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(meta, dict):
        raise CaptureFormatError(f"metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT_NAME:
        raise CaptureFormatError(f"format is {_short(meta.get('format'))}, expected {FORMAT_NAME!r}")
    version = meta.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise CaptureFormatError(
            f"capture format version {_short(version)} is not supported"
            f" (this HandCap reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )

    def need(key: str, ok, what: str):
        if key not in meta:
            raise CaptureFormatError(f"metadata lacks field {key!r}")
        if not ok(meta[key]):
            raise CaptureFormatError(f"metadata field {key!r} must be {what}, got {_short(meta[key])}")

    need("source", lambda v: isinstance(v, str), "a string")
    need("fps", _is_number, "a finite number")
    need("image_size", lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_int, v)), "[width, height]")
    need("hand_model", lambda v: isinstance(v, str), "a string")
    need("intrinsics", lambda v: isinstance(v, dict) and all(_is_number(v.get(n)) for n in ("fx", "fy", "cx", "cy")),
         "{fx, fy, cx, cy} numbers")  # fmt: skip
    need("sides", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v) and len(set(v)) == len(v),
         "a list of distinct side names")  # fmt: skip
    if not isinstance(meta.get("info", {}), dict):
        raise CaptureFormatError(f"metadata field 'info' must be an object, got {_short(meta['info'])}")
    return meta
