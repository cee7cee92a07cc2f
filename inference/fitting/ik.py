"""Analytic initialisation of the hand fit from 3D landmarks (numpy, batched over frames).

Given root-relative 3D landmarks in camera axes (x right, y down, z forward, metres), the rest keypoints
of the hand model and its joint frames, recover MANO-style pose theta (flat-hand relative axis-angle):

* global orientation by Kabsch on the palm points (wrist + four finger MCPs are rigid in MANO: all are
  children of the wrist with no joint in between);
* per finger joint, the swing that takes the rest bone direction onto the observed one, plus a twist
  about the bone that turns the joint's flexion axis onto the normal of the observed finger plane;
* the translation by linear least squares on the perspective projection (exact for noiseless data),
  with a fallback from the hand's metric size over its pixel size.

The result is only an initial guess; ``fit.py`` refines it against the 2D and 3D evidence and the priors.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ...core.keypoints import MANO_TO_KEYPOINTS, HandKeypoint

#: HandKeypoint of each of the 16 MANO joints.
JOINT_KEYPOINT = MANO_TO_KEYPOINTS.argsort()[:16]
#: Palm points that are rigid relative to the wrist in MANO (used for the global orientation).
PALM_KEYPOINTS = np.array(
    [HandKeypoint.WRIST, HandKeypoint.INDEX_MCP, HandKeypoint.MIDDLE_MCP, HandKeypoint.RING_MCP, HandKeypoint.PINKY_MCP]
)
_EPS = 1e-9


def _normalize(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, _EPS), n[..., 0]


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rotations R (N, 3, 3) minimising sum_i w_i |R (src_i - c_src) - (dst_i - c_dst)|^2.

    src, dst: (N, P, 3); weights: (N, P) or None. Proper rotations only (det +1).
    """
    w = np.ones(src.shape[:2]) if weights is None else np.asarray(weights, dtype=np.float64)
    wsum = np.maximum(w.sum(1, keepdims=True), _EPS)[..., None]
    cs = (w[..., None] * src).sum(1, keepdims=True) / wsum
    cd = (w[..., None] * dst).sum(1, keepdims=True) / wsum
    h = np.einsum("np,npi,npj->nij", w, src - cs, dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("nij,njk->nik", u, vt).transpose(0, 2, 1)))
    d[d == 0] = 1.0
    fix = np.ones((len(src), 3))
    fix[:, 2] = d
    return np.einsum("nji,nj,nkj->nik", vt, fix, u)


def swing_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (N, 3, 3) taking unit vectors a (N, 3) onto unit vectors b (N, 3)."""
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1)
    c = np.einsum("ni,ni->n", a, b)
    angle = np.arctan2(s, c)
    # antiparallel: any axis perpendicular to a
    perp = np.cross(a, np.array([1.0, 0.0, 0.0]))
    perp_alt = np.cross(a, np.array([0.0, 1.0, 0.0]))
    perp = np.where(np.linalg.norm(perp, axis=-1, keepdims=True) > 0.1, perp, perp_alt)
    axis = np.where((s < 1e-8)[:, None], perp, axis)
    axis, _ = _normalize(axis)
    return Rotation.from_rotvec(axis * angle[:, None]).as_matrix()


def ik_from_world(
    world: np.ndarray,
    rest_kp: np.ndarray,
    joint_frames: np.ndarray,
    parents: np.ndarray,
    twist_min_bend: float = 0.35,
) -> np.ndarray:
    """Pose theta (N, 16, 3) that best maps the rest keypoints onto observed 3D landmarks.

    world: (N, 21, 3) observed landmarks in camera axes (any origin); rest_kp: (N, 21, 3) or (21, 3) rest
    keypoints of the model (theta = 0, transl = 0) in template axes; joint_frames: (16, 3, 3) columns
    x = flexion axis, y = along the bone, z = abduction axis, template axes; parents: (16,) MANO parents.
    twist_min_bend: total bend (radians) of a finger below which its plane is too ill-defined to set the
    twist of its base joint; the twist is faded in from there to about twice that bend. Joints further out
    get the swing only (hinges: their twist stays zero).
    """
    world = np.asarray(world, dtype=np.float64)
    n = len(world)
    rest = np.broadcast_to(np.asarray(rest_kp, dtype=np.float64), world.shape)
    frames = np.asarray(joint_frames, dtype=np.float64)
    glob = np.zeros((n, 16, 3, 3))
    theta = np.zeros((n, 16, 3))
    glob[:, 0] = kabsch(rest[:, PALM_KEYPOINTS], world[:, PALM_KEYPOINTS])
    theta[:, 0] = Rotation.from_matrix(glob[:, 0]).as_rotvec()
    for j in range(1, 16):  # MANO order lists every parent before its children
        p = int(parents[j])
        k = int(JOINT_KEYPOINT[j])  # never a tip, so k + 1 is the next point along the finger
        b_rest, _ = _normalize(rest[:, k + 1] - rest[:, k])
        b_obs, _ = _normalize(world[:, k + 1] - world[:, k])
        v = np.einsum("nji,nj->ni", glob[:, p], b_obs)  # observed bone in the parent's rest frame
        r_swing = swing_rotation(b_rest, v)
        r_loc = r_swing
        if p == 0:
            # twist of a finger's base joint: after the swing, the next joint's flexion axis should be the normal
            # of the observed finger plane; summing the (unnormalised) normals of consecutive bone pairs weights
            # them by how bent they are, so a straight base still gets its plane from the bent joints beyond.
            bones = [world[:, k + i + 1] - world[:, k + i] for i in range(3)]
            bones = [_normalize(x)[0] for x in bones]
            normal, strength = _normalize(np.cross(bones[0], bones[1]) + np.cross(bones[1], bones[2]))
            target = np.einsum("nji,nj->ni", glob[:, p], normal)
            axis_now = r_swing @ frames[j + 1][:, 0]
            # a slightly hyper-extended finger flips the plane normal: keep the twist near zero then
            flip = (np.einsum("ni,ni->n", axis_now, target) < 0) & (strength < 2 * np.sin(twist_min_bend))
            target = np.where(flip[:, None], -target, target)
            # remove the bone-direction component, then measure the angle about the bone
            target = target - np.einsum("ni,ni->n", target, v)[:, None] * v
            axis_now = axis_now - np.einsum("ni,ni->n", axis_now, v)[:, None] * v
            phi = np.arctan2(
                np.einsum("ni,ni->n", v, np.cross(axis_now, target)), np.einsum("ni,ni->n", axis_now, target)
            )
            fade = np.clip(strength / np.sin(twist_min_bend) - 1.0, 0.0, 1.0)
            r_twist = Rotation.from_rotvec(v * (phi * fade)[:, None]).as_matrix()
            r_loc = r_twist @ r_swing
        glob[:, j] = glob[:, p] @ r_loc
        theta[:, j] = Rotation.from_matrix(r_loc).as_rotvec()
    return theta


def depth_from_size(world: np.ndarray, kp2d: np.ndarray, conf: np.ndarray, focal: float) -> np.ndarray:
    """Wrist depth (N,) in metres from the hand's metric size over its pixel size (weak perspective).

    Size = confidence-weighted RMS distance of the keypoints from their centroid, in 3D (x, y only: the
    extent parallel to the image) and in 2D.
    """
    size_m = weighted_spread(np.asarray(world, dtype=np.float64)[..., :2], conf)[1]
    size_px = weighted_spread(np.asarray(kp2d, dtype=np.float64), conf)[1]
    return focal * size_m / np.maximum(size_px, 1e-6)


def weighted_spread(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centroid (N, D) and RMS distance of the points from it (N,): points (N, P, D), weights (N, P)."""
    w = np.asarray(weights, dtype=np.float64)
    wsum = np.maximum(w.sum(1, keepdims=True), _EPS)
    c = (w[..., None] * points).sum(1) / wsum
    return c, np.sqrt((w * ((points - c[:, None]) ** 2).sum(-1)).sum(1) / wsum[:, 0])


def solve_translation(points: np.ndarray, kp2d: np.ndarray, conf: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Offsets t (N, 3) minimising the linearised reprojection error of points + t (pinhole K (3, 3)).

    points: (N, P, 3) camera-oriented model points (metres, any origin); kp2d: (N, P, 2) pixels;
    conf: (N, P) weights. Uses fx (X + tx) = (u - cx) (Z + tz) and the same for y (exact without noise).
    """
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    x, y, z = (np.asarray(points, dtype=np.float64)[..., i] for i in range(3))
    du = np.asarray(kp2d[..., 0], dtype=np.float64) - cx
    dv = np.asarray(kp2d[..., 1], dtype=np.float64) - cy
    w = np.sqrt(np.asarray(conf, dtype=np.float64))
    zero = np.zeros_like(du)
    rows_u = np.stack([np.full_like(du, fx), zero, -du], -1)
    rows_v = np.stack([zero, np.full_like(dv, fy), -dv], -1)
    a = np.concatenate([rows_u, rows_v], 1) * np.concatenate([w, w], 1)[..., None]
    b = np.concatenate([du * z - fx * x, dv * z - fy * y], 1) * np.concatenate([w, w], 1)
    ata = np.einsum("npi,npj->nij", a, a) + 1e-12 * np.eye(3)
    atb = np.einsum("npi,np->ni", a, b)
    return np.linalg.solve(ata, atb[..., None])[..., 0]


def ray_rotation(centre_px: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) taking the optical axis onto the viewing ray through pixel centre_px (N, 2).

    MediaPipe's world landmarks come from a crop and are expressed as if the camera looked straight at the
    hand; rotating them by this brings them into the camera frame for hands away from the image centre.
    """
    c = np.asarray(centre_px, dtype=np.float64)
    ray = np.stack([(c[:, 0] - k[0, 2]) / k[0, 0], (c[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(c))], -1)
    ray, _ = _normalize(ray)
    return swing_rotation(np.broadcast_to(np.array([0.0, 0.0, 1.0]), ray.shape), ray)


#: Keypoint pairs whose distance does not change with pose: the 15 finger bones and all pairs of palm points
#: (wrist, thumb CMC and the four finger MCPs are all children of the wrist in MANO).
_PALM = (0, 1, 5, 9, 13, 17)
RIGID_PAIRS = np.array(
    [(a, b) for i, a in enumerate(_PALM) for b in _PALM[i + 1 :]]
    + [(k, k + 1) for f in range(5) for k in range(1 + 4 * f, 4 + 4 * f)]
)


def fit_shape(
    rest0: np.ndarray,
    shape_dirs: np.ndarray,
    world: np.ndarray,
    weights: np.ndarray | None = None,
    sigma_m: float = 0.004,
    iterations: int = 10,
    max_beta: float = 3.0,
) -> np.ndarray:
    """Shape beta (10,) whose rest keypoints match the pose-invariant distances seen in the 3D landmarks.

    rest0: (21, 3) rest keypoints at beta = 0; shape_dirs: (21, 3, 10) their change per unit beta (exactly
    linear for MANO: J(beta) and vertices are linear in beta); world: (N, 21, 3) observed landmarks (metres);
    weights: (N,) frame weights. The target of each rigid distance is its weighted median over the frames.
    Gauss-Newton on sum ((d(beta) - d_obs) / sigma_m)^2 + |beta|^2, beta kept within +-max_beta.
    """
    world = np.asarray(world, dtype=np.float64)
    a, b = RIGID_PAIRS[:, 0], RIGID_PAIRS[:, 1]
    d_obs_all = np.linalg.norm(world[:, a] - world[:, b], axis=-1)  # (N, P)
    w = np.ones(len(world)) if weights is None else np.asarray(weights, dtype=np.float64)
    d_obs = np.array([_weighted_median(d_obs_all[:, i], w) for i in range(len(a))])
    beta = np.zeros(shape_dirs.shape[-1])
    for _ in range(iterations):
        rest = rest0 + shape_dirs @ beta
        diff = rest[a] - rest[b]
        d = np.linalg.norm(diff, axis=-1)
        unit = diff / np.maximum(d, _EPS)[:, None]
        jac = np.einsum("pc,pck->pk", unit, shape_dirs[a] - shape_dirs[b]) / sigma_m
        res = (d - d_obs) / sigma_m
        step = np.linalg.solve(jac.T @ jac + np.eye(len(beta)), -(jac.T @ res + beta))
        beta = np.clip(beta + step, -max_beta, max_beta)
        if np.abs(step).max() < 1e-6:
            break
    return beta


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, 0.5 * cw[-1])])
