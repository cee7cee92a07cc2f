"""The per-frame state of the hand solver and its priors (torch, float64).

A state x (51,) is the global orientation (3, axis-angle, camera axes), the 15 finger rotations in their
joint frames (45) and the wrist as image-plane direction and log depth (3). The priors are the pose pull
towards the flat hand and the temporal smoothness terms, in the Gauss-Newton form of ``priors.py``.
"""

from __future__ import annotations

import torch

from ...core.keypoints import NUM_JOINTS
from ..handmodel.model import rodrigues
from . import priors

NUM_POSE = 3 * NUM_JOINTS  # 48
NUM_PARAMS = NUM_POSE + 3  # + wrist direction (2) and log depth (1)
EPS = 1e-6  # finite-difference step (radians / beta units / metres), float64


def wrist(x: torch.Tensor) -> torch.Tensor:
    """Wrist position (N, 3) in the camera frame, metres, of states x (N, 51)."""
    z = torch.exp(x[:, NUM_POSE + 2 :])
    return torch.cat([x[:, NUM_POSE : NUM_POSE + 2] * z, z], -1)


def wrist_jac(x: torch.Tensor) -> torch.Tensor:
    """d wrist / d (dx, dy, logz): (N, 3, 3)."""
    w = wrist(x)
    z = w[:, 2]
    zero = torch.zeros_like(z)
    rows = [torch.stack([z, zero, w[:, 0]], -1), torch.stack([zero, z, w[:, 1]], -1)]
    return torch.stack(rows + [torch.stack([zero, zero, z], -1)], -2)


def _root_matrix(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root rotation matrices of states x (T, 51), flattened (T, 9), and their finite-difference derivative
    with respect to the root's axis-angle (T, 9, 3): what the root's temporal prior measures."""
    rot = rodrigues(x[:, :3])
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    drot = torch.stack([(rodrigues(x[:, :3] + EPS * e) - rot) / EPS for e in eye], -1)
    return rot.reshape(-1, 9), drot.reshape(-1, 9, 3)


def prior_terms(x: torch.Tensor, pose_diag: torch.Tensor, w):
    """Priors of states x (T, 51) (pose_diag (51,) the pose prior, w the solver's Weights): per-frame cost
    (T,) (temporal terms counted in every frame they touch), gradient (T, 51), Hessian diagonal (T, 51), root
    block (T, 3, 3), wrist block (T, 3, 3), and the total (every term once). Pose prior towards the flat
    hand; smooth rotations (matrices for the root, joint-frame angles for the fingers, which stay far from
    the 2 pi wrap) and smooth wrist motion."""
    t = x.shape[0]
    cost = (pose_diag * x * x).sum(1)
    total = cost.sum()
    grad = pose_diag * x
    diag = pose_diag.expand(t, -1).clone()
    root_h = x.new_zeros(t, 3, 3)
    wrist_h = x.new_zeros(t, 3, 3)
    if t > 1:
        dt2 = w.dt_scale**2
        wv, wa = w.w_rot_velocity / dt2, w.w_rot_accel / dt2**2
        if wv > 0 or wa > 0:  # off by default: skipping them saves a fifth of a fit's prior evaluations
            rot, drot = _root_matrix(x)
            c, g, h, tot = priors.temporal_terms(rot[:, None], drot[:, None], wv, wa)
            cost, total, root_h = cost + c, total + tot, h[:, 0]
            grad[:, :3] += g[:, 0]
            ones = torch.ones(t, NUM_POSE - 3, 1, 1, dtype=x.dtype, device=x.device)
            c, g, h, tot = priors.temporal_terms(x[:, 3:NUM_POSE, None], ones, wv, wa)  # d x / d x = 1
            cost, total = cost + c, total + tot
            grad[:, 3:NUM_POSE] += g[..., 0]
            diag[:, 3:NUM_POSE] += h[..., 0, 0]
        s = w.hand_scale_m
        wv, wa = w.w_transl_velocity / dt2, w.w_transl_accel / dt2**2
        c, g, h, tot = priors.temporal_terms(wrist(x)[:, None] / s, wrist_jac(x)[:, None] / s, wv, wa)
        cost, total, wrist_h = cost + c, total + tot, h[:, 0].clone()
        grad[:, NUM_POSE:] += g[:, 0]
        # depth is what the image observes worst (it comes from the hand's size in pixels): smooth log depth
        # on its own, so depth flicker is held without lagging the well observed image-plane motion
        wv, wa = w.w_depth_velocity / dt2, w.w_depth_accel / dt2**2
        logz = x[:, None, NUM_POSE + 2 :]
        c, g, h, tot = priors.temporal_terms(logz, torch.ones_like(logz)[..., None], wv, wa)
        cost, total = cost + c, total + tot
        grad[:, NUM_POSE + 2] += g[:, 0, 0]
        wrist_h[:, 2, 2] += h[:, 0, 0, 0]
    return cost, grad, diag, root_h, wrist_h, total


def prior_cost(x: torch.Tensor, pose_diag: torch.Tensor, w) -> torch.Tensor:
    """Per-frame prior cost (T,) of states x, as ``prior_terms``."""
    t = x.shape[0]
    cost = (pose_diag * x * x).sum(1)
    if t > 1:
        dt2 = w.dt_scale**2
        wv, wa = w.w_rot_velocity / dt2, w.w_rot_accel / dt2**2
        if wv > 0 or wa > 0:
            rot = rodrigues(x[:, :3]).reshape(t, 9)
            cost = cost + priors.temporal_cost(torch.cat([rot, x[:, 3:NUM_POSE]], 1), wv, wa)
        wt = wrist(x) / w.hand_scale_m
        cost = cost + priors.temporal_cost(wt, w.w_transl_velocity / dt2, w.w_transl_accel / dt2**2)
        cost = cost + priors.temporal_cost(x[:, NUM_POSE + 2 :], w.w_depth_velocity / dt2, w.w_depth_accel / dt2**2)
    return cost


def _pair_weights(t: int, wv: float, wa: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton weights coupling frames (t, t+1) (T-1,) and (t, t+2) (T-2,) in ``priors.temporal_terms``:
    a velocity pair gives -wv; an acceleration triple (1, -2, 1) gives -2 wa to each adjacent pair and +wa to
    its ends."""
    k1 = x.new_full((max(t - 1, 0),), -wv)
    if t >= 3 and wa > 0:
        k1[:-1] -= 2 * wa  # triples centred on t+1 (frames t, t+1, t+2)
        k1[1:] -= 2 * wa  # triples centred on t (frames t-1, t, t+1)
    k2 = x.new_full((max(t - 2, 0),), wa if wa > 0 else 0.0)
    return k1, k2


def smoothness_bands(
    t: int, w_velocity: float, w_accel: float, dt_scale: float, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gauss-Newton matrix of the velocity / acceleration prior of one scalar track of T frames (weights per
    frame at 30 fps, rescaled by ``dt_scale``) as bands: diagonal (T,), H[t, t+1] (T-1,), H[t, t+2] (T-2,)."""
    dt2 = dt_scale**2
    wv, wa = w_velocity / dt2, w_accel / dt2**2
    diag = like.new_zeros(t)
    diag[1:] += wv
    diag[:-1] += wv
    if t >= 3 and wa > 0:
        diag[:-2] += wa
        diag[1:-1] += 4 * wa
        diag[2:] += wa
    k1, k2 = _pair_weights(t, wv, wa, like)
    return diag, k1, k2


def coupled_columns(w) -> torch.Tensor:
    """(51,) bool: the state's columns that the temporal priors of weights w couple between frames (what
    ``temporal_blocks`` can make nonzero)."""
    out = torch.zeros(NUM_PARAMS, dtype=torch.bool)
    if w.w_rot_velocity > 0 or w.w_rot_accel > 0:
        out[:NUM_POSE] = True
    if w.w_transl_velocity > 0 or w.w_transl_accel > 0:
        out[NUM_POSE:] = True
    if w.w_depth_velocity > 0 or w.w_depth_accel > 0:
        out[NUM_POSE + 2] = True
    return out


def temporal_blocks(x: torch.Tensor, w) -> tuple[torch.Tensor, torch.Tensor]:
    """Off-diagonal Gauss-Newton blocks of the temporal priors of states x (T, 51): H[t, t+1] (T-1, 51, 51)
    and H[t, t+2] (T-2, 51, 51). With ``prior_terms``' diagonal blocks they make the exact Gauss-Newton
    Hessian of the priors over the whole track (block pentadiagonal)."""
    t = x.shape[0]
    off1 = x.new_zeros(max(t - 1, 0), NUM_PARAMS, NUM_PARAMS)
    off2 = x.new_zeros(max(t - 2, 0), NUM_PARAMS, NUM_PARAMS)
    if t < 2:
        return off1, off2
    rotations = w.w_rot_velocity > 0 or w.w_rot_accel > 0
    drot = _root_matrix(x)[1] if rotations else None
    wj = wrist_jac(x) / w.hand_scale_m
    fingers = torch.arange(3, NUM_POSE, device=x.device)
    bands = [  # (H[t, t+1], H[t, t+2]) weights of the rotations (root and fingers), the wrist, its log depth
        smoothness_bands(t, wv, wa, w.dt_scale, x)[1:]
        for wv, wa in (
            (w.w_rot_velocity, w.w_rot_accel),
            (w.w_transl_velocity, w.w_transl_accel),
            (w.w_depth_velocity, w.w_depth_accel),
        )
    ]
    for k, off in ((1, off1), (2, off2)):
        if t <= k:
            continue
        k_rot, k_wr, k_z = (b[k - 1] for b in bands)
        if rotations:
            off[:, :3, :3] = k_rot[:, None, None] * torch.einsum("tdp,tdq->tpq", drot[:-k], drot[k:])
            off[:, fingers, fingers] = k_rot[:, None]
        off[:, NUM_POSE:, NUM_POSE:] = k_wr[:, None, None] * torch.einsum("tdp,tdq->tpq", wj[:-k], wj[k:])
        off[:, NUM_POSE + 2, NUM_POSE + 2] += k_z
    return off1, off2
