"""Bridging short gaps of a fitted hand track from both sides of the gap.

Where a hand is missing for a few frames between two seen stretches (a brief occlusion, a missed detection),
the fit has no evidence there: its values are the start's interpolation between the initial guesses on each
side, held by the translation priors, not the final fit. Bridging replaces them by values taken from the
fitted frames on both sides: every joint's rotation by slerp between the last fitted frame before the gap and
the first after it (constant angular speed: a hand turning through a gap keeps turning), and the translation by
a cubic Hermite curve through those two frames whose end tangents are the fitted velocities just outside the
gap (a least-squares slope over up to ``VELOCITY_FRAMES`` seen frames on each side), so the wrist keeps its
motion into and out of the gap instead of kinking at its ends. Shape and skeleton are the clip's. Gaps longer
than ``max_gap`` frames, and frames before the first or after the last seen frame, are left as they were
(unkeyed): over a long gap a guess is no longer the hand's motion.

Measured in ``benchmarks/bench_gaps.py`` (README): error of bridged frames against the truth of synthetic clips
and against the unpainted capture of a real clip with one hand painted out.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

#: Seen frames on each side of a gap whose fitted translations give the curve's end velocity.
VELOCITY_FRAMES = 3
CURVES = ("hermite", "linear")


def gap_runs(valid: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, stop) runs of unseen frames with seen frames on both sides, at most ``max_gap`` long."""
    valid = np.asarray(valid, bool)
    padded = np.concatenate([[True], valid, [True]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    runs = zip(edges[::2], edges[1::2], strict=True)
    return [(int(a), int(b)) for a, b in runs if 0 < a and b < len(valid) and b - a <= max_gap]


def _slope(transl: np.ndarray, valid: np.ndarray, frames: range) -> np.ndarray:
    """Least-squares velocity (per frame) over the seen frames among ``frames`` (contiguous, next to a gap)."""
    idx = [i for i in frames if 0 <= i < len(valid) and valid[i]]
    if len(idx) < 2:
        return np.full(3, np.nan)
    t = np.asarray(idx, np.float64)
    t = t - t.mean()
    return (t[:, None] * transl[idx]).sum(0) / (t**2).sum()


def _contiguous(valid: np.ndarray, start: int, step: int) -> range:
    """Up to VELOCITY_FRAMES seen frames from ``start`` going ``step`` (-1 back, +1 on), stopping at a gap."""
    stop = start
    for _ in range(VELOCITY_FRAMES):
        if not (0 <= stop < len(valid)) or not valid[stop]:
            break
        stop += step
    return range(start, stop, step) if step > 0 else range(stop + 1, start + 1)


def bridge_values(
    theta: np.ndarray, transl: np.ndarray, valid: np.ndarray, max_gap: int, curve: str = "hermite"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """theta (T, 16, 3) axis-angle and transl (T, 3) with each short gap filled from both sides; returns them
    and the (T,) bridged mask. curve: "hermite" (end velocities kept) or "linear" (translation) for comparison."""
    if curve not in CURVES:
        raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
    theta, transl = np.array(theta, np.float64), np.array(transl, np.float64)
    valid = np.asarray(valid, bool)
    bridged = np.zeros(len(valid), bool)
    for a, b in gap_runs(valid, max_gap):
        i0, i1, n = a - 1, b, b - a
        s = np.arange(1, n + 1) / (n + 1)  # the gap's frames between the two ends (0 and 1)
        r0 = Rotation.from_rotvec(theta[i0])
        step = (r0.inv() * Rotation.from_rotvec(theta[i1])).as_rotvec()  # per joint, the shorter way round
        for m, u in enumerate(s):
            theta[a + m] = (r0 * Rotation.from_rotvec(step * u)).as_rotvec()
        p0, p1 = transl[i0], transl[i1]
        chord = p1 - p0
        v0 = _slope(transl, valid, _contiguous(valid, i0, -1)) * (n + 1)  # tangents in the gap's parameter
        v1 = _slope(transl, valid, _contiguous(valid, i1, 1)) * (n + 1)
        if curve == "linear" or not (np.isfinite(v0).all() and np.isfinite(v1).all()):
            v0 = v1 = chord  # the Hermite curve with chord tangents is the straight line at constant speed
        u = s[:, None]
        h00, h10, h01, h11 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2
        transl[a:b] = h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
        bridged[a:b] = True
    return theta, transl, bridged


def bridge_fit(fit, model, max_gap: int, curve: str = "hermite"):
    """The ``fit.HandFit`` with its short gaps bridged (``bridge_values``) and their keypoints posed by
    ``model`` (the track's hand model, float64); returns (fit, bridged mask). ``fit.valid`` is unchanged:
    bridged frames were not seen."""
    if max_gap <= 0 or fit.valid.all():
        return fit, np.zeros(len(fit.valid), bool)
    theta, transl, bridged = bridge_values(fit.theta, fit.transl, fit.valid, max_gap, curve)
    if not bridged.any():
        return fit, bridged
    kp3d = np.array(fit.kp3d, np.float64)
    opts = {"dtype": torch.float64, "device": model.joint_frames.device}
    with torch.no_grad():
        out = model(
            torch.as_tensor(theta[bridged], **opts),
            torch.as_tensor(np.asarray(fit.beta, np.float64), **opts),
            torch.as_tensor(transl[bridged], **opts),
            with_vertices=False,
            joint_offsets=torch.as_tensor(np.asarray(fit.joint_offsets, np.float64), **opts),
        )
    kp3d[bridged] = out.keypoints.cpu().numpy()
    return type(fit)(**{**fit.__dict__, "theta": theta, "transl": transl, "kp3d": kp3d}), bridged
