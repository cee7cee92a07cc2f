"""Smoothing and clean-up of captured hand motion (numpy only; runs in Blender and in plain Python).

The pipeline (``smooth_motion``) works on per-frame joint rotations (unit quaternions,
any fixed frame per joint: MANO template axes or Blender bone axes give the same result,
the filters are invariant to constant rotations) and the root location:

1. hemisphere-consistent quaternions (``q`` and ``-q`` are one rotation);
2. frames below ``min_confidence`` and Hampel outliers of the joint positions are
   replaced (``outlier_weight`` 0) or down-weighted;
3. gaps of at most ``max_gap`` frames are bridged (slerp / linear);
4. a filter per joint group with its own strength: zero-phase Gaussian or Savitzky-Golay
   (tangent space around a local mean for rotations), or the causal One-Euro filter;
5. optional key reduction (drop keys that linear interpolation reproduces);
6. readouts on 3D joint positions: jitter before/after and deviation from the raw motion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import cleanup, filters, quat
from .capture import DOUBTFUL_CONFIDENCE
from .keypoints import FINGERS, ManoJoint
from .naming import FINGER_JOINTS

METHODS = ("gaussian", "savgol", "one_euro", "none")
#: Strength groups of the rotation channels; the root location has its own strength.
GROUPS = ("wrist",) + FINGERS
#: Group (index into GROUPS) of each of the 16 MANO joints.
MANO_JOINT_GROUPS = np.zeros(16, dtype=np.int64)
for _f, _joints in FINGER_JOINTS.items():
    MANO_JOINT_GROUPS[[int(j) for j in _joints]] = GROUPS.index(_f)
MANO_JOINT_GROUPS[int(ManoJoint.WRIST)] = 0

PositionsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class SmoothingError(ValueError):
    """Smoothing cannot run: bad settings, or nothing captured to smooth."""


@dataclass
class SmoothingSettings:
    """How to smooth one hand. Strengths scale the filter width (0 = leave that group raw).

    Attributes:
        method: "gaussian" (zero-phase, default), "savgol", "one_euro" (causal) or "none" (clean-up only).
        sigma: Gaussian standard deviation, frames. The default 1.5 frames is measured on real captures
            (benchmarks/bench_smoothing.py --capture, benchmarks/fit_limits.py): the fit leaves each frame's
            rotations to its own evidence, and this removes about 5x of their jitter while the joints stay
            within ~3 mm of the raw capture; more smooths more but lags fast fingers.
        window, order: Savitzky-Golay window (odd, frames) and polynomial order.
        min_cutoff: One-Euro minimum cutoff, Hz. beta: One-Euro speed coefficient for rotations
            (per rad/s); beta_location: the same for the root location (per m/s). d_cutoff: Hz.
        strength_wrist ... strength_pinky: rotation strengths of the wrist bone and each finger.
        strength_location: strength on the root (wrist) location.
        fill_gaps, max_gap: bridge runs of at most ``max_gap`` missing frames (slerp / linear).
        filled_weight: weight of bridged frames inside the filters (0 = they carry no data).
        min_confidence: frames whose detection confidence is lower are treated as outliers.
        reject_outliers, outlier_threshold, outlier_min_mm: Hampel-style test on the 3D joints
            (``cleanup.hampel_outliers``): a frame's joints off the prediction from its neighbours by
            more than this many times the clip's median deviation and at least this many millimetres
            (the default 5 flags the frames of a real clip where the hands tangle, and few others).
        outlier_weight: 0 replaces outlier frames (interpolated from the neighbours), a value in
            (0, 1] keeps them with that weight in the filter.
        reduce_keys, key_tolerance_deg, key_tolerance_mm: drop keys that LINEAR interpolation
            reproduces within these tolerances (rotation angle per bone, location distance).
    """

    method: str = "gaussian"
    sigma: float = 1.5
    window: int = 11
    order: int = 3
    min_cutoff: float = 1.0
    beta: float = 3.0
    beta_location: float = 20.0
    d_cutoff: float = 1.0
    strength_wrist: float = 1.0
    strength_thumb: float = 1.0
    strength_index: float = 1.0
    strength_middle: float = 1.0
    strength_ring: float = 1.0
    strength_pinky: float = 1.0
    strength_location: float = 1.0
    fill_gaps: bool = True
    max_gap: int = 8
    filled_weight: float = 0.25
    min_confidence: float = DOUBTFUL_CONFIDENCE
    reject_outliers: bool = True
    outlier_threshold: float = 5.0
    outlier_min_mm: float = 10.0
    outlier_weight: float = 0.0
    reduce_keys: bool = False
    key_tolerance_deg: float = 0.25
    key_tolerance_mm: float = 0.25

    def strength(self, group: str) -> float:
        return float(getattr(self, f"strength_{group}"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SmoothingSettings:
        """Build from a dict, ignoring unknown keys (settings stored by other versions)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SmoothingError(f"unknown smoothing method {self.method!r}; use one of {METHODS}")
        checks = [
            (self.sigma > 0, f"Gaussian sigma must be > 0 frames, got {self.sigma}"),
            (self.window >= 3 and self.window % 2 == 1, f"Savitzky-Golay window must be odd, >= 3, got {self.window}"),
            (0 <= self.order < self.window, f"Savitzky-Golay order must be in 0..window-1, got {self.order}"),
            (self.min_cutoff > 0 and self.d_cutoff > 0, "One-Euro cutoffs must be > 0 Hz"),
            (self.beta >= 0 and self.beta_location >= 0, "One-Euro beta must be >= 0"),
            (self.max_gap >= 0, f"max_gap must be >= 0 frames, got {self.max_gap}"),
            (0.0 <= self.filled_weight <= 1.0, "filled_weight must be in [0, 1]"),
            (0.0 <= self.outlier_weight <= 1.0, "outlier_weight must be in [0, 1]"),
            (0.0 <= self.min_confidence <= 1.0, "min_confidence must be in [0, 1]"),
            (self.outlier_threshold > 0 and self.outlier_min_mm >= 0, "outlier thresholds must be positive"),
            (self.key_tolerance_deg > 0 and self.key_tolerance_mm > 0, "key tolerances must be > 0"),
        ]
        for group in GROUPS + ("location",):
            s = self.strength(group)
            checks.append((np.isfinite(s) and 0.0 <= s <= 10.0, f"strength_{group} must be in 0..10, got {s}"))
        for ok, message in checks:
            if not ok:
                raise SmoothingError(message)


@dataclass
class Motion:
    """Motion of one hand on a uniform frame grid (T frames, J rotation channels).

    Attributes:
        rot: (T, J, 4) float64 unit quaternions (w, x, y, z), each joint relative to its parent in a
            fixed per-joint frame (MANO template axes or Blender bone axes).
        loc: (T, 3) float64 root location, metres.
        valid: (T,) bool, frames that hold data (others hold anything finite and are ignored).
        conf: (T,) float64 detection confidence in [0, 1].
        groups: (J,) int64 index into ``GROUPS`` of each rotation channel.
    """

    rot: np.ndarray
    loc: np.ndarray
    valid: np.ndarray
    conf: np.ndarray
    groups: np.ndarray


@dataclass
class SmoothingReport:
    """Readouts of one smoothing run (positions are the hand's 3D joints).

    Attributes:
        jitter_before_mm, jitter_after_mm: mean joint acceleration, mm / frame^2, over the frames
            whose neighbours are valid in the raw capture (same frames before and after).
        deviation_mean_mm, deviation_max_mm: joint distance smoothed vs raw, mm, over the raw frames
            kept as data (outliers and low-confidence frames are meant to change and are left out).
        frames, valid_frames: clip length and raw frames with a hand.
        filled_frames: frames bridged by gap filling (now keyed).
        outlier_frames, low_confidence_frames: frames replaced or down-weighted.
        keys_before, keys_after: rotation + location keys (per bone) before and after key reduction.
    """

    jitter_before_mm: float
    jitter_after_mm: float
    deviation_mean_mm: float
    deviation_max_mm: float
    frames: int
    valid_frames: int
    filled_frames: int
    outlier_frames: int
    low_confidence_frames: int
    keys_before: int
    keys_after: int

    @property
    def jitter_reduction(self) -> float:
        """jitter_before / jitter_after (inf when the result has no jitter)."""
        if not self.jitter_after_mm > 0:
            return float("inf")
        return self.jitter_before_mm / self.jitter_after_mm

    def summary(self) -> str:
        return (
            f"jitter {self.jitter_before_mm:.2f} -> {self.jitter_after_mm:.2f} mm/frame^2 "
            f"({self.jitter_reduction:.1f}x), deviation {self.deviation_mean_mm:.2f} mm mean, "
            f"{self.filled_frames} filled, {self.outlier_frames + self.low_confidence_frames} replaced, "
            f"keys {self.keys_before} -> {self.keys_after}"
        )


@dataclass
class SmoothingResult:
    """Smoothed motion and what was done.

    Attributes:
        motion: the smoothed Motion; ``valid`` now includes the filled frames.
        report: readouts.
        rot_keys: (T, J) bool, frames where each rotation channel needs a key.
        loc_keys: (T,) bool, frames where the location needs a key.
        weights: (T,) filter weight of every frame (1 data, 0 ignored).
        filled, outliers, low_confidence: (T,) bool masks.
        positions_raw, positions: (T, K, 3) joints before / after, metres.
    """

    motion: Motion
    report: SmoothingReport
    rot_keys: np.ndarray
    loc_keys: np.ndarray
    weights: np.ndarray
    filled: np.ndarray
    outliers: np.ndarray
    low_confidence: np.ndarray
    positions_raw: np.ndarray
    positions: np.ndarray


def _check_motion(motion: Motion) -> int:
    rot = np.asarray(motion.rot)
    t = len(rot)
    if rot.ndim != 3 or rot.shape[-1] != 4:
        raise SmoothingError(f"rotations must be (T, J, 4) quaternions, got shape {rot.shape}")
    for name, shape in (("loc", (t, 3)), ("valid", (t,)), ("conf", (t,)), ("groups", (rot.shape[1],))):
        if np.shape(getattr(motion, name)) != shape:
            raise SmoothingError(f"motion.{name} must have shape {shape}, got {np.shape(getattr(motion, name))}")
    if t == 0 or not np.any(motion.valid):
        raise SmoothingError("nothing captured to smooth: the hand has no frame with a pose")
    if not (np.all(np.isfinite(rot[motion.valid])) and np.all(np.isfinite(np.asarray(motion.loc)[motion.valid]))):
        raise SmoothingError("the motion holds NaN or infinite values on valid frames")
    return t


def _linear_filter(settings: SmoothingSettings, weights: np.ndarray, strength: float) -> filters.FilterRows | None:
    """The zero-phase operator for one strength, or None for 'leave raw'."""
    if strength <= 0 or settings.method not in ("gaussian", "savgol"):
        return None
    if settings.method == "gaussian":
        return filters.gaussian_rows(weights, settings.sigma * strength)
    window = 2 * int(round((settings.window * strength - 1) / 2)) + 1
    if window <= settings.order + 1:
        return None
    return filters.savgol_rows(weights, window, settings.order)


def _filter(settings: SmoothingSettings, rot, loc, weights, groups, fps) -> tuple[np.ndarray, np.ndarray]:
    strengths = np.array([settings.strength(g) for g in GROUPS])[groups]
    loc_strength = settings.strength("location")
    if settings.method == "one_euro":
        cut = np.where(strengths > 0, settings.min_cutoff / np.maximum(strengths, 1e-12), np.inf)
        rot_out = filters.one_euro(rot, weights, fps, cut, settings.beta, settings.d_cutoff, rotations=True)
        loc_cut = settings.min_cutoff / loc_strength if loc_strength > 0 else np.inf
        loc_out = filters.one_euro(loc[:, None], weights, fps, loc_cut, settings.beta_location, settings.d_cutoff)
        return rot_out, loc_out[:, 0]
    cache: dict[float, filters.FilterRows | None] = {}

    def rows_for(s: float):
        if s not in cache:
            cache[s] = _linear_filter(settings, weights, s)
        return cache[s]

    rot_out = rot.copy()
    for j, s in enumerate(strengths):
        rows = rows_for(float(s))
        if rows is not None:
            rot_out[:, j] = filters.apply_rows_quat(rows, rot[:, j])
    rows = rows_for(loc_strength)
    loc_out = loc.copy() if rows is None else filters.apply_rows(rows, loc)
    return rot_out, loc_out


def smooth_motion(
    motion: Motion, settings: SmoothingSettings, fps: float, positions_fn: PositionsFn
) -> SmoothingResult:
    """Clean up and smooth one hand's motion.

    Args:
        motion: the raw motion (see ``Motion``).
        settings: see ``SmoothingSettings``.
        fps: frames per second (One-Euro cutoffs are in Hz; ignored by the other methods).
        positions_fn: (rot (T, J, 4), loc (T, 3)) -> (T, K, 3) joint positions in metres, for the
            outlier test and the readouts (``hand_positions`` for captures, the armature chain in Blender).

    Raises:
        SmoothingError: bad settings, bad shapes, or no valid frame.
    """
    settings.validate()
    t = _check_motion(motion)
    if settings.method == "one_euro" and not fps > 0:
        raise SmoothingError("the One-Euro filter needs the clip's frame rate (fps is 0: a photo?)")
    valid = np.asarray(motion.valid, bool)
    conf = np.asarray(motion.conf, np.float64)
    groups = np.asarray(motion.groups, np.int64)
    rot = quat.make_continuous(quat.normalize(np.nan_to_num(motion.rot)), valid)
    loc = np.nan_to_num(np.asarray(motion.loc, np.float64))
    raw_positions = positions_fn(rot, loc)

    low_conf = valid & (conf < settings.min_confidence)
    if not np.any(valid & ~low_conf):
        low_conf = np.zeros(t, bool)  # every frame is doubtful: confidence tells nothing here
    keep = valid & ~low_conf
    outliers = np.zeros(t, bool)
    if settings.reject_outliers:
        outliers, _ = cleanup.hampel_outliers(
            raw_positions, keep, threshold=settings.outlier_threshold, min_m=settings.outlier_min_mm / 1000.0
        )
        keep &= ~outliers
    dropped = valid & ~keep
    weights = keep.astype(np.float64)
    present = keep if settings.outlier_weight == 0 else valid
    weights[dropped] = settings.outlier_weight
    filled = np.zeros(t, bool)
    if settings.fill_gaps and settings.max_gap > 0:
        rot, loc, filled = cleanup.fill_gaps(rot, loc, present, settings.max_gap)
        weights[filled] = settings.filled_weight
    out_valid = valid | filled

    rot_s, loc_s = _filter(settings, rot, loc, weights, groups, fps)
    rot_s = np.where(out_valid[:, None, None], rot_s, rot)
    loc_s = np.where(out_valid[:, None], loc_s, loc)
    rot_s = quat.make_continuous(quat.normalize(rot_s), out_valid)
    positions = positions_fn(rot_s, loc_s)

    n_joints = rot.shape[1]
    if settings.reduce_keys:
        tol = np.radians(settings.key_tolerance_deg)
        rot_keys = np.stack([cleanup.reduce_keys(rot_s[:, j], out_valid, tol, True) for j in range(n_joints)], 1)
        loc_keys = cleanup.reduce_keys(loc_s, out_valid, settings.key_tolerance_mm / 1000.0)
    else:
        rot_keys = np.repeat(out_valid[:, None], n_joints, axis=1)
        loc_keys = out_valid.copy()
    dev_mean, dev_max = cleanup.deviation_mm(positions, raw_positions, valid & keep)
    report = SmoothingReport(
        jitter_before_mm=cleanup.jitter_mm(raw_positions, valid),
        jitter_after_mm=cleanup.jitter_mm(positions, valid),
        deviation_mean_mm=dev_mean,
        deviation_max_mm=dev_max,
        frames=t,
        valid_frames=int(valid.sum()),
        filled_frames=int((filled & ~valid).sum()),
        outlier_frames=int(outliers.sum()),
        low_confidence_frames=int(low_conf.sum()),
        keys_before=int(valid.sum()) * (n_joints + 1),
        keys_after=int(rot_keys.sum() + loc_keys.sum()),
    )
    smoothed = Motion(rot=rot_s, loc=loc_s, valid=out_valid, conf=conf.copy(), groups=groups.copy())
    return SmoothingResult(
        motion=smoothed,
        report=report,
        rot_keys=rot_keys,
        loc_keys=loc_keys,
        weights=weights,
        filled=filled,
        outliers=outliers,
        low_confidence=low_conf,
        positions_raw=raw_positions,
        positions=positions,
    )
