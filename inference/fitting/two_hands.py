"""Two hands in one metric camera space: the joint stage after the per-hand fits (numpy + torch).

Each hand's distance comes from its size: the image fixes a hand only up to a scale about the camera centre
(scaling the whole hand about it leaves the image unchanged), so a hand fitted alone is as far away as its
shape's size makes it. Two hands fitted apart can thus end up at inconsistent depths (the larger-looking
hand further away). Following the two-hand reconstruction of Zhang et al. (ICCV 2021: a relative transform
between the hands, shape consistency between left and right, contact and collision terms), two things are
added when a clip has two hands:

* ``couple_sizes`` (between stage 3 and the polish; ``FitOptions.same_person``): both hands of one person
  have the same size. Each hand's rest skeleton is scaled, through beta, to the seen-frame-weighted
  geometric mean of the two sizes, and its depth track is scaled with it (about the camera centre: the image
  does not change); the polish then refits the poses. Only the size is coupled, not all of beta: each
  hand's proportions stay calibrated to its own landmarks, so the overlay keeps its accuracy.
* ``joint_stage`` (after the polish; ``FitOptions.two_hands``): per frame translation offsets of both hands,
  solved over the whole clip at once (6 unknowns per frame, banded Gauss-Newton with an acceleration prior),
  against: the hands' own fitted image (each keypoint's projection should stay where the fit put it,
  weighted as the 2D term times ``w_two_hand_image``: a depth change without a size change moves the image,
  and the overlay must hold); contact (keypoints of the two hands closer in the image than ``contact_px``
  times the hand's pixel size whose fitted depths differ by less than ``contact_depth_m`` are pulled to the
  same depth); and non-interpenetration (capsules on the 20 bones of each hand, radii from the hand model's
  mesh, must not overlap).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.keypoints import KEYPOINT_BONES, NUM_BETAS, NUM_JOINTS
from .state import NUM_POSE, smoothness_bands

BONES = np.array(KEYPOINT_BONES)  # (20, 2) parent, child keypoint
_TIP_BONE = ~np.isin(BONES[:, 1], BONES[:, 0])  # bones ending at a fingertip


@dataclass
class TwoHandInfo:
    """What the two-hand stages did (for the capture's info).

    size_scale: factor applied to each hand's size by the coupling (1 when off); contact_frames / contact_pairs:
    frames with contact and (frame, keypoint pair) contacts found; penetration_mm: mean and max over the frames
    of the deepest capsule overlap, before and after the joint stage; seconds per stage."""

    size_scale: list[float] = field(default_factory=list)
    contact_frames: int = 0
    contact_pairs: int = 0
    penetration_mm: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "size_scale": [round(float(a), 4) for a in self.size_scale],
            "contact_frames": int(self.contact_frames),
            "contact_pairs": int(self.contact_pairs),
            "penetration_mm": {k: round(float(v), 2) for k, v in self.penetration_mm.items()},
            "seconds": {k: round(float(v), 4) for k, v in self.seconds.items()},
        }


def _rest_points(solver) -> torch.Tensor:
    zero = torch.zeros(1, NUM_JOINTS, 3, dtype=solver.x.dtype, device=solver.x.device)
    return solver.points(zero, solver.ident[None])[0]  # (21, 3) wrist-relative, template axes


def _size(points: torch.Tensor) -> float:
    return float(((points - points.mean(0)) ** 2).sum(-1).mean().sqrt())


def couple_sizes(solvers) -> list[float]:
    """Give both tracks' skeletons the same size (the seen-frame-weighted geometric mean of their sizes), each
    through the least-squares change of its beta that scales its rest keypoints about the wrist (bounds
    held), and scale each track's depths by the size factor reached. Returns the factors."""
    sizes, seen, rest = [], [], []
    for s in solvers:
        rest.append(_rest_points(s))
        sizes.append(_size(rest[-1]))
        seen.append(max(float(s.d["valid"].sum()), 1.0))
    target = float(np.exp(np.average(np.log(sizes), weights=seen)))
    factors = []
    for s, p, size in zip(solvers, rest, sizes, strict=True):
        a = target / size
        zero = torch.zeros(1, NUM_JOINTS, 3, dtype=p.dtype, device=p.device)
        jac = s.jacobians(zero, with_ident=True)[2][0, ..., :NUM_BETAS].reshape(-1, NUM_BETAS)  # (63, 10)
        want = ((a - 1.0) * p).reshape(-1)
        lhs = jac.T @ jac + 1e-9 * torch.eye(NUM_BETAS, dtype=p.dtype, device=p.device)
        d_beta = torch.linalg.solve(lhs, jac.T @ want)
        ident = s.ident.clone()
        ident[:NUM_BETAS] = ident[:NUM_BETAS] + d_beta
        ident[NUM_BETAS:] = ident[NUM_BETAS:] * a  # the palm's calibration offsets scale with the hand
        s.ident = torch.maximum(torch.minimum(ident, s.ident_bound), -s.ident_bound)
        reached = _size(_rest_points(s)) / size
        s.x = s.x.clone()
        s.x[:, NUM_POSE + 2] += float(np.log(reached))  # the same image, nearer or further
        factors.append(reached)
    return factors


def capsule_radii(model, beta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(20,) radius of a capsule on each bone (``BONES``) of the hand of shape beta: the median distance to
    the bone of the mesh vertices nearest to it (rest pose), metres."""
    dt, dev = model.joint_frames.dtype, model.joint_frames.device
    zero = torch.zeros(1, NUM_JOINTS, 3, dtype=dt, device=dev)
    with torch.no_grad():
        out = model(
            zero,
            torch.as_tensor(beta, dtype=dt, device=dev)[None],
            zero[:, 0],
            with_vertices=True,
            joint_offsets=torch.as_tensor(offsets, dtype=dt, device=dev)[None],
        )
    verts = out.vertices[0].cpu().numpy().astype(np.float64)
    kp = out.keypoints[0].cpu().numpy().astype(np.float64)
    a, b = kp[BONES[:, 0]], kp[BONES[:, 1]]
    d = b - a
    s = np.clip(((verts[:, None] - a) * d).sum(-1) / (d * d).sum(-1), 0.0, 1.0)
    dist = np.linalg.norm(verts[:, None] - (a + s[..., None] * d), axis=-1)  # (V, 20)
    nearest = dist.argmin(1)
    radii = np.array([np.median(dist[nearest == i, i]) if (nearest == i).any() else 0.008 for i in range(len(BONES))])
    return np.clip(radii, 0.004, 0.012)  # the palm's bones lie in a plate about 25 mm thick


def segment_closest(p1, q1, p2, q2):
    """Closest points (c1, c2) of segments p1-q1 and p2-q2 (arrays (..., 3), broadcast)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e = (d1 * d1).sum(-1), (d2 * d2).sum(-1)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = a * e - b * b
    s = np.where(denom > 1e-12, np.clip((b * f - c * e) / np.where(denom > 1e-12, denom, 1.0), 0, 1), 0.0)
    t = (b * s + f) / np.maximum(e, 1e-12)
    inv_a = 1.0 / np.maximum(a, 1e-12)
    s = np.where(t < 0, np.clip(-c * inv_a, 0, 1), np.where(t > 1, np.clip((b - c) * inv_a, 0, 1), s))
    t = np.clip(t, 0, 1)
    return p1 + s[..., None] * d1, p2 + t[..., None] * d2


def _segments(kp, radii):
    """Capsule axes (T, 20, 3) x 2 of keypoints kp (T, 21, 3): the bones, the fingertips' ones ending their
    radius short of the tip keypoint (which lies on the skin: the capsule's round end is the fingertip)."""
    a, b = kp[:, BONES[:, 0]], kp[:, BONES[:, 1]]
    d = b - a
    length = np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    cut = np.where(_TIP_BONE[:, None], np.minimum(radii[:, None], 0.5 * length), 0.0)
    return a, b - d / length * cut


def capsule_overlaps(kp_a, kp_b, radii_a, radii_b):
    """Overlap depth (T, 20, 20) of every bone capsule of hand a with every one of hand b (metres, <= 0: apart)
    and the unit normals (T, 20, 20, 3) from b's closest point to a's. kp_*: (T, 21, 3) keypoints."""
    (pa, qa), (pb, qb) = _segments(kp_a, radii_a), _segments(kp_b, radii_b)
    c1, c2 = segment_closest(pa[:, :, None], qa[:, :, None], pb[:, None], qb[:, None])
    diff = c1 - c2
    dist = np.linalg.norm(diff, axis=-1)
    normal = diff / np.maximum(dist, 1e-9)[..., None]
    return radii_a[:, None] + radii_b[None, :] - dist, normal


def penetration_mm(kp_a, kp_b, radii_a, radii_b, frames=None) -> tuple[float, float]:
    """Mean and max over frames (all, or the bool mask ``frames``) of the deepest capsule overlap, mm."""
    over, _ = capsule_overlaps(kp_a, kp_b, radii_a, radii_b)
    deepest = np.maximum(over.reshape(len(kp_a), -1).max(1), 0.0) * 1000.0
    if frames is not None:
        deepest = deepest[frames]
    return (float(deepest.mean()), float(deepest.max())) if len(deepest) else (0.0, 0.0)


def _project(x, k):
    z = np.maximum(x[..., 2], 1e-4)
    uv = np.stack([k[0, 0] * x[..., 0] / z + k[0, 2], k[1, 1] * x[..., 1] / z + k[1, 2]], -1)
    zero = np.zeros_like(z)
    du = np.stack([k[0, 0] / z, zero, -k[0, 0] * x[..., 0] / z**2], -1)
    dv = np.stack([zero, k[1, 1] / z, -k[1, 1] * x[..., 1] / z**2], -1)
    return uv, np.stack([du, dv], -2)  # (..., 2), (..., 2, 3)


def find_contacts(kp3d, obs, options) -> np.ndarray:
    """(T, 21, 21) bool: keypoint i of hand 0 and j of hand 1 touch in frame t (both seen, closer in the image
    than ``contact_px`` times the hands' mean RMS pixel size, fitted depths within ``contact_depth_m``)."""
    conf = [np.where(o.valid[:, None], o.kp_conf, 0.0) for o in obs]
    uv = [o.kp2d for o in obs]
    size = []
    for u, c in zip(uv, conf, strict=True):
        w = np.maximum(c, 1e-6)
        cen = (w[..., None] * u).sum(1) / w.sum(1)[:, None]
        size.append(np.sqrt((w * ((u - cen[:, None]) ** 2).sum(-1)).sum(1) / w.sum(1)))
    limit = options.contact_px * 0.5 * (size[0] + size[1])
    near = np.linalg.norm(uv[0][:, :, None] - uv[1][:, None], axis=-1) < limit[:, None, None]
    seen = (conf[0][:, :, None] > 0.3) & (conf[1][:, None] > 0.3)
    depth = np.abs(kp3d[0][:, :, 2, None] - kp3d[1][:, None, :, 2]) < options.contact_depth_m
    return near & seen & depth


def solve_pentadiagonal(hess: np.ndarray, k1: np.ndarray, k2: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the symmetric block-pentadiagonal system with diagonal blocks hess (T, n, n) and scalar couplings
    k1 (T-1,) / k2 (T-2,) times the identity between frames t, t+1 / t, t+2: frames are paired into blocks of
    2n, which makes it block-tridiagonal, solved by block elimination (linear in T; small dense blocks keep
    it off LAPACK's banded solver, whose threading stalls on a busy machine)."""
    t, n = rhs.shape
    pad = t % 2
    if pad:  # a decoupled dummy frame makes T even
        hess = np.concatenate([hess, np.eye(n)[None]])
        rhs = np.concatenate([rhs, np.zeros((1, n))])
    tt = t + pad
    c1, c2 = np.zeros(tt), np.zeros(tt)
    c1[: t - 1], c2[: max(t - 2, 0)] = k1[: t - 1], k2[: max(t - 2, 0)]
    eye = np.eye(n)
    m = tt // 2
    diag = np.zeros((m, 2 * n, 2 * n))
    diag[:, :n, :n], diag[:, n:, n:] = hess[0::2], hess[1::2]
    diag[:, :n, n:] = diag[:, n:, :n] = c1[0::2, None, None] * eye
    upper = np.zeros((m, 2 * n, 2 * n))  # coupling of pair s with pair s + 1
    upper[:, :n, :n] = c2[0::2, None, None] * eye
    upper[:, n:, :n] = c1[1::2, None, None] * eye
    upper[:, n:, n:] = c2[1::2, None, None] * eye
    r = rhs.reshape(m, 2 * n)
    cs, ds = np.zeros_like(upper), np.zeros_like(r)
    for i in range(m):
        a = diag[i] - (upper[i - 1].T @ cs[i - 1] if i else 0.0)
        b = r[i] - (upper[i - 1].T @ ds[i - 1] if i else 0.0)
        sol = np.linalg.solve(a, np.concatenate([upper[i], b[:, None]], 1))
        cs[i], ds[i] = sol[:, :-1], sol[:, -1]
    x = np.zeros_like(r)
    x[-1] = ds[-1]
    for i in range(m - 2, -1, -1):
        x[i] = ds[i] - cs[i] @ x[i + 1]
    return x.reshape(tt, n)[:t]


def joint_stage(models, fits, observations, k: np.ndarray, options, dt_scale: float = 1.0, iterations: int = 5):
    """Translation offsets of two fitted hands over the clip (see the module's doc); returns the moved fits
    (theta and shape unchanged, ``transl``, ``kp3d`` and ``err2d_px`` updated) and a ``TwoHandInfo``."""
    start = time.perf_counter()
    info = TwoHandInfo()
    radii = [capsule_radii(m, f.beta, f.joint_offsets) for m, f in zip(models, fits, strict=True)]
    kp = [f.kp3d.astype(np.float64) for f in fits]
    t = len(kp[0])
    both = fits[0].valid & fits[1].valid
    info.penetration_mm["before_mean"], info.penetration_mm["before_max"] = penetration_mm(*kp, *radii, both)
    contacts = find_contacts(kp, observations, options) & both[:, None, None]
    info.contact_frames, info.contact_pairs = int(contacts.any((1, 2)).sum()), int(contacts.sum())
    sc = options.hand_scale_m
    # the fitted image of each hand as the target: the fit's 2D term (per hand size in pixels) x w_two_hand_image
    target = [_project(p, k)[0] for p in kp]
    w2 = []
    for o, tg in zip(observations, target, strict=True):
        c = np.where(o.valid[:, None], o.kp_conf, 0.0)
        size = np.sqrt(((tg - tg.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))
        w2.append(options.w_two_hand_image * options.w_2d * c / c.shape[1] / np.maximum(size, 1.0)[:, None] ** 2)
    ti, tj, tk = np.nonzero(contacts)
    n_pairs = np.maximum(contacts.sum((1, 2)), 1)
    w_c = options.w_contact / n_pairs[ti] / sc**2
    bands = smoothness_bands(t, 0.0, options.w_two_hand_accel, dt_scale, torch.zeros(1, dtype=torch.float64))
    diag, k1, k2 = (b.numpy() for b in bands)
    eye6 = np.eye(6) / sc**2
    delta = np.zeros((t, 6))
    for _ in range(iterations):
        hess = np.zeros((t, 6, 6))
        grad = np.zeros((t, 6))
        moved = [kp[h] + delta[:, None, 3 * h : 3 * h + 3] for h in range(2)]
        for h in range(2):
            uv, jac = _project(moved[h], k)
            r = uv - target[h]
            sl = slice(3 * h, 3 * h + 3)
            hess[:, sl, sl] += np.einsum("tp,tpai,tpaj->tij", w2[h], jac, jac)
            grad[:, sl] += np.einsum("tp,tpai,tpa->ti", w2[h], jac, r)
        if len(ti):  # contact: same depth
            r = moved[0][ti, tj, 2] - moved[1][ti, tk, 2]
            for a, sa in ((2, 1.0), (5, -1.0)):
                grad[:, a] += np.bincount(ti, w_c * sa * r, t)
                for b, sb in ((2, 1.0), (5, -1.0)):
                    hess[:, a, b] += np.bincount(ti, w_c * sa * sb, t)
        over, normal = capsule_overlaps(moved[0], moved[1], *radii)
        active = (over > 0) & both[:, None, None]
        if active.any():
            pf, pa, pb = np.nonzero(active)
            pen, n = over[pf, pa, pb], normal[pf, pa, pb]
            jac = np.concatenate([-n, n], 1) / sc  # d overlap / d (delta_0, delta_1), over the hand scale
            wp = options.w_penetration
            np.add.at(grad, pf, wp * jac * (pen / sc)[:, None])
            np.add.at(hess, pf, wp * jac[:, :, None] * jac[:, None, :])
        # the acceleration prior on the offsets, exact over the clip (banded), and a weak pull to zero
        grad += eye6.diagonal() * (diag[:, None] * delta)
        if t > 1:
            grad[:-1] += k1[:, None] * delta[1:] / sc**2
            grad[1:] += k1[:, None] * delta[:-1] / sc**2
        if t > 2:
            grad[:-2] += k2[:, None] * delta[2:] / sc**2
            grad[2:] += k2[:, None] * delta[:-2] / sc**2
        hess += diag[:, None, None] * eye6 + 1e-4 * eye6
        grad += 1e-4 * delta / sc**2
        delta = delta + solve_pentadiagonal(hess, k1 / sc**2, k2 / sc**2, -grad)
    out = []
    for h, (f, o) in enumerate(zip(fits, observations, strict=True)):
        d = delta[:, 3 * h : 3 * h + 3]
        kp3d = kp[h] + d[:, None]
        uv = _project(kp3d, k)[0]
        seen = o.kp_conf > 0
        err = np.linalg.norm(uv - o.kp2d, axis=-1)
        err2d = np.where(f.valid, np.where(seen, err, 0.0).sum(1) / np.maximum(seen.sum(1), 1), np.nan)
        out.append(type(f)(**{**f.__dict__, "transl": f.transl + d, "kp3d": kp3d, "err2d_px": err2d}))
    kp_after = [f.kp3d for f in out]
    info.penetration_mm["after_mean"], info.penetration_mm["after_max"] = penetration_mm(*kp_after, *radii, both)
    info.seconds["joint_stage"] = time.perf_counter() - start
    return out, info
