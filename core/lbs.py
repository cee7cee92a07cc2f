"""Rotations and linear blend skinning in numpy (MANO / SMPL semantics, no torch).

Conventions (see docs/hand-model.md):

* ``theta`` rows are axis-angle vectors (radians) in the TEMPLATE axes; row 0 is
  the global orientation, row j rotates joint j relative to its parent. All rest
  frames are the template axes (MANO has no per-bone rest rotations).
* Joint j rotates about its rest position ``J[j]``; joint 0 (the root) pivots
  about ``J[0]``, so the posed root sits at ``J[0]`` before any translation.
"""

from __future__ import annotations

import numpy as np


def rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices (float64).

    Exact for every angle; uses the Taylor series of sin(t)/t and (1-cos t)/t^2
    near zero so a zero vector gives the identity without dividing by zero.
    """
    r = np.asarray(rotvec, dtype=np.float64)
    t2 = np.sum(r * r, axis=-1)
    small = t2 < 1e-12
    t2s = np.where(small, 1.0, t2)
    t = np.sqrt(t2s)
    a = np.where(small, 1.0 - t2 / 6.0, np.sin(t) / t)
    b = np.where(small, 0.5 - t2 / 24.0, (1.0 - np.cos(t)) / t2s)
    k = skew(r)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices, ``skew(a) @ b == cross(a, b)``."""
    v = np.asarray(v, dtype=np.float64)
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def matrix_to_rotvec(mat: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle in [0, pi] (float64)."""
    m = np.asarray(mat, dtype=np.float64)
    cos = np.clip((np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    ang = np.arccos(cos)
    vee = np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    sin = np.sin(ang)
    regular = sin > 1e-6
    out = np.where(regular[..., None], vee * (ang / (2.0 * np.where(regular, sin, 1.0)))[..., None], 0.5 * vee)
    # Near pi the antisymmetric part vanishes: read the axis from the symmetric part instead.
    near_pi = (~regular) & (cos < 0)
    if np.any(near_pi):
        sym = (m[near_pi] + np.eye(3)) / 2.0
        col = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
        axis = sym[np.arange(len(col)), :, col]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        sign = np.where(np.einsum("ni,ni->n", axis, vee[near_pi]) < 0, -1.0, 1.0)
        out[near_pi] = axis * (ang[near_pi] * sign)[:, None]
    return out


def depth_levels(parents: np.ndarray) -> list[np.ndarray]:
    """Joints grouped by depth in the tree (root level first); parents come before children."""
    parents = np.asarray(parents)
    depth = np.zeros(len(parents), dtype=np.int64)
    for j, p in enumerate(parents):
        if p >= 0:
            if p >= j:
                raise ValueError(f"parents must list every parent before its child (joint {j} has parent {p})")
            depth[j] = depth[p] + 1
    return [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]


def global_transforms(rot: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics of a tree.

    Args:
        rot: (B, J, 3, 3) local rotations (template axes, relative to the parent).
        joints: (B, J, 3) rest joint positions.
        parents: (J,) parent index, -1 for the root; parents precede children.

    Returns:
        (R, t): (B, J, 3, 3) global rotations and (B, J, 3) posed joint positions, so
        a rest point p rigidly attached to joint j goes to ``R[j] @ (p - J[j]) + t[j]``.
    """
    parents = np.asarray(parents)
    rot_g = np.empty_like(rot)
    pos_g = np.empty_like(joints)
    for level in depth_levels(parents):
        par = parents[level]
        if par[0] < 0:
            rot_g[:, level] = rot[:, level]
            pos_g[:, level] = joints[:, level]
            continue
        rp = rot_g[:, par]
        rot_g[:, level] = rp @ rot[:, level]
        offset = joints[:, level] - joints[:, par]
        pos_g[:, level] = pos_g[:, par] + np.einsum("bjkl,bjl->bjk", rp, offset)
    return rot_g, pos_g


def skin(
    points: np.ndarray, weights: np.ndarray, rot_g: np.ndarray, pos_g: np.ndarray, joints: np.ndarray
) -> np.ndarray:
    """Linear blend skinning.

    Args:
        points: (B, N, 3) rest points (already shaped and pose-corrected).
        weights: (N, J) skinning weights, rows sum to 1.
        rot_g, pos_g: output of ``global_transforms``.
        joints: (B, J, 3) rest joints.

    Returns:
        (B, N, 3) posed points: sum_j w_nj (R_j (p_n - J_j) + t_j).
    """
    # Blend the affine maps first (B, N, 3, 4) instead of transforming every point by every joint.
    trans = pos_g - np.einsum("bjkl,bjl->bjk", rot_g, joints)
    rot_b = np.einsum("nj,bjkl->bnkl", weights, rot_g)
    trans_b = np.einsum("nj,bjk->bnk", weights, trans)
    return np.einsum("bnkl,bnl->bnk", rot_b, points) + trans_b
