"""Differentiable torch hand model (MANO semantics) built from ``core.handmodel.HandModelData``.

``HandModel.forward(theta, beta, transl, with_vertices)`` poses the hand exactly as
``core.handmodel.forward`` does (tested to agree within 1e-6 m). The
``with_vertices=False`` path only runs the 16-joint kinematic chain (three batched
matrix products, one per tree level) and skins the 5 fingertip vertices, so a
fitter can call it thousands of times on hundreds of frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...core.handmodel import HandModelData, HandModelError, load_builtin
from ...core.keypoints import MANO_TO_KEYPOINTS, NUM_JOINTS
from ...core.lbs import depth_levels


@dataclass
class HandOutput:
    """Torch forward result, metres, in the frame of ``transl`` (the camera frame in a fit).

    Attributes:
        vertices: (B, V, 3) posed mesh, or None when ``with_vertices=False``.
        joints: (B, 16, 3) posed joints, MANO order.
        keypoints: (B, 21, 3) joints + fingertip vertices, HandKeypoint order.
        rest_joints: (B, 16, 3) rest joints J(beta) (+ joint_offsets), template axes (no pose, no transl).
    """

    vertices: torch.Tensor | None
    joints: torch.Tensor
    keypoints: torch.Tensor
    rest_joints: torch.Tensor


@dataclass
class Articulation:
    """The posed kinematic chain of a batch of B hands, before translation (metres, template axes).

    Attributes:
        rot: (B, 16, 3, 3) each joint's rotation relative to its parent (rodrigues of theta).
        rot_g: (B, 16, 3, 3) global rotations; pos_g: (B, 16, 3) posed joints (the root at rest[:, 0]).
        rest: (B, 16, 3) rest joints J(beta) + joint offsets.
        tips_rest: (B, 5, 3) fingertip vertices before skinning (shape and pose correctives applied).
        beta: (B, 10) the shapes they were built from.
    """

    rot: torch.Tensor
    rot_g: torch.Tensor
    pos_g: torch.Tensor
    rest: torch.Tensor
    tips_rest: torch.Tensor
    beta: torch.Tensor


def small_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b (broadcast batches) for a small inner dimension, as a sum of broadcast products: torch's CPU
    kernels for batches of tiny matrix products are several times slower than this."""
    out = a[..., :, 0, None] * b[..., 0, None, :]
    for k in range(1, a.shape[-1]):
        out = out + a[..., :, k, None] * b[..., k, None, :]
    return out


def rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices; exact, with finite gradients at zero."""
    t2 = (rotvec * rotvec).sum(-1)
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2s)
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2s)
    # R = I + a K + b K^2 with K^2 = v v^T - |v|^2 I, entry by entry (batches of tiny matrix products are slow)
    x, y, z = rotvec.unbind(-1)
    bx, by, bz = b * x, b * y, b * z
    ax, ay, az = a * x, a * y, a * z
    xx, yy, zz = bx * x, by * y, bz * z
    xy, xz, yz = bx * y, bx * z, by * z
    rows = [1 - yy - zz, xy - az, xz + ay, xy + az, 1 - xx - zz, yz - ax, xz - ay, yz + ax, 1 - xx - yy]
    return torch.stack(rows, -1).reshape(rotvec.shape + (3,))


def owned(a, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``a`` as a tensor of ``dtype`` in torch's own memory (a tensor is only moved or cast).

    ``torch.as_tensor`` of a numpy array keeps numpy's memory, whose alignment changes from run to run, and
    MKL (torch's CPU BLAS) picks its kernels by alignment: the same fit in two processes then ended a
    rounding step apart in 1 run of 6 (by 0.83 um); with the copies, 1 in 38 (docs/farm.md). torch's own
    allocations are always aligned alike."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    return torch.tensor(np.asarray(a), dtype=dtype, device=device)


class HandModel(nn.Module):
    """Torch hand model. All geometry buffers follow ``model.to(device)``.

    Attributes:
        side, model_id: from the data ("right"/"left", "builtin-v1"/"mano").
        num_betas: number of shape coefficients (10).
        parents: (16,) long tensor, MANO_PARENTS.
        faces: (F, 3) long tensor.
        joint_frames: (16, 3, 3) local joint axes as columns (core.anatomy).
        joint_limits: (16, 3, 2) radians, [min, max] of the local rotation vector.
        tip_vertex_ids: (5,) long tensor, thumb..pinky.
        data: the numpy HandModelData it was built from.
    """

    def __init__(self, data: HandModelData, dtype: torch.dtype = torch.float32):
        super().__init__()
        data.validate()
        self.data = data
        self.side = data.side
        self.model_id = data.model_id
        self.num_betas = data.num_betas
        self.num_vertices = data.num_vertices

        def buf(name: str, arr: np.ndarray, as_dtype: torch.dtype = dtype) -> None:
            self.register_buffer(name, owned(np.ascontiguousarray(arr), as_dtype), persistent=False)

        ids = data.tip_vertex_ids
        buf("v_template", data.v_template)
        buf("shapedirs", data.shapedirs)
        buf("weights", data.weights)
        buf("j_template", data.j_template)
        buf("j_shapedirs", data.j_shapedirs)
        buf("tip_template", data.v_template[ids])
        buf("tip_shapedirs", data.shapedirs[ids])
        buf("tip_weights", data.weights[ids])
        buf("joint_frames", data.joint_frames)
        buf("joint_limits", data.joint_limits)
        buf("faces", data.faces, torch.long)
        buf("parents", data.parents, torch.long)
        buf("tip_vertex_ids", ids, torch.long)
        self.has_posedirs = data.posedirs is not None
        if self.has_posedirs:
            # (V, 3, 135) -> (135, V * 3), the layout of a (B, 135) @ (135, V * 3) product.
            buf("posedirs", data.posedirs.reshape(-1, data.posedirs.shape[2]).T)
            buf("tip_posedirs", data.posedirs[ids].reshape(-1, data.posedirs.shape[2]).T)
        # Kinematic tree levels: joints of a level share one batched matrix product.
        levels = depth_levels(data.parents)
        order = np.concatenate(levels)
        self._level_parent_pos = []
        pos_of = {int(j): i for i, j in enumerate(order)}
        for lv in levels[1:]:
            self._level_parent_pos.append(torch.as_tensor([pos_of[int(data.parents[j])] for j in lv]))
        self._unorder = torch.as_tensor(np.argsort(order))
        self._kp_index = torch.as_tensor(MANO_TO_KEYPOINTS)
        self._level_joints = [torch.as_tensor(lv) for lv in levels]
        self._level_parents = [torch.as_tensor(data.parents[lv]) for lv in levels[1:]]

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    def rest_joints(self, beta: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, 16, 3) rest joints J(beta) in metres, template axes."""
        return self.j_template + torch.einsum("jkb,nb->njk", self.j_shapedirs, beta)

    def _inputs(self, theta, beta, transl) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dev, dt = self.v_template.device, self.dtype
        theta = owned(theta, dt, dev)
        if theta.ndim != 3 or theta.shape[1:] != (NUM_JOINTS, 3):
            raise HandModelError(f"theta must have shape (B, 16, 3), got {tuple(theta.shape)}")
        n = theta.shape[0]
        beta = torch.zeros(n, self.num_betas, device=dev, dtype=dt) if beta is None else owned(beta, dt, dev)
        transl = torch.zeros(n, 3, device=dev, dtype=dt) if transl is None else owned(transl, dt, dev)
        if beta.ndim == 1:
            beta = beta.unsqueeze(0)
        if transl.ndim == 1:
            transl = transl.unsqueeze(0)
        if beta.shape[-1] != self.num_betas or beta.shape[0] not in (1, n):
            raise HandModelError(
                f"beta must have shape ({n}, {self.num_betas}) or ({self.num_betas},), got {tuple(beta.shape)}"
            )
        if transl.shape[-1] != 3 or transl.shape[0] not in (1, n):
            raise HandModelError(f"transl must have shape ({n}, 3) or (3,), got {tuple(transl.shape)}")
        return theta, beta.expand(n, -1), transl.expand(n, -1)

    def _kinematics(self, rot: torch.Tensor, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global rotations (B, 16, 3, 3) and posed joints (B, 16, 3) before translation."""
        rots = [rot[:, self._level_joints[0]]]
        poss = [rest[:, self._level_joints[0]]]
        flat_rot, flat_pos = rots[0], poss[0]
        for lv, par_pos, par in zip(self._level_joints[1:], self._level_parent_pos, self._level_parents, strict=True):
            r_par = flat_rot[:, par_pos]
            offset = rest[:, lv] - rest[:, par]
            rots.append(r_par @ rot[:, lv])
            poss.append(flat_pos[:, par_pos] + (r_par @ offset.unsqueeze(-1)).squeeze(-1))
            flat_rot = torch.cat(rots, dim=1)
            flat_pos = torch.cat(poss, dim=1)
        return flat_rot[:, self._unorder], flat_pos[:, self._unorder]

    @staticmethod
    def _skin(points, weights, rot_g, pos_g, rest) -> torch.Tensor:
        trans = pos_g - (rot_g @ rest.unsqueeze(-1)).squeeze(-1)
        rot_b = torch.einsum("vj,bjkl->bvkl", weights, rot_g)
        trans_b = torch.einsum("vj,bjk->bvk", weights, trans)
        return (rot_b @ points.unsqueeze(-1)).squeeze(-1) + trans_b

    def articulate(self, theta, beta=None, joint_offsets=None) -> Articulation:
        """The kinematic chain of ``forward`` without translation or skinning (arguments as there): what the
        analytic Jacobians (``jacobians.py``) differentiate."""
        theta, beta, _ = self._inputs(theta, beta, None)
        rest = self.rest_joints(beta)
        if joint_offsets is not None:
            rest = rest + owned(joint_offsets, rest.dtype, rest.device)
        rot = rodrigues(theta)
        rot_g, pos_g = self._kinematics(rot, rest)
        tips = self.tip_template + torch.einsum("vkb,nb->nvk", self.tip_shapedirs, beta)
        if self.has_posedirs:
            tips = tips + (self.pose_features(rot) @ self.tip_posedirs).reshape(theta.shape[0], -1, 3)
        return Articulation(rot, rot_g, pos_g, rest, tips, beta)

    @staticmethod
    def pose_features(rot: torch.Tensor) -> torch.Tensor:
        """MANO's pose-corrective features (B, 135): the 15 finger rotations minus the identity, flattened."""
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        return (rot[:, 1:] - eye).reshape(rot.shape[0], -1)

    def forward(self, theta, beta=None, transl=None, with_vertices: bool = True, joint_offsets=None) -> HandOutput:
        """Pose the hand.

        Args:
            theta: (B, 16, 3) axis-angle (radians), MANO order, flat-hand relative, template axes.
            beta: (B, 10) or (10,) shape coefficients (default zeros).
            transl: (B, 3) or (3,) translation added last (default zeros).
            with_vertices: False skips the mesh (joints and the 5 fingertip vertices only).
            joint_offsets: (B, 16, 3) or (16, 3) metres added to the rest joints J(beta) (a skeleton calibrated
                beyond beta, see ``inference.fitting.identity``); the mesh is skinned about the moved joints.
        """
        theta, beta, transl = self._inputs(theta, beta, transl)
        n = theta.shape[0]
        art = self.articulate(theta, beta, joint_offsets)
        rot_g, pos_g, rest = art.rot_g, art.pos_g, art.rest
        tips = self._skin(art.tips_rest, self.tip_weights, rot_g, pos_g, rest) + transl[:, None]
        joints = pos_g + transl[:, None]
        verts = None
        if with_vertices:
            verts = self.v_template + torch.einsum("vkb,nb->nvk", self.shapedirs, beta)
            if self.has_posedirs:
                verts = verts + (self.pose_features(art.rot) @ self.posedirs).reshape(n, -1, 3)
            verts = self._skin(verts, self.weights, rot_g, pos_g, rest) + transl[:, None]
        keypoints = torch.cat([joints, tips], dim=1)[:, self._kp_index.to(joints.device)]
        return HandOutput(vertices=verts, joints=joints, keypoints=keypoints, rest_joints=rest)

    def _apply(self, fn, recurse=True):
        # Index tensors that are plain attributes (not buffers) stay on the CPU; move them along.
        out = super()._apply(fn, recurse)
        dev = self.v_template.device
        self._level_joints = [t.to(dev) for t in self._level_joints]
        self._level_parent_pos = [t.to(dev) for t in self._level_parent_pos]
        self._level_parents = [t.to(dev) for t in self._level_parents]
        self._unorder = self._unorder.to(dev)
        self._kp_index = self._kp_index.to(dev)
        return out


def load_hand_model(
    kind: str = "builtin",
    side: str = "right",
    mano_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
) -> HandModel:
    """Build a HandModel.

    Args:
        kind: "builtin" (shipped with HandCap) or "mano" (needs the user's MANO files).
        side: "right" or "left".
        mano_dir: folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl (or folder/mano/...), for kind="mano".
        device: torch device of the buffers.
        cache_dir: where converted MANO arrays are cached (default ~/.cache/handcap).
        dtype: floating dtype of the buffers (float32 for fitting; float64 for exact comparisons).
    """
    if kind == "builtin":
        data = load_builtin(side)
    elif kind == "mano":
        from .mano import load_mano_data

        data = load_mano_data(mano_dir, side, cache_dir=cache_dir)
    else:
        raise HandModelError(f"unknown hand model kind {kind!r}; use 'builtin' or 'mano'")
    return HandModel(data, dtype=dtype).to(device)
