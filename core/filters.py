"""Smoothing filters for motion curves, numpy only (Blender's Python has numpy but no scipy).

Offline filters are weighted local polynomial fits written as a linear operator
(``FilterRows``): ``y[t] = sum_k coef[t, k] * x[idx[t, k]]``. Per-sample weights in
[0, 1] let invalid frames (weight 0) and doubtful ones (between) take part correctly,
and the same operator smooths translations directly and rotations in the tangent space
(``apply_rows_quat``).

* ``gaussian_rows``: Gaussian kernel, local LINEAR fit. With all weights equal and the
  kernel inside the clip this is exactly ``scipy.ndimage.gaussian_filter1d`` (the linear
  term vanishes by symmetry); at the clip ends and around gaps the linear term removes
  the lag a plain normalised convolution has.
* ``savgol_rows``: Savitzky-Golay: uniform window, polynomial of ``order``; equal to
  ``scipy.signal.savgol_filter(mode="interp")`` with equal weights, including the ends.

``one_euro`` is the causal One-Euro filter (Casiez et al. 2012) for vectors and quaternions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import quat


@dataclass
class FilterRows:
    """A linear smoothing operator over T samples.

    Attributes:
        idx: (T, W) int64 sample indices (always inside 0..T-1).
        coef: (T, W) float64 coefficients; each supported row sums to 1.
        support: (T,) bool, False where no weighted sample was in reach (the row is then
            the identity: the sample is passed through unchanged).
    """

    idx: np.ndarray
    coef: np.ndarray
    support: np.ndarray


def gaussian_radius(sigma: float, truncate: float = 4.0) -> int:
    """Kernel half-width in samples, as scipy.ndimage computes it."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_rows(weights: np.ndarray, sigma: float, truncate: float = 4.0, order: int = 1) -> FilterRows:
    """Gaussian-weighted local polynomial fit (``order`` 1: local linear) of standard deviation ``sigma`` samples.

    Args:
        weights: (T,) per-sample weights in [0, 1] (0 = no data).
    """
    w = np.asarray(weights, dtype=np.float64)
    t = len(w)
    r = gaussian_radius(sigma, truncate)
    offsets = np.arange(-r, r + 1)
    raw_idx = np.arange(t)[:, None] + offsets[None, :]
    inside = (raw_idx >= 0) & (raw_idx < t)
    idx = np.clip(raw_idx, 0, max(t - 1, 0))
    g = np.exp(-0.5 * (offsets / float(sigma)) ** 2)
    kern = g[None, :] * w[idx] * inside
    dx = offsets[None, :].astype(np.float64) / max(r, 1)  # scaled to [-1, 1] for conditioning
    return _local_poly(idx, np.broadcast_to(dx, idx.shape), kern, order)


def savgol_rows(weights: np.ndarray, window: int, order: int) -> FilterRows:
    """Savitzky-Golay fit over ``window`` samples (odd); the window slides inward at the clip ends."""
    w = np.asarray(weights, dtype=np.float64)
    t = len(w)
    window = int(window)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"Savitzky-Golay window must be a positive odd number of frames, got {window}")
    if order < 0 or order >= window:
        raise ValueError(f"Savitzky-Golay order must be in 0..window-1, got order {order} for window {window}")
    n = min(window, t)
    half = window // 2
    start = np.clip(np.arange(t) - half, 0, max(t - n, 0))
    idx = start[:, None] + np.arange(n)[None, :]
    dx = (idx - np.arange(t)[:, None]).astype(np.float64) / max(half, 1)
    return _local_poly(idx, dx, w[idx], order)


def _local_poly(idx: np.ndarray, dx: np.ndarray, kern: np.ndarray, order: int) -> FilterRows:
    """Rows of the weighted least-squares polynomial fit evaluated at dx = 0.

    The order drops per row to what its weighted samples can determine (a fit of order p
    needs p + 1 samples), so rows next to gaps stay well posed.
    """
    t, width = idx.shape
    coef = np.zeros((t, width))
    n_samples = np.count_nonzero(kern > 0, axis=1)
    row_order = np.minimum(order, n_samples - 1)
    support = n_samples > 0
    for p in np.unique(row_order[support]):
        rows = np.flatnonzero(support & (row_order == p))
        vand = dx[rows][..., None] ** np.arange(p + 1)  # (R, W, p+1)
        k = kern[rows]
        normal = np.einsum("rw,rwi,rwj->rij", k, vand, vand)
        e0 = np.zeros((len(rows), p + 1, 1))
        e0[:, 0, 0] = 1.0
        z = np.linalg.solve(normal, e0)[..., 0]  # first row of the inverse (normal is symmetric)
        coef[rows] = k * np.einsum("rwi,ri->rw", vand, z)
    return FilterRows(idx=idx, coef=coef, support=support)


def apply_rows(rows: FilterRows, x: np.ndarray) -> np.ndarray:
    """Apply the operator to (T, ...) samples; unsupported rows pass through."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.nan_to_num(x)  # unweighted samples may be NaN; their coefficient is 0
    y = np.einsum("tk,tk...->t...", rows.coef, safe[rows.idx])
    keep = rows.support.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(keep, y, x)


def apply_rows_quat(rows: FilterRows, q: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Smooth (T, 4) unit quaternions with a linear operator, in the tangent space.

    Each output is ``m * exp(sum_k coef_k * log(m^-1 q_k))`` around a local mean ``m``
    (first the normalised linear filter of the components, then refined ``iterations``
    times), so the result is a proper rotation for any window, independent of the
    quaternions' signs and of the frames the rotations are expressed in.
    """
    q = quat.normalize(np.nan_to_num(np.asarray(q, dtype=np.float64)))
    window = q[rows.idx]  # (T, W, 4)
    # Put every sample in its row's hemisphere (relative to the row's own sample).
    window = window * np.where(np.sum(window * q[:, None], axis=-1, keepdims=True) < 0, -1.0, 1.0)
    lin = np.einsum("tk,tkc->tc", rows.coef, window)
    norm = np.linalg.norm(lin, axis=-1, keepdims=True)
    mean = np.where(norm > 1e-6, lin / np.where(norm > 1e-6, norm, 1.0), q)
    for _ in range(max(1, iterations)):
        tangent = quat.log(quat.mul(quat.conj(mean)[:, None], window))  # (T, W, 3)
        step = np.einsum("tk,tkc->tc", rows.coef, tangent)
        mean = quat.normalize(quat.mul(mean, quat.exp(step)))
    out = np.where(rows.support[:, None], mean, q)
    return out * np.where(np.sum(out * q, axis=-1, keepdims=True) < 0, -1.0, 1.0)


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * np.maximum(cutoff, 1e-12))
    return 1.0 / (1.0 + tau / dt)


def one_euro(
    x: np.ndarray,
    weights: np.ndarray,
    rate: float,
    min_cutoff: float | np.ndarray,
    beta: float,
    d_cutoff: float,
    rotations: bool = False,
) -> np.ndarray:
    """Causal One-Euro filter.

    Args:
        x: (T, C, D) samples: C channels of D-vectors, or unit quaternions (D = 4) when ``rotations``.
        weights: (T,) in [0, 1]; the update gain is scaled by the weight, so weight 0 frames
            hold the previous output and do not advance the filter's state.
        rate: samples per second (the cutoffs are in Hz).
        min_cutoff: scalar or (C,) minimum cutoff frequency per channel (np.inf = no filtering).
        beta: speed coefficient (per unit/s of the channel's speed: rad/s for rotations).
        d_cutoff: cutoff of the speed estimate, Hz.

    Returns:
        (T, C, D) filtered samples (quaternions stay unit and hemisphere-continuous).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if rate <= 0:
        raise ValueError(f"the One-Euro filter needs a positive frame rate, got {rate}")
    min_cut = np.broadcast_to(np.asarray(min_cutoff, dtype=np.float64), (x.shape[1],))
    passthrough = ~np.isfinite(min_cut)
    out = x.copy()
    prev = None
    dprev = np.zeros(x.shape[1])
    last = 0
    for t in range(len(x)):
        if prev is None:
            if w[t] > 0:
                prev, last = x[t].copy(), t
            continue
        if w[t] <= 0:
            out[t] = prev
            continue
        dt = (t - last) / rate
        diff = quat.log(quat.mul(quat.conj(prev), x[t])) if rotations else x[t] - prev
        speed = np.linalg.norm(diff, axis=-1) / dt
        dprev = dprev + _alpha(np.full_like(dprev, d_cutoff), dt) * (speed - dprev)
        gain = _alpha(np.where(passthrough, 1.0, min_cut) + beta * dprev, dt) * w[t]
        gain = np.where(passthrough, 1.0, gain)[:, None]
        prev = quat.normalize(quat.mul(prev, quat.exp(gain * diff))) if rotations else prev + gain * diff
        out[t] = prev
        last = t
    return out
