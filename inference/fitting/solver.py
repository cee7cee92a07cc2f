"""Batched Levenberg-Marquardt for one hand track (torch; all frames solved at once).

State per frame, 51 numbers ``x``: the global orientation (3, axis-angle, camera axes), the 15 finger
rotations in their joint frames (45: flexion, twist, abduction; the model's axis-angle is ``F_j @ local``)
and the wrist as image-plane direction and log depth (3): ``wrist = (dx z, dy z, z)``, ``z = exp(logz)``.
In these coordinates the joint limits are a box, kept as hard constraints (projected steps). The identity
(shape beta and the palm's rest-joint offsets, ``identity.py``) is shared by the track and updated together
with the poses in the joint steps.

Jacobians of the hand model's keypoints with respect to pose and identity are closed-form, from one
articulation of the frames (``handmodel.jacobians``: the same for the built-in model and MANO, CPU or CUDA);
finite differences needed a forward pass per probe (10 for the pose, 28 for the identity), most of a fit's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...core.keypoints import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS
from ..handmodel.jacobians import keypoint_jacobians
from ..handmodel.model import small_matmul
from . import priors, state
from .identity import IdentityLayout
from .linalg import solve_block_banded, spd_solve, wrap_rotvec
from .state import NUM_PARAMS, NUM_POSE

MAX_BETA = 3.0  # shape coefficients are population standard deviations: keep the hand plausible


@dataclass
class Weights:
    """Weights of the cost terms (dimensionless residuals; see FitOptions)."""

    w_2d: float
    w_3d: float
    scale_free_3d: bool
    sigma_2d: float
    sigma_3d: float
    w_pose: float
    w_twist: float
    w_shape: float
    w_rot_velocity: float
    w_rot_accel: float
    w_transl_velocity: float
    w_transl_accel: float
    w_depth_velocity: float
    w_depth_accel: float
    hand_scale_m: float
    w_polish_depth: float
    w_joint_offset: float
    max_joint_offset_m: float
    dt_scale: float


class HandSolver:
    """State and steps of one hand track. Tensors live on the model's device in float64.

    data: kp2d (T, 21, 2) px, conf (T, 21), world (T, 21, 3) m (centred, camera frame), valid (T,),
    inv_px (T,) and inv_m (T,) inverse hand sizes, k (3, 3). init: theta (T, 16, 3), wrist (T, 3) as
    (dx, dy, logz), beta (10,).
    """

    def __init__(self, model, data: dict[str, torch.Tensor], init: dict[str, torch.Tensor], weights: Weights):
        self.model, self.d, self.w = model, data, weights
        theta = init["theta"]
        dev, dt = theta.device, theta.dtype
        t = theta.shape[0]
        self.frames = torch.as_tensor(model.joint_frames, dtype=dt, device=dev)[1:]  # (15, 3, 3)
        self.pose_frames = torch.cat([torch.eye(3, dtype=dt, device=dev)[None], self.frames])  # root: camera axes
        limits = torch.as_tensor(model.joint_limits, dtype=dt, device=dev)[1:]
        inf = torch.full((3,), float("inf"), dtype=dt, device=dev)
        self.lower = torch.cat([-inf, limits[..., 0].reshape(-1), -inf])
        self.upper = torch.cat([inf, limits[..., 1].reshape(-1), inf])
        local = small_matmul(theta[:, 1:, None], self.frames)[:, :, 0]  # F_j^T theta_j
        self.x = torch.cat([theta[:, 0], local.reshape(t, -1), init["wrist"]], -1)
        self.x = torch.maximum(torch.minimum(self.x, self.upper), self.lower)
        self.layout = IdentityLayout(MAX_BETA, weights.max_joint_offset_m)
        self.ident = self.layout.initial(init["beta"])  # (S,) beta and rest-joint offsets
        self.polish_ref = None  # (T, 21, 3) centred keypoints the polish stage holds (None: 3D landmark term)
        self.polish_mask = None  # (T, 21, 3) which of their coordinates it holds
        self.polish_weight = None  # (T, 21) and with what weight
        self.lam = torch.full((t,), 1e-3, dtype=dt, device=dev)
        self.lam_ident = 1e-3
        self.lam_track = 1e-2  # damping of the whole-track steps (their own: they move smooth modes further)
        # one shape prior per seen frame: the landmarks' proportions are biased the same way in every frame, so
        # more frames must not let the shape drift further from plausible hands
        shape_weight = weights.w_shape * max(float(data["valid"].sum()), 1.0) ** 0.5
        self.ident_prior = self.layout.prior_diag(shape_weight, weights.w_joint_offset, weights.hand_scale_m, theta)
        self.ident_bound = self.layout.bound(theta)
        # pose prior: diagonal in joint-frame coordinates
        self.pose_diag = torch.zeros(NUM_PARAMS, dtype=dt, device=dev)
        self.pose_diag[3:NUM_POSE] = (
            torch.tensor([weights.w_pose, weights.w_pose + weights.w_twist, weights.w_pose])
            .to(self.pose_diag)
            .repeat(NUM_JOINTS - 1)
        )

    # -- state -------------------------------------------------------------------------------------
    def theta_of(self, x: torch.Tensor) -> torch.Tensor:
        """Model axis-angle (N, 16, 3) of states x (N, 51)."""
        local = x[:, 3:NUM_POSE].reshape(-1, NUM_JOINTS - 1, 3)
        return torch.cat([x[:, None, :3], small_matmul(self.frames, local[..., None])[..., 0]], 1)

    @property
    def theta(self) -> torch.Tensor:
        return self.theta_of(self.x)

    wrist = staticmethod(state.wrist)
    _wrist_jac = staticmethod(state.wrist_jac)

    # -- model evaluation --------------------------------------------------------------------------
    @property
    def beta(self) -> torch.Tensor:
        return self.ident[:NUM_BETAS]

    def ident_rows(self, n: int) -> torch.Tensor:
        return self.ident.expand(n, -1)

    def points(self, theta: torch.Tensor, ident: torch.Tensor) -> torch.Tensor:
        """Keypoints relative to the wrist (N, 21, 3) in camera axes for poses (N, 16, 3), identities (N, S)."""
        zero = torch.zeros(theta.shape[0], 3, dtype=theta.dtype, device=theta.device)
        beta, offsets = self.layout.split(ident)
        out = self.model(theta, beta, zero, with_vertices=False, joint_offsets=offsets)
        # with zero translation the posed wrist sits at the rest wrist J0 (beta and offset), the pivot of the root
        return out.keypoints - out.joints[:, :1]

    def jacobians(self, theta: torch.Tensor, with_ident: bool = False):
        """Wrist-relative keypoints P (T, 21, 3), dP / d x[:48] (T, 21, 3, 48) and, with_ident, dP / d identity
        (T, 21, 3, S) (else None) at poses theta (T, 16, 3), in closed form (``handmodel.jacobians``)."""
        t = theta.shape[0]
        beta, offsets = self.layout.split(self.ident_rows(t))
        # the state's pose coordinates: the root's axis-angle, the fingers' in their joint frames
        jac = keypoint_jacobians(self.model, theta, beta, offsets, frames=self.pose_frames, with_rest=with_ident)
        jp = jac.d_pose
        if not with_ident:
            return jac.points, jp, None
        jb = jac.d_beta
        if self.layout.num_offsets:
            at = jac.d_rest[..., list(self.layout.joints), :]
            jb = torch.cat([jb, at.reshape(t, NUM_KEYPOINTS, 3, -1)], -1)
        return jac.points, jp, jb

    # -- costs -------------------------------------------------------------------------------------
    def data_residuals(self, p: torch.Tensor, wrist: torch.Tensor, idx=slice(None)):
        """Dimensionless 2D residuals (N, 21, 2), projection Jacobian (N, 21, 2, 3) and 3D residuals (N, 21, 3)
        of frames ``idx`` with wrist-relative points p and wrists of those frames."""
        k = self.d["k"]
        x = p + wrist[:, None]
        z = torch.clamp(x[..., 2], min=1e-4)
        fx, fy = k[0, 0], k[1, 1]
        uv = torch.stack([fx * x[..., 0] / z + k[0, 2], fy * x[..., 1] / z + k[1, 2]], -1)
        s = self.d["inv_px"][idx][:, None, None]
        r2 = (uv - self.d["kp2d"][idx]) * s
        zero = torch.zeros_like(z)
        du = torch.stack([fx / z, zero, -fx * x[..., 0] / z**2], -1)
        dv = torch.stack([zero, fy / z, -fy * x[..., 1] / z**2], -1)
        dproj = torch.stack([du, dv], -2) * s[..., None]
        pc = p - p.mean(1, keepdim=True)
        world = self.d["world"][idx]
        if self.w.scale_free_3d:
            # MediaPipe's world landmarks have a canonical hand size, not a metric one: compare shapes at the
            # model's size (the scale is held in the Jacobian: it only follows the hand's size)
            size = (pc * pc).sum((1, 2)) / (world * world).sum((1, 2)).clamp(min=1e-12)
            world = world * size.sqrt()[:, None, None]
        if self.polish_ref is not None:
            # polish stage: the keypoints' depths about their centroid are held to the solution before the polish,
            # their image-plane placement is left to the 2D keypoints (held too where a keypoint has none)
            r3 = (pc - self.polish_ref[idx]) * self.polish_mask[idx] * self.d["inv_m"][idx][:, None, None]
            return r2, dproj, r3
        r3 = (pc - world) * self.d["inv_m"][idx][:, None, None]
        return r2, dproj, r3

    def start_polish(self) -> None:
        """Replace the 3D landmark term by a prior holding every keypoint's depth about the hand's centroid at
        the current solution, weight ``w_polish_depth`` (the 2D keypoints then place the hand in the image
        plane). Keypoints without 2D evidence keep their whole position with the 3D term's weight: nothing else
        in the polish sees them (a missing fingertip would otherwise fold to the pose prior's flat hand)."""
        t = self.x.shape[0]
        p = self.points(self.theta, self.ident_rows(t))
        self.polish_ref = (p - p.mean(1, keepdim=True)).clone()
        unseen = self.d["conf"] <= 0
        mask = torch.ones_like(p)
        mask[..., :2] = unseen.to(p.dtype)[..., None]
        self.polish_mask = mask
        self.polish_weight = torch.where(unseen, self.w.w_3d, self.w.w_polish_depth).to(p.dtype)

    def data_weights(self, r2: torch.Tensor, r3: torch.Tensor, idx=slice(None)):
        """Cost (N,) and IRLS weights (N, 21) of the robust 2D and 3D terms of frames ``idx``."""
        w = self.w
        sq2, sq3 = (r2 * r2).sum(-1), (r3 * r3).sum(-1)
        c2 = self.d["conf"][idx] * (w.w_2d / NUM_KEYPOINTS)
        w3 = w.w_3d if self.polish_ref is None else self.polish_weight[idx]
        c3 = self.d["valid"][idx][:, None] * (w3 / NUM_KEYPOINTS)
        cost = (c2 * priors.geman_mcclure(sq2, w.sigma_2d)).sum(1) + (c3 * priors.geman_mcclure(sq3, w.sigma_3d)).sum(1)
        return (
            cost,
            c2 * priors.geman_mcclure_weight(sq2, w.sigma_2d),
            c3 * priors.geman_mcclure_weight(sq3, w.sigma_3d),
        )

    def prior_terms(self, x: torch.Tensor):
        """``state.prior_terms`` of states x (T, 51) with this track's weights."""
        return state.prior_terms(x, self.pose_diag, self.w)

    def prior_cost(self, x: torch.Tensor) -> torch.Tensor:
        return state.prior_cost(x, self.pose_diag, self.w)

    def frame_cost(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Cost of frames ``idx`` (data + priors, temporal terms with the neighbours in x)."""
        p = self.points(self.theta_of(x[idx]), self.ident_rows(len(idx)))
        r2, _, r3 = self.data_residuals(p, self.wrist(x[idx]), idx)
        return self.data_weights(r2, r3, idx)[0] + self.prior_cost(x)[idx]

    # -- steps -------------------------------------------------------------------------------------
    def _data_system(self, x: torch.Tensor, active: torch.Tensor, with_ident: bool = False):
        """Linearised data terms of all frames at states x, for the active columns (bool (51,)).

        Returns per-frame cost (T,), Hessian (T, n, n), gradient (T, n), and with_ident the coupling
        (T, n, S), identity Hessian (S, S) and gradient (S,) summed over frames (else None).

        The gradient is sum_i J_i^T e_i over keypoints i, with J_i the keypoint's 3D Jacobian and e_i its 2D
        and (centred) 3D residual pulls, in double precision. The Gauss-Newton matrix only shapes the step:
        it is built from the square-root-weighted rows in single precision (double with the identity, whose
        Schur complement subtracts large terms), by blocks, without materialising a (T, 105, 51) Jacobian."""
        t = x.shape[0]
        cols = torch.nonzero(active)[:, 0]
        p, jp, jb = self.jacobians(self.theta_of(x), with_ident)
        r2, dproj, r3 = self.data_residuals(p, self.wrist(x))
        data_cost, w2, w3 = self.data_weights(r2, r3)
        wj = self._wrist_jac(x)  # (T, 3, 3)
        # 3D rows: (P_i - mean P) scaled by 1 / hand size (and the polish's mask); a term of weight 0 (the
        # polish without its depth prior) gets no rows
        with_3d = with_ident or bool(w3.any())
        scale3 = self.d["inv_m"][:, None, None].expand(t, NUM_KEYPOINTS, 3)
        if self.polish_ref is not None:
            scale3 = scale3 * self.polish_mask
        e2 = (dproj * (w2[..., None] * r2)[..., None]).sum(-2)  # (T, 21, 3): dproj^T W r of the 2D term
        c3 = w3[..., None] * scale3 * r3
        e = e2 + (c3 - c3.mean(1, keepdim=True))  # the centring moves to the residual side
        grad_pose = (e.reshape(t, 1, -1) @ jp.reshape(t, -1, NUM_POSE))[:, 0]
        grad = torch.cat([grad_pose, (e2.sum(1)[:, None] @ wj)[:, 0]], -1)
        dt = x.dtype if with_ident else torch.float32
        s2 = (w2.sqrt()[..., None, None] * dproj).to(dt)  # (T, 21, 2, 3)
        jpd = jp.to(dt)
        a2 = small_matmul(s2, jpd).reshape(t, -1, NUM_POSE)
        a2w = small_matmul(s2, wj.to(dt)[:, None]).reshape(t, -1, 3)
        a3 = None
        if with_3d:
            s3 = (w3.sqrt()[..., None] * scale3).to(dt)[..., None]
            a3 = (s3 * (jpd - jpd.mean(1, keepdim=True))).reshape(t, -1, NUM_POSE)
        h_pp = _gram(a2, a2, a3, a3)
        h_pw = a2.float().transpose(1, 2) @ a2w.float()
        h_ww = a2w.float().transpose(1, 2) @ a2w.float()
        hess = torch.cat([torch.cat([h_pp, h_pw], 2), torch.cat([h_pw.transpose(1, 2), h_ww], 2)], 1).to(x.dtype)
        if len(cols) < NUM_PARAMS:
            hess, grad = hess[:, cols][:, :, cols], grad[:, cols]
        if not with_ident:
            return data_cost, hess, grad, None, None, None
        b2 = small_matmul(s2, jb).reshape(t, 2 * NUM_KEYPOINTS, -1)
        b3 = (s3 * (jb - jb.mean(1, keepdim=True))).reshape(t, 3 * NUM_KEYPOINTS, -1)
        coupling = torch.cat([a2.transpose(1, 2) @ b2 + a3.transpose(1, 2) @ b3, a2w.transpose(1, 2) @ b2], 1)
        hess_b = (b2.transpose(1, 2) @ b2 + b3.transpose(1, 2) @ b3).sum(0)
        grad_b = (e.reshape(t, 1, -1) @ jb.reshape(t, 3 * NUM_KEYPOINTS, -1)).sum((0, 1))
        return data_cost, hess, grad, coupling[:, cols], hess_b, grad_b

    def _frame_system(self, x, cols, data_hess, data_grad, lam, idx=None):
        """Data + prior Gauss-Newton system of frames ``idx`` (all when None; data_hess / data_grad / lam of
        all frames), limits held, damped by lam (None: undamped, for ``_damped``): (hess, grad, free mask,
        prior cost), each of frames ``idx``."""
        pc, pg, pdiag, root_h, wrist_h, _ = self.prior_terms(x)
        if idx is not None:
            x, lam, data_hess, data_grad = x[idx], lam[idx], data_hess[idx], data_grad[idx]
            pc, pg, pdiag, root_h, wrist_h = pc[idx], pg[idx], pdiag[idx], root_h[idx], wrist_h[idx]
        n = len(cols)
        hess = data_hess.clone()
        if n == NUM_PARAMS:
            hess.diagonal(dim1=1, dim2=2).add_(pdiag)
            hess[:, :3, :3] += root_h
            hess[:, NUM_POSE:, NUM_POSE:] += wrist_h
        else:  # a subset of the columns (stage 1): assemble the prior blocks, then pick
            full = torch.diag_embed(pdiag)
            full[:, :3, :3] += root_h
            full[:, NUM_POSE:, NUM_POSE:] += wrist_h
            hess += full[:, cols][:, :, cols]
        grad = data_grad + pg[:, cols]
        xc = x[:, cols]
        held = ((xc <= self.lower[cols] + 1e-9) & (grad > 0)) | ((xc >= self.upper[cols] - 1e-9) & (grad < 0))
        free = (~held).to(x.dtype)
        grad = grad * free
        if bool(held.any()):
            hess.mul_(free[:, :, None]).mul_(free[:, None, :])
            hess.diagonal(dim1=1, dim2=2).add_(1 - free)
        return (hess if lam is None else self._damped(hess, lam)), grad, free, pc

    @staticmethod
    def _damped(hess: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Levenberg-Marquardt damping (T,) of Hessians (T, n, n), on a copy: retries of a step only change it."""
        hess = hess.clone()
        diag = hess.diagonal(dim1=1, dim2=2)
        diag.add_(lam[:, None] * (diag + 1e-6 * diag.mean(1, keepdim=True)))
        return hess

    def _apply(self, x: torch.Tensor, cols: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """States x (N, 51) moved by step (N, n) in the columns cols, clipped into the limits."""
        x = x.clone()
        x[:, cols] = torch.maximum(torch.minimum(x[:, cols] + step, self.upper[cols]), self.lower[cols])
        x[:, :3] = wrap_rotvec(x[:, :3])
        return x

    def joint_step(self) -> None:
        """One damped Gauss-Newton step of all poses and the identity together (Schur complement on it, as in
        bundle adjustment): shape and pose are strongly coupled (bone lengths vs. joint angles), so steps that
        move only one of them at a time crawl. Temporal terms are linearised with the neighbours held (all
        frames at once); the step is kept only if the track's total cost goes down, else damped harder."""
        x = self.x
        active = torch.ones(NUM_PARAMS, dtype=torch.bool, device=x.device)
        cols = torch.nonzero(active)[:, 0]
        _, data_hess, data_grad, coupling, hess_b, grad_b = self._data_system(x, active, with_ident=True)
        hess_b = hess_b + torch.diag(self.ident_prior)
        grad_b = grad_b + self.ident_prior * self.ident
        before = self.total_cost()
        undamped, grad, free, _ = self._frame_system(x, cols, data_hess, data_grad, None)
        cpl = coupling * free[..., None]
        for _ in range(4):
            hess = self._damped(undamped, self.lam)
            chol, info = torch.linalg.cholesky_ex(hess)
            if not bool((info == 0).all()):
                self.lam = self.lam * 5
                continue
            sol = torch.cholesky_solve(torch.cat([grad[..., None], cpl], -1), chol)  # H^-1 [g | C]
            schur = hess_b - torch.einsum("tpi,tpj->ij", cpl, sol[..., 1:])
            schur_g = grad_b - torch.einsum("tpi,tp->i", cpl, sol[..., 0])
            schur = schur + self.lam_ident * torch.diag(torch.diagonal(schur) + 1e-9)
            d_ident = -torch.linalg.solve(schur, schur_g)
            step = -(sol[..., 0] + (sol[..., 1:] @ d_ident[:, None])[..., 0])
            old_x, old_ident = self.x, self.ident
            self.x = self._apply(x, cols, step)
            self.ident = torch.maximum(torch.minimum(self.ident + d_ident, self.ident_bound), -self.ident_bound)
            if self.total_cost() < before:
                self.lam = (self.lam / 3).clamp(min=1e-7)
                self.lam_ident = max(self.lam_ident / 3, 1e-7)
                return
            self.x, self.ident = old_x, old_ident
            self.lam = (self.lam * 5).clamp(max=1e7)
            self.lam_ident = min(self.lam_ident * 5, 1e7)

    def track_step(self, before: float | None = None) -> float:
        """One damped Gauss-Newton step of every frame's pose and wrist, solved over the whole track at once;
        returns the track's total cost after it (pass it back as ``before`` to save evaluating it again).

        The temporal priors enter with their exact coupling between frames (block pentadiagonal Hessian,
        ``state.temporal_blocks``, banded Cholesky), where ``pose_step`` holds each frame's neighbours: with
        strong temporal priors a smooth track can only move as a whole, which frame-by-frame steps do slowly.
        Limits are held as in ``pose_step``. Kept only if the track's total cost goes down, else damped harder."""
        x = self.x
        active = torch.ones(NUM_PARAMS, dtype=torch.bool, device=x.device)
        if x.shape[0] < 2:
            self.pose_step(active)
            return self.total_cost()
        cols = torch.nonzero(active)[:, 0]
        _, data_hess, data_grad, _, _, _ = self._data_system(x, active)
        off1, off2 = state.temporal_blocks(x, self.w)
        if before is None:
            before = self.total_cost()
        undamped, grad, free, _ = self._frame_system(x, cols, data_hess, data_grad, None)
        tied = state.coupled_columns(self.w).to(x.device)
        ft = free[:, tied]  # only the coupled columns' blocks enter the banded solve
        coupled1 = off1[:, tied][:, :, tied] * ft[:-1, :, None] * ft[1:, None, :]
        coupled2 = off2[:, tied][:, :, tied] * ft[:-2, :, None] * ft[2:, None, :]
        for _ in range(4):
            hess = self._damped(undamped, torch.full_like(self.lam, self.lam_track))
            step = solve_block_banded(hess, coupled1, coupled2, -grad, tied)
            if step is not None:
                old = self.x
                self.x = self._apply(x, cols, step * free)
                after = self.total_cost()
                if after < before:
                    self.lam_track = max(self.lam_track / 3, 1e-7)
                    return after
                self.x = old
            self.lam_track = min(self.lam_track * 5, 1e7)
        return before

    def pose_step(self, active: torch.Tensor) -> None:
        """One damped Gauss-Newton step of every frame's active parameters (bool mask (51,)).

        Joint limits are a box in x: components at a limit whose gradient points outward are held, the rest
        solved, and the result clipped into the box (projected Newton; the limits are hard constraints).
        Frames are updated in three interleaved groups (t mod 3) with the others held: temporal terms span at
        most three consecutive frames, so within a group every frame's cost is independent of the others and
        a step is kept exactly where it lowers that frame's cost (monotone block coordinate descent).
        """
        x = self.x
        t = x.shape[0]
        cols = torch.nonzero(active)[:, 0]
        data_cost, data_hess, data_grad, _, _, _ = self._data_system(x, active)
        frame_ids = torch.arange(t, device=x.device)
        for group in range(min(3, t)):
            sel = frame_ids[frame_ids % 3 == group]
            lam = self.lam[sel]
            hess, grad, _, pc = self._frame_system(self.x, cols, data_hess, data_grad, self.lam, sel)
            step = -spd_solve(hess, grad)
            x_new = self.x.clone()
            x_new[sel] = self._apply(self.x[sel], cols, step)
            better = self.frame_cost(x_new, sel) < data_cost[sel] + pc
            self.lam[sel] = torch.where(better, lam / 3, lam * 5).clamp(1e-7, 1e7)
            keep = sel[better]
            self.x[keep] = x_new[keep]

    @property
    def has_depth_prior(self) -> bool:
        """Whether the log-depth temporal prior is on (and the track long enough for it)."""
        return self.x.shape[0] >= 3 and (self.w.w_depth_velocity > 0 or self.w.w_depth_accel > 0)

    def depth_step(self) -> None:
        """One Gauss-Newton step of all frames in which the log-depth smoothness is solved exactly over the clip.

        The image fixes depth only through the hand's size in pixels, so depth is the noisiest coordinate and
        the one that most needs its temporal prior; frame-by-frame steps (neighbours held) barely move a
        strongly smoothed depth track. Here every frame's other parameters are eliminated (the per-frame
        systems without the depth prior, Schur complement), leaving a banded system in the T log depths with the
        depth prior exact; the other parameters then follow. Kept only if the track's total cost goes down."""
        w = self.w
        x = self.x
        t = x.shape[0]
        if not self.has_depth_prior:
            return
        active = torch.ones(NUM_PARAMS, dtype=torch.bool, device=x.device)
        cols = torch.nonzero(active)[:, 0]
        _, data_hess, data_grad, _, _, _ = self._data_system(x, active)
        saved = (w.w_depth_velocity, w.w_depth_accel)
        w.w_depth_velocity = w.w_depth_accel = 0.0
        try:
            hess, grad, free, _ = self._frame_system(x, cols, data_hess, data_grad, self.lam)
        finally:
            w.w_depth_velocity, w.w_depth_accel = saved
        zi = NUM_POSE + 2
        rhs = torch.cat([grad[..., None], torch.zeros_like(grad)[..., None]], -1)
        rhs[:, zi, 1] = 1.0
        sol = spd_solve(hess, rhs)  # H^-1 [g | e_z] per frame
        step0, col_z = -sol[..., 0], sol[..., 1]
        prec = 1.0 / col_z[:, zi].clamp(min=1e-30)  # marginal precision of log depth per frame
        z0 = x[:, zi] + step0[:, zi]  # per-frame optimum of log depth with the others free
        diag, k1, k2 = state.smoothness_bands(t, w.w_depth_velocity, w.w_depth_accel, w.dt_scale, x)
        # the same halved Gauss-Newton form as priors.py, pentadiagonal: solved banded (linear in T)
        z = solve_block_banded((prec + diag)[:, None, None], k1[:, None, None], k2[:, None, None], (prec * z0)[:, None])
        if z is None:
            return
        z = z[:, 0]
        step = step0 + col_z * ((z - z0) * prec)[:, None]
        step = step * free
        before = self.total_cost()
        old = self.x
        self.x = self._apply(x, cols, step)
        if self.total_cost() >= before:
            self.x = old

    def total_cost(self) -> float:
        """Objective of the track: data terms of all frames, priors (each term once) and the shape prior."""
        t = self.x.shape[0]
        p = self.points(self.theta, self.ident_rows(t))
        r2, _, r3 = self.data_residuals(p, self.wrist(self.x))
        data = self.data_weights(r2, r3)[0].sum()
        return float(data + self.prior_terms(self.x)[5]) + float((self.ident_prior * self.ident) @ self.ident)


def _gram(a2: torch.Tensor, b2: torch.Tensor, a3: torch.Tensor | None, b3: torch.Tensor | None) -> torch.Tensor:
    """a2^T b2 (+ a3^T b3) in single precision: the rows of the 2D (and 3D) terms."""
    out = a2.float().transpose(1, 2) @ b2.float()
    if a3 is not None:
        out = out + a3.float().transpose(1, 2) @ b3.float()
    return out
