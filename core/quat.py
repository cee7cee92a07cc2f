"""Unit quaternions in numpy, (w, x, y, z) order like Blender's ``rotation_quaternion``.

Rotation vectors ("rotvec") are axis * angle in radians, the tangent space at the
identity: ``exp`` maps a rotvec to a quaternion, ``log`` maps a quaternion back to
the rotvec of angle in [0, pi] (``q`` and ``-q`` give the same rotvec).
"""

from __future__ import annotations

import numpy as np


def normalize(q: np.ndarray) -> np.ndarray:
    """(..., 4) -> unit quaternions; a zero row becomes the identity instead of NaN."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    ident = np.zeros_like(q)
    ident[..., 0] = 1.0
    return np.where(n > 1e-12, q / np.where(n > 1e-12, n, 1.0), ident)


def conj(q: np.ndarray) -> np.ndarray:
    """Conjugate = inverse of a unit quaternion."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` (apply b first, then a), broadcasting over leading axes."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def exp(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (radians) -> (..., 4) unit quaternions; exact near zero."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1)
    half = 0.5 * angle
    small = angle < 1e-8
    # sin(a/2)/a, with its Taylor series near zero so a zero vector gives the identity
    k = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([np.cos(half)[..., None], v * k[..., None]], axis=-1)


def log(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3) rotation vectors with angle in [0, pi]."""
    q = np.asarray(q, dtype=np.float64)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)  # shortest arc: q and -q are one rotation
    w = np.clip(q[..., 0], -1.0, 1.0)
    xyz = q[..., 1:]
    s = np.linalg.norm(xyz, axis=-1)
    angle = 2.0 * np.arctan2(s, w)
    small = s < 1e-8
    k = np.where(small, 2.0 / np.maximum(w, 1e-12), angle / np.where(small, 1.0, s))
    return xyz * k[..., None]


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle (radians, [0, pi]) from ``a`` to ``b``; sign-agnostic."""
    rel = mul(conj(normalize(a)), normalize(b))
    # atan2 keeps full precision at small angles, where arccos(w) loses half the digits
    return 2.0 * np.arctan2(np.linalg.norm(rel[..., 1:], axis=-1), np.abs(rel[..., 0]))


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation along the shorter arc, ``t`` in [0, 1] broadcasting over leading axes."""
    a = normalize(a)
    b = normalize(b)
    b = b * np.where(np.sum(a * b, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    t = np.asarray(t, dtype=np.float64)
    delta = log(mul(conj(a), b))
    return mul(a, exp(delta * t[..., None]))


def make_continuous(q: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Flip signs along axis 0 (time) so every quaternion lies in the hemisphere of the previous one.

    Args:
        q: (T, ..., 4) quaternions.
        mask: optional (T,) bool; rows where it is False are ignored as references (each
            row is compared with the last True row before it), so garbage in invalid frames
            cannot flip the valid ones.
    """
    q = np.array(q, dtype=np.float64, copy=True)
    if len(q) < 2:
        return q
    rows = np.arange(len(q)) if mask is None else np.flatnonzero(np.asarray(mask, bool))
    if len(rows) >= 2:
        sub = q[rows]
        dots = np.sum(sub[1:] * sub[:-1], axis=-1)
        step = np.where(dots < 0, -1.0, 1.0)
        sign = np.concatenate([np.ones((1,) + step.shape[1:]), np.cumprod(step, axis=0)])
        q[rows] = sub * sign[..., None]
    if mask is not None:
        # Align ignored rows with the nearest earlier reference so later filters see no jumps.
        ref = np.maximum.accumulate(np.where(np.asarray(mask, bool), np.arange(len(q)), -1))
        fix = (ref >= 0) & ~np.asarray(mask, bool)
        if np.any(fix):
            flip = np.sum(q[fix] * q[ref[fix]], axis=-1) < 0
            q[fix] = np.where(flip[..., None], -q[fix], q[fix])
    return q
