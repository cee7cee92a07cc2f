"""Reductions with a fixed order, so the built-in hand model is the same on every CPU.

``a @ b``, ``np.dot`` and ``np.linalg.norm`` go through BLAS, whose kernels sum in an order (and with or
without FMA) that depends on the CPU: the asset then differed in the last bits between machines, and a
vertex nearly equidistant from two bones could change its bone. These helpers use only element-wise
multiplies and adds in a fixed order, which IEEE arithmetic rounds the same way everywhere.
"""

from __future__ import annotations

import numpy as np

# Distances are compared after rounding to this grid (metres), so that a near tie between two
# candidates resolves to the first one on every machine instead of to whichever rounding won.
TIE_GRID = 1e-9


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of a * b over the last axis (broadcasting), accumulated left to right."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = max(a.shape[-1], b.shape[-1])
    a, b = np.broadcast_to(a, a.shape[:-1] + (n,)), np.broadcast_to(b, b.shape[:-1] + (n,))
    out = a[..., 0] * b[..., 0]
    for k in range(1, n):
        out = out + a[..., k] * b[..., k]
    return out


def matmul(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``a @ m`` for a (..., K) and m (K, J), accumulated left to right over K."""
    a, m = np.asarray(a, np.float64), np.asarray(m, np.float64)
    out = a[..., 0, None] * m[0]
    for k in range(1, m.shape[0]):
        out = out + a[..., k, None] * m[k]
    return out


def norm(v: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """Euclidean length along ``axis``."""
    v = np.moveaxis(np.asarray(v, np.float64), axis, -1)
    out = np.sqrt(dot(v, v))
    return np.expand_dims(out, axis) if keepdims else out


def argmin_robust(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """argmin after rounding to TIE_GRID: near ties go to the lowest index on every machine."""
    return np.argmin(np.round(np.asarray(d) / TIE_GRID), axis=axis)
