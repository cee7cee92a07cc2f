"""Closed-form Jacobians of the hand model's 21 keypoints (torch): pose, rest joints and shape, from one pass.

The fit needs d keypoints / d pose and d keypoints / d identity every step for every frame. Finite
differences cost one forward pass per probe (10 for the pose, 28 for beta and the palm offsets); here they
come from a single articulation (``HandModel.articulate``):

* pose: a change of joint k's axis-angle turns its subtree about the axis ``omega`` = R_parent(k) J_l(theta_k)
  e_c (J_l the left Jacobian of the exponential map), so a keypoint moves by ``omega x (q - p_k)``, with q
  the point as carried by each joint of the subtree, blended by its skinning weights (tips) or itself (joints);
  MANO's pose correctives of the tips are differentiated exactly (the built-in model has none);
* rest joints: posed joint j is p_0 + sum over its chain of R_parent(a) (J_a - J_parent(a)), linear in the
  rest joints for a fixed pose, so d p_j / d J_k = R_parent(k) - R_k over the chain (R_parent(k) alone at j);
  skinned tips add their own terms;
* shape: beta moves the rest joints (``j_shapedirs``) and the tips' rest vertices (``tip_shapedirs``).

Everything is relative to the posed wrist, which is where the fit places the translation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...core.keypoints import MANO_TO_KEYPOINTS, NUM_JOINTS, NUM_KEYPOINTS
from .model import owned, small_matmul

_NUM_TIPS = NUM_KEYPOINTS - NUM_JOINTS


@dataclass
class KeypointJacobians:
    """Keypoints and their derivatives for a batch of B poses (metres, the model's axes, HandKeypoint order).

    Attributes:
        points: (B, 21, 3) keypoints relative to the posed wrist.
        d_pose: (B, 21, 3, 48) d points / d pose; column 3 k + c is component c of joint k's rotation vector in
            the coordinates ``frames`` gives (theta_k = frames[k] @ local_k; the model's own axes by default).
        d_rest: (B, 21, 3, 16, 3) d points / d rest joint positions (what joint offsets add to), or None.
        d_beta: (B, 21, 3, 10) d points / d beta, or None.
    """

    points: torch.Tensor
    d_pose: torch.Tensor
    d_rest: torch.Tensor | None
    d_beta: torch.Tensor | None


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape + (3,))


def left_jacobian(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) left Jacobian of the exponential map: exp(theta + d) ~
    exp(J_l(theta) d) exp(theta); series near zero."""
    t2 = (rotvec * rotvec).sum(-1)
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2s)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2s)
    c = torch.where(small, 1.0 / 6.0 - t2 / 120.0, (t - torch.sin(t)) / (t2s * t))
    k = _skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + b[..., None, None] * k + c[..., None, None] * small_matmul(k, k)


@dataclass(frozen=True)
class _Slots:
    """Which joints move each point, rows in the model's order (16 joints, then 5 tips): row r is moved by
    joints ``joint[r, :]`` (padded with the root, ``mask`` 0); ``a`` and ``b`` are the coefficients of
    R_parent(k) and R_k in d point / d J_k (chain membership for joints, the skinning weight of k's subtree
    for tips); ``tip_w`` (5, S, 16) the tips' skinning weights of the joints under each slot; ``flat`` the
    (HandKeypoint row, joint) cell of each slot in a (21 x 16) table."""

    joint: np.ndarray
    mask: np.ndarray
    a: np.ndarray
    b: np.ndarray
    tip_w: np.ndarray
    flat: np.ndarray


def _chain(parents: np.ndarray) -> np.ndarray:
    """(16, 16): [j, k] = 1 where k is j or one of its ancestors."""
    chain = np.zeros((NUM_JOINTS, NUM_JOINTS))
    for j in range(NUM_JOINTS):
        a = j
        while a >= 0:
            chain[j, a] = 1.0
            a = int(parents[a])
    return chain


def _slots(parents: np.ndarray, tip_weights: np.ndarray) -> _Slots:
    chain = _chain(parents)
    subtree_w = tip_weights @ chain  # (5, 16): weight of the subtree of k in each tip
    not_self = chain - np.eye(NUM_JOINTS)
    rows = [(np.flatnonzero(chain[j]), chain[j], not_self[j]) for j in range(NUM_JOINTS)]
    rows += [(np.flatnonzero(w > 0), w, w) for w in subtree_w]
    width = max(len(r[0]) for r in rows)
    joint, mask, a, b = (np.zeros((NUM_KEYPOINTS, width)) for _ in range(4))
    for r, (ks, ca, cb) in enumerate(rows):
        joint[r, : len(ks)], mask[r, : len(ks)], a[r, : len(ks)], b[r, : len(ks)] = ks, 1.0, ca[ks], cb[ks]
    joint = joint.astype(np.int64)
    tip_w = tip_weights[:, None, :] * chain.T[joint[NUM_JOINTS:]] * mask[NUM_JOINTS:, :, None]
    key_row = np.argsort(MANO_TO_KEYPOINTS)  # model row -> HandKeypoint row
    return _Slots(joint, mask, a, b, tip_w, (key_row[:, None] * NUM_JOINTS + joint).reshape(-1))


def keypoint_jacobians(
    model, theta: torch.Tensor, beta: torch.Tensor, joint_offsets=None, frames=None, with_rest: bool = False
) -> KeypointJacobians:
    """Wrist-relative keypoints of ``model`` (a ``HandModel``) at poses theta (B, 16, 3), shapes beta (B, 10)
    and optional joint offsets (B, 16, 3), with their Jacobians (see the module's text); frames (16, 3, 3) the
    pose coordinates (default the identity), with_rest the rest-joint and shape Jacobians too.

    Each point only sees the joints of its own chain (the root and its finger's joints), so everything is
    computed per (point, chain joint) pair. MANO's pose correctives let a joint nudge other fingers' tips
    slightly; those columns are left out (their own finger's are exact)."""
    art = model.articulate(theta, beta, joint_offsets)
    rot, rg, pos, rest = art.rot, art.rot_g, art.pos_g, art.rest
    n, dev, dt = rot.shape[0], rot.device, rot.dtype
    w = model.tip_weights  # (5, 16)
    parents = model.parents.cpu().numpy()
    sl = _slots(parents, w.cpu().numpy())
    t = lambda a: owned(a, dt, dev)  # noqa: E731
    kj, mask = torch.as_tensor(sl.joint, device=dev), t(sl.mask)
    eye = torch.eye(3, dtype=dt, device=dev)
    r_par = torch.cat([eye.expand(n, 1, 3, 3), rg[:, parents[1:]]], 1)  # (B, 16, 3, 3), identity above the root
    th = torch.as_tensor(theta, dtype=dt, device=dev)
    axes = left_jacobian(th)
    if frames is not None:
        axes = axes @ t(frames)
    omega = small_matmul(r_par, axes).transpose(-1, -2)  # (B, 16, c, 3): the turning axis of component c of joint k
    # lever arms (B, 21, S, 3) about each slot's joint: a joint's own offset from it; a tip as every joint of the
    # slot's subtree carries it rigidly, blended by the skinning weights
    kj_j, kj_t = kj[:NUM_JOINTS], kj[NUM_JOINTS:]
    lever_j = pos[:, :, None] - pos[:, kj_j]
    carried = small_matmul(rg[:, None], (art.tips_rest[:, :, None] - rest[:, None])[..., None])[..., 0] + pos[:, None]
    lever_t = torch.einsum("msj,bmjx->bmsx", t(sl.tip_w), carried) - t(sl.a[NUM_JOINTS:])[..., None] * pos[:, kj_t]
    lever = torch.cat([lever_j, lever_t], 1) * mask[..., None]
    vals = torch.linalg.cross(omega[:, kj], lever[:, :, :, None], dim=-1)  # (B, 21, S, c, x)
    skin_rot = torch.einsum("mj,bjxy->bmxy", w, rg)  # (B, 5, 3, 3): d tip / d its rest vertex
    if model.has_posedirs:
        # d R_k / d local_kc = [J_l F e_c]x R_k through the tips' pose correctives, then skinned
        d_rot = _skew(axes[:, 1:].transpose(-1, -2)) @ rot[:, 1:, None]  # (B, 15, c, 3, 3)
        dirs = model.tip_posedirs.reshape(NUM_JOINTS - 1, 9, NUM_KEYPOINTS - NUM_JOINTS, 3)
        d_vert = torch.einsum("bkcp,kpmy->bmkcy", d_rot.reshape(n, NUM_JOINTS - 1, 3, 9), dirs)
        d_tip = torch.einsum("bmxy,bmkcy->bmkcx", skin_rot, d_vert)  # (B, 5, 15, c, x)
        tips_idx = torch.arange(NUM_KEYPOINTS - NUM_JOINTS, device=dev)[:, None]
        keep = ((kj_t > 0) * mask[NUM_JOINTS:])[None, ..., None, None]  # the root has no correctives
        vals[:, NUM_JOINTS:] += d_tip[:, tips_idx, (kj_t - 1).clamp(min=0)] * keep
    d_pose = _scatter(vals.transpose(-1, -2), sl.flat, n).reshape(n, NUM_KEYPOINTS, 3, 3 * NUM_JOINTS)
    tips = model._skin(art.tips_rest, w, rg, pos, rest)
    order = torch.as_tensor(MANO_TO_KEYPOINTS, device=dev)
    points = (torch.cat([pos, tips], 1) - pos[:, :1])[:, order]
    if not with_rest:
        return KeypointJacobians(points, d_pose, None, None)
    # d point / d J_k = a R_parent(k) - b R_k over the point's chain; minus the wrist's own (identity at J_0)
    d_slot = t(sl.a)[None, ..., None, None] * r_par[:, kj] - t(sl.b)[None, ..., None, None] * rg[:, kj]
    d_slot = (d_slot - (kj == 0).to(dt)[None, ..., None, None] * eye) * mask[None, :, :, None, None]
    d_beta = torch.einsum("brsxy,rsyn->brxn", d_slot, model.j_shapedirs[kj])
    d_beta[:, NUM_JOINTS:] += skin_rot @ model.tip_shapedirs
    return KeypointJacobians(points, d_pose, _scatter(d_slot, sl.flat, n), d_beta[:, order])


def _scatter(vals: torch.Tensor, flat: np.ndarray, n: int) -> torch.Tensor:
    """Per-slot blocks vals (B, 21, S, a, b) into a (B, 21, a, 16, b) table at the slots' joints (``_Slots.flat``
    cells; padding adds zeros), written in place of the final layout (no copy of the big table)."""
    a = vals.shape[3]
    cell = torch.as_tensor(flat, device=vals.device).view(NUM_KEYPOINTS, 1, -1)  # (21, 1, S): row * 16 + joint
    row, joint = cell // NUM_JOINTS, cell % NUM_JOINTS
    rows = torch.arange(a, device=vals.device).view(1, a, 1)
    idx = ((row * a + rows) * NUM_JOINTS + joint).reshape(-1)  # (21, a, S) cells of a (21 * a * 16) table
    out = vals.new_zeros(n, NUM_KEYPOINTS * a * NUM_JOINTS, vals.shape[4])
    out.index_add_(1, idx, vals.permute(0, 1, 3, 2, 4).reshape(n, -1, vals.shape[4]))
    return out.view(n, NUM_KEYPOINTS, a, NUM_JOINTS, vals.shape[4])
