"""Motion clean-up and readouts, numpy only: outliers, gap filling, key reduction, jitter.

Frames are samples on a uniform grid (index t); ``valid`` masks say where a sample
holds data. Positions are (T, K, 3) in metres; readouts are in millimetres.
"""

from __future__ import annotations

import numpy as np

from . import quat


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open (start, stop) index ranges where ``mask`` is True, in order."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def bounded_gaps(valid: np.ndarray, max_gap: int) -> np.ndarray:
    """(T,) bool: frames inside runs of invalid frames that are at most ``max_gap`` long and have a
    valid frame on both sides (leading and trailing gaps are never bridged)."""
    valid = np.asarray(valid, bool)
    out = np.zeros(len(valid), bool)
    for a, b in runs(~valid):
        if a > 0 and b < len(valid) and b - a <= max_gap:
            out[a:b] = True
    return out


def fill_gaps(
    rot: np.ndarray, loc: np.ndarray, valid: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bridge short gaps: slerp for rotations, linear for locations.

    Args:
        rot: (T, J, 4) quaternions; loc: (T, D) locations; valid: (T,) bool.
        max_gap: longest gap (frames) to fill.

    Returns:
        (rot, loc, filled): copies with the gap frames replaced, and the (T,) mask of filled frames.
    """
    rot = np.array(rot, dtype=np.float64, copy=True)
    loc = np.array(loc, dtype=np.float64, copy=True)
    valid = np.asarray(valid, bool)
    filled = bounded_gaps(valid, max_gap)
    for a, b in runs(filled):
        before, after = a - 1, b
        u = (np.arange(a, b) - before) / float(after - before)
        rot[a:b] = quat.slerp(rot[before][None], rot[after][None], u[:, None])
        loc[a:b] = loc[before] + u[:, None] * (loc[after] - loc[before])
    return rot, loc, filled


def _run_reach(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,) counts of consecutive valid frames just before and just after each frame."""
    t = len(valid)
    before = np.zeros(t, np.int64)
    after = np.zeros(t, np.int64)
    for i in range(1, t):
        before[i] = before[i - 1] + 1 if valid[i - 1] else 0
    for i in range(t - 2, -1, -1):
        after[i] = after[i + 1] + 1 if valid[i + 1] else 0
    return before, after


def hampel_outliers(
    positions: np.ndarray, valid: np.ndarray, half_window: int = 3, threshold: float = 6.0, min_m: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose joints jump away from where their neighbours put them (a Hampel-style test).

    Each valid frame is predicted from its neighbours as the per-coordinate median of the
    midpoints ``(p[t-k] + p[t+k]) / 2`` for k = 1..``half_window`` (symmetric pairs of valid
    frames): exact for steady motion however fast, off by only ~k^2/2 frames of acceleration on
    curves, and one or two glitched neighbours cannot drag the median. The frame's deviation is
    its largest joint distance to that prediction (a glitch of a single finger counts). A frame
    is an outlier when its deviation exceeds both ``threshold`` times the clip's median deviation
    (the noise level) and ``min_m`` metres. Frames without a valid neighbour on both sides are
    not tested.

    Returns:
        (outlier, deviation): (T,) bool and (T,) float metres (NaN where not tested).
    """
    p = np.asarray(positions, dtype=np.float64)
    valid = np.asarray(valid, bool)
    t = len(p)
    dev = np.full(t, np.nan)
    before, after = _run_reach(valid)
    reach = np.minimum(np.minimum(before, after), half_window)
    for h in range(1, half_window + 1):
        rows = np.flatnonzero(valid & (reach == h))
        if len(rows) == 0:
            continue
        k = np.arange(1, h + 1)
        mids = 0.5 * (p[rows[:, None] - k] + p[rows[:, None] + k])  # (R, h, K, 3)
        pred = np.median(mids, axis=1)
        dev[rows] = np.max(np.linalg.norm(p[rows] - pred, axis=-1), axis=-1)
    tested = ~np.isnan(dev)
    if not np.any(tested):
        return np.zeros(t, bool), dev
    limit = max(threshold * float(np.median(dev[tested])), min_m)
    return tested & (np.nan_to_num(dev) > limit), dev


def jitter_mm(positions: np.ndarray, valid: np.ndarray) -> float:
    """Mean joint acceleration, mm / frame^2: mean over joints and over every frame t whose
    neighbours t-1, t+1 are valid too, of ``|p[t+1] - 2 p[t] + p[t-1]|``. NaN if no such frame."""
    p = np.asarray(positions, dtype=np.float64)
    v = np.asarray(valid, bool)
    if len(p) < 3:
        return float("nan")
    ok = v[:-2] & v[1:-1] & v[2:]
    if not np.any(ok):
        return float("nan")
    acc = p[2:] - 2.0 * p[1:-1] + p[:-2]
    return float(np.linalg.norm(acc[ok], axis=-1).mean() * 1000.0)


def deviation_mm(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(mean, max) joint distance between two (T, K, 3) position sequences on ``valid`` frames, mm."""
    v = np.asarray(valid, bool)
    if not np.any(v):
        return float("nan"), float("nan")
    d = np.linalg.norm(np.asarray(a, np.float64)[v] - np.asarray(b, np.float64)[v], axis=-1) * 1000.0
    return float(d.mean()), float(d.max())


def _rdp(n: int, error) -> np.ndarray:
    """Ramer-Douglas-Peucker on indices 0..n-1: keep both ends, split at the worst interior sample
    while ``error(a, b)`` (interior errors of the segment a..b) exceeds the tolerance (returns max, argmax)."""
    keep = np.zeros(n, bool)
    keep[0] = keep[n - 1] = True
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        worst, at = error(a, b)
        if worst:
            keep[at] = True
            stack += [(a, at), (at, b)]
    return keep


def reduce_keys(values: np.ndarray, valid: np.ndarray, tolerance: float, rotations: bool = False) -> np.ndarray:
    """Keys needed so LINEAR interpolation between them reproduces ``values`` within ``tolerance``.

    Args:
        values: (T, D) samples, or (T, 4) quaternions when ``rotations`` (Blender interpolates
            the components linearly and normalises; the error is the rotation angle, radians).
        valid: (T,) bool; every run of valid frames keeps its first and last key.
        tolerance: metres (or the values' units) for vectors, radians for rotations.

    Returns:
        (T,) bool, True where a key must be written (always False on invalid frames).
    """
    values = np.asarray(values, dtype=np.float64)
    keep = np.zeros(len(values), bool)
    for a, b in runs(valid):
        seg = values[a:b]

        def error(i, j, seg=seg):
            u = (np.arange(i + 1, j) - i) / float(j - i)
            lerp = seg[i] + u[:, None] * (seg[j] - seg[i])
            if rotations:
                err = quat.angle_between(lerp, seg[i + 1 : j])
            else:
                err = np.linalg.norm(lerp - seg[i + 1 : j], axis=-1)
            k = int(np.argmax(err))
            return bool(err[k] > tolerance), i + 1 + k

        keep[a:b] = _rdp(b - a, error)
    return keep
