"""Focal length from the footage itself, for captures without a known camera (numpy only).

A hand of known *shape* seen in perspective fixes its distance in units of its own size: the nearer the
camera, the more its near keypoints are magnified against its far ones (the image of a scene scaled about the
camera centre is the same, so the metric size is not needed). The hand's size in pixels then gives the focal
length: ``f = size_px * distance / size``. The shape comes from the landmarker's 3D (world) landmarks, which
hold the keypoints' relative depths; their scale does not matter.

Per frame and hand, for every focal length of a grid (horizontal field of view 15 to 120 degrees, log
spaced), a rigid placement (rotation and translation of the 3D landmarks) is solved to the 2D keypoints by a
few Gauss-Newton steps; the cost of the clip is the sum over frames and hands, a parabola in log focal length
through the best grid point and its neighbours gives the estimate. The uncertainty is a block jackknife
over the frames (consecutive frames share their errors, so blocks of the clip are left out, not frames) and
never less than what the cost's curvature says. A weak prior (log-normal about a 60 degree field of view,
``PRIOR_SIGMA_LOG``) keeps a single photo, whose perspective says little, off the grid's ends.

The cue is weak: a hand 45 cm away spans +-4 cm in depth, about +-10 % magnification. With exact 3D shapes
(synthetic clips) a clip of 60 frames gives the focal length within 1 %; what limits it is the error of the
3D landmarks, and that error also biases it (noisy depths of the shape read as perspective: with 5 mm of it
the estimate came out some 10 % long at 45-75 degrees, up to 20 % short at 30). So the 3D landmarks are first
denoised over time: each frame's are averaged with their neighbours' (Gaussian, its width chosen from the
clip by cross-validation), each neighbour turned onto the frame first (Kabsch), since the hand turns faster
than its shape changes. A single photo gets no such help (see docs/fitting.md for the figures on real footage).

A photo may be a crop, its principal point off the centre; held at the centre that biases the focal length
(ge2019_dev crops, true 3D joints and 2D: median error 11 % at the centre, 0.2 % with the principal point
solved too, ``benchmarks/bench_two_hands.py --focal-floor``), so a photo's estimate solves it per view as
well, then drops it: from the landmarker's keypoints it absorbs their errors more than it finds the camera's.
Video frames are not crops: a clip keeps it at the centre (more unknowns would only add noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from . import ik

GRID_FOV_DEG = (15.0, 120.0)
GRID_SIZE = 29
MAX_FRAMES = 48  # per hand: evenly spaced frames of a long clip (the estimate is per clip, not per frame)
PRIOR_FOV_DEG = 60.0
PRIOR_SIGMA_LOG = 0.7  # in log focal length: a factor of 2 is one standard deviation
_STEPS = 6
SMOOTH_CHOICES = (0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # widths (Gaussian sigma, frames) of the 3D landmarks' denoising


@dataclass
class FocalEstimate:
    """A focal length estimated from hands in the footage.

    Attributes:
        focal_px: focal length in pixels (square pixels); sigma_px: its standard uncertainty, pixels.
        fov_deg / fov_sigma_deg: the same as a horizontal field of view and its uncertainty, degrees.
        frames: number of (frame, hand) views that entered the estimate.
        principal: (cx, cy) px where it was solved with the focal length (a photo), else None. A nuisance
            parameter: from the landmarker's keypoints it is no estimate of the camera's (ge2019_dev: a median
            149 px from the truth, the crop's centre 75 px), so captures keep the centre.
    """

    focal_px: float
    sigma_px: float
    fov_deg: float
    fov_sigma_deg: float
    frames: int
    principal: tuple[float, float] | None = None

    def to_json(self) -> dict:
        return {
            "focal_px": round(self.focal_px, 2),
            "sigma_px": round(self.sigma_px, 2),
            "fov_deg": round(self.fov_deg, 2),
            "fov_sigma_deg": round(self.fov_sigma_deg, 2),
            "views": self.frames,
        }


def fov_of(focal_px: float, width: float) -> float:
    return float(np.degrees(2 * np.arctan(0.5 * width / focal_px)))


def _rigid_costs(world, kp2d, conf, focal: np.ndarray, centre: np.ndarray, free_centre: bool = False):
    """Cost (N,) of each view n: squared 2D residuals, over the hand's RMS pixel size, of the 3D landmarks
    world (N, 21, 3) rigidly placed in front of a camera of focal length focal (N,) px and principal point
    centre (2,); kp2d (N, 21, 2) px, conf (N, 21). free_centre: the principal point is solved per view too
    (starting at centre). Returns the costs and the principal points (N, 2) they were solved with."""
    n = len(world)
    w = np.maximum(conf, 1e-6)
    c2d = (w[..., None] * kp2d).sum(1) / w.sum(1)[:, None]
    size_px = np.maximum(np.sqrt((w * ((kp2d - c2d[:, None]) ** 2).sum(-1)).sum(1) / w.sum(1)), 1.0)
    ray = np.stack([(c2d[:, 0] - centre[0]) / focal, (c2d[:, 1] - centre[1]) / focal, np.ones(n)], -1)
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    rot0 = ik.swing_rotation(np.broadcast_to(np.array([0.0, 0.0, 1.0]), ray.shape), ray)
    pts = np.einsum("nij,npj->npi", rot0, world - world.mean(1, keepdims=True))
    size_m = np.sqrt(((pts[..., :2] - pts[..., :2].mean(1, keepdims=True)) ** 2).sum(-1).mean(1))
    z0 = focal * np.maximum(size_m, 1e-6) / size_px
    x = np.concatenate([np.zeros((n, 3)), ray[:, :2] / ray[:, 2:], np.log(z0)[:, None]], 1)
    if free_centre:  # its offset in units of the hand's pixel size, so that all unknowns are of order 1
        x = np.concatenate([x, np.zeros((n, 2))], 1)
    scale = (np.sqrt(w) / size_px[:, None])[..., None]

    def residual(x):
        rot = Rotation.from_rotvec(x[:, :3]).as_matrix()
        z = np.exp(np.clip(x[:, 5], -6.0, 6.0))  # a diverging step must not overflow (it is then rejected)
        p = np.einsum("nij,npj->npi", rot, pts) + np.stack([x[:, 3] * z, x[:, 4] * z, z], -1)[:, None]
        uv = focal[:, None, None] * p[..., :2] / np.maximum(p[..., 2:], 1e-6) + centre
        if free_centre:
            uv = uv + x[:, None, 6:8] * size_px[:, None, None]
        return ((uv - kp2d) * scale).reshape(n, -1)

    r = residual(x)
    cost = (r * r).sum(1)
    lam = np.full(n, 1e-3)
    eye = np.eye(x.shape[1])
    for _ in range(_STEPS):
        jac = np.stack([(residual(x + 1e-6 * eye[i]) - r) / 1e-6 for i in range(len(eye))], -1)
        hess = jac.transpose(0, 2, 1) @ jac
        grad = (jac.transpose(0, 2, 1) @ r[..., None])[..., 0]
        hess = hess + lam[:, None, None] * (eye * (np.diagonal(hess, axis1=1, axis2=2)[:, :, None] + 1e-9))
        x_new = x - np.linalg.solve(hess, grad[..., None])[..., 0]
        r_new = residual(x_new)
        c_new = np.nan_to_num((r_new * r_new).sum(1), nan=np.inf)
        better = c_new < cost
        x[better], r[better], cost[better] = x_new[better], r_new[better], c_new[better]
        lam = np.where(better, lam / 3, lam * 5)
    solved = centre + x[:, 6:8] * size_px[:, None] if free_centre else np.broadcast_to(centre, (n, 2))
    return cost, solved


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) that best turn centred point sets src onto dst (..., P, 3)."""
    u, _, vt = np.linalg.svd(np.swapaxes(src, -1, -2) @ dst)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return np.swapaxes(u @ vt, -1, -2)


def _turned_neighbours(world: np.ndarray, ok: np.ndarray, reach: int):
    """For each offset 1 <= |o| <= reach: (o, frames a whose frame a + o is valid too, the landmarks of a + o
    centred and turned onto those of a (Kabsch)). world (T, 21, 3), ok (T,) bool."""
    t = len(world)
    cen = world - world.mean(1, keepdims=True)
    out = []
    for off in [o for o in range(-reach, reach + 1) if o]:
        a = np.arange(max(0, -off), min(t, t - off))
        a = a[ok[a] & ok[a + off]]
        if len(a):
            out.append((off, a, np.einsum("nij,npj->npi", _kabsch(cen[a + off], cen[a]), cen[a + off])))
    return cen, out


def _denoise_world(world: np.ndarray, ok: np.ndarray, sigma: float | None) -> np.ndarray:
    """The 3D landmarks (T, 21, 3) of each valid frame averaged with their valid neighbours' (Gaussian over
    time, sigma frames; 0: unchanged), each neighbour first turned onto the frame (the hand turns faster
    than its shape changes). Their error is what limits the estimate, and it biases it (errors in the
    shape's depths read as perspective), but averaging also blurs moving fingers: sigma None picks, from
    ``SMOOTH_CHOICES``, the width whose average of the neighbours alone predicts each frame best (the
    frame's own error is independent of theirs, so that is the width that denoises best)."""
    if sigma is not None and sigma <= 0:
        return world
    widths = SMOOTH_CHOICES if sigma is None else (sigma,)
    cen, turned = _turned_neighbours(world, ok, int(np.ceil(2.5 * max(widths))))
    best, best_err = None, np.inf
    for width in widths:
        acc, wsum = np.zeros_like(cen), np.zeros(len(cen))
        for off, a, pts in turned:
            wt = np.exp(-0.5 * (off / width) ** 2)
            acc[a] += wt * pts
            wsum[a] += wt
        has = ok & (wsum > 0)
        if not has.any():
            return world
        err = float(np.mean(np.linalg.norm(acc[has] / wsum[has, None, None] - cen[has], axis=-1) ** 2))
        if err < best_err:
            best_err = err
            best = np.where(has[:, None, None], (acc + cen) / (wsum + 1.0)[:, None, None], world)
    return best


def _refine(log_f: np.ndarray, total: np.ndarray) -> tuple[float, float]:
    """Minimum of a cost sampled on a log grid by a parabola through the best point and its neighbours;
    returns (log focal, curvature d2 cost / d log f^2) (curvature 0 at the grid's ends)."""
    i = int(np.argmin(total))
    if i == 0 or i == len(total) - 1:
        return float(log_f[i]), 0.0
    h = log_f[i + 1] - log_f[i]
    a, b, c = total[i - 1], total[i], total[i + 1]
    curv = (a - 2 * b + c) / h**2
    if curv <= 0:
        return float(log_f[i]), 0.0
    return float(log_f[i] - (c - a) / (2 * h * curv)), float(curv)


def estimate_focal(
    observations: Sequence,
    image_size: tuple[int, int],
    principal: tuple[float, float] | None = None,
    smooth_frames: float | None = None,
    solve_principal: bool | None = None,
) -> FocalEstimate | None:
    """Focal length of the camera from hand observations (``fit.HandObservations``, any number of tracks, the
    same camera); None when no frame has both 2D keypoints and 3D landmarks. principal: (cx, cy) px, default
    the image centre; smooth_frames: the 3D landmarks' denoising over time (Gaussian sigma, frames; 0 off; None: chosen
    from the clip, ``_denoise_world``); solve_principal: solve the principal point too (None: only for a photo,
    every observation one frame, without a given principal: a photo may be a crop; with exact keypoints that is
    well posed from one hand; with two hands each view solves its own and the median is kept)."""
    width, height = (float(v) for v in image_size)
    centre = np.array(principal if principal is not None else (width / 2, height / 2), np.float64)
    views = []
    for obs in observations:
        conf = np.clip(np.nan_to_num(np.asarray(obs.kp_conf, np.float64)), 0.0, 1.0)
        kp2d, world = np.asarray(obs.kp2d, np.float64), np.asarray(obs.world, np.float64)
        ok = np.asarray(obs.world_valid, bool) & np.isfinite(world).all((1, 2)) & np.isfinite(kp2d).all((1, 2))
        ok &= (conf > 0).sum(1) >= 12  # a partial hand says little about perspective
        world = _denoise_world(world, ok, smooth_frames)
        idx = np.flatnonzero(ok)
        if len(idx) > MAX_FRAMES:
            idx = idx[np.round(np.linspace(0, len(idx) - 1, MAX_FRAMES)).astype(int)]
        views += [(kp2d[i], world[i], conf[i], i) for i in idx]
    if not views:
        return None
    kp2d, world, conf, frame = (np.array(v) for v in zip(*views, strict=True))
    fov = np.geomspace(GRID_FOV_DEG[1], GRID_FOV_DEG[0], GRID_SIZE)
    log_f = np.log(0.5 * width / np.tan(np.radians(fov) / 2))
    n, g = len(kp2d), len(log_f)
    photo = max(len(obs.kp2d) for obs in observations) == 1
    free = (principal is None and photo) if solve_principal is None else bool(solve_principal)
    costs = _rigid_costs(
        np.repeat(world, g, 0), np.repeat(kp2d, g, 0), np.repeat(conf, g, 0), np.tile(np.exp(log_f), n), centre, free
    )[0].reshape(n, g)
    # costs in units of the residual noise (per coordinate, from the best fits), so that they are -2 log
    # likelihoods and the prior weighs against the evidence in the right measure
    dof = np.maximum(2 * (conf > 0).sum(1) - 6 - 2 * free, 1)
    noise = max(float(np.median(costs.min(1) / dof)), 1e-8)
    prior = ((log_f - np.log(0.5 * width / np.tan(np.radians(PRIOR_FOV_DEG) / 2))) / PRIOR_SIGMA_LOG) ** 2
    costs = costs / noise
    total = costs.sum(0) + prior
    est, curv = _refine(log_f, total)
    sigma_log = np.sqrt(2.0 / curv) if curv > 0 else PRIOR_SIGMA_LOG
    # block jackknife over the clip: frames close in time share their errors
    blocks = min(8, n)
    if blocks >= 3:
        order = np.argsort(frame, kind="stable")
        labels = np.empty(n, int)
        labels[order] = np.arange(n) * blocks // n
        loo = np.array([_refine(log_f, costs[labels != b].sum(0) + prior)[0] for b in range(blocks)], np.float64)
        jack = np.sqrt((blocks - 1) / blocks * ((loo - loo.mean()) ** 2).sum())
        sigma_log = max(sigma_log, float(jack))
    sigma_log = min(sigma_log, PRIOR_SIGMA_LOG)
    f = float(np.exp(est))
    solved = None
    if free:  # the principal point at the estimate (the median over views: it is one camera's)
        pts = _rigid_costs(world, kp2d, conf, np.full(n, f), centre, True)[1]
        solved = tuple(float(v) for v in np.median(pts, 0))
    fov_est = fov_of(f, width)
    fov_sigma = 0.5 * abs(fov_of(f * np.exp(-sigma_log), width) - fov_of(f * np.exp(sigma_log), width))
    return FocalEstimate(f, f * sigma_log, fov_est, fov_sigma, int(n), solved)
