"""Rotation maths of retargeting (numpy only; see ``builders/retarget.py`` for how it is used).

Rotations are 3x3 matrices whose COLUMNS are a bone's X, Y, Z axes (Y along the bone), in any one frame.
"""

from __future__ import annotations

import numpy as np


def orthonormal(m) -> np.ndarray:
    """Nearest rotation (SVD) to the upper-left 3x3 of a matrix; removes scale and float32 round-off."""
    a = np.array(m, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(a)
    if np.linalg.det(u @ vt) < 0:  # a mirrored object: the nearest proper rotation flips the weakest axis
        u[:, -1] *= -1
    return u @ vt


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3x3) taking unit vector ``a`` onto unit vector ``b``."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-9:  # opposite: turn half way round any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def palm_frame(wrist: np.ndarray, knuckles: dict[str, np.ndarray]) -> np.ndarray | None:
    """Palm frame (3x3, columns X radial, Y wrist -> knuckles, Z = X x Y) or None if too few knuckles.

    ``knuckles``: finger name -> head of that finger's first bone (thumb excluded)."""
    bases = [knuckles[f] for f in ("index", "middle", "ring", "pinky") if f in knuckles]
    radial = knuckles.get("index", knuckles.get("middle"))
    ulnar = knuckles.get("pinky", knuckles.get("ring"))
    if len(bases) < 2 or radial is None or ulnar is None or radial is ulnar:
        return None
    y = np.mean(bases, axis=0) - wrist
    x = radial - ulnar
    if np.linalg.norm(y) < 1e-9:
        return None
    y /= np.linalg.norm(y)
    x = x - np.dot(x, y) * y
    if np.linalg.norm(x) < 1e-9:
        return None
    x /= np.linalg.norm(x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def rest_offsets(src_rest: np.ndarray, tgt_rest: np.ndarray, hand_align: np.ndarray) -> np.ndarray:
    """Per-bone offsets ``C_b`` (N, 3, 3) from source / target rest frames (N, 3, 3) and ``H`` (3, 3)."""
    out = np.empty_like(src_rest)
    for i, (s, t) in enumerate(zip(src_rest, tgt_rest, strict=True)):
        aligned = hand_align @ s
        aligned = swing(aligned[:, 1], t[:, 1]) @ aligned
        out[i] = aligned.T @ t
    return out
