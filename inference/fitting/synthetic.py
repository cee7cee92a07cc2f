"""Synthetic hand clips with known truth, for tests and benchmarks of the fit (deterministic given a seed).

Poses are drawn inside the model's joint limits (mostly flexion, some abduction, little twist), shapes from
N(0, beta_std^2), the hand placed in front of a pinhole camera, and moved smoothly between random key poses.
Observations mimic MediaPipe: 2D keypoints in pixels and 3D landmarks about the hand centre as seen along
the viewing ray of the hand (``fit.world_in_camera`` undoes that rotation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation, Slerp

from ...core.keypoints import NUM_BETAS, NUM_JOINTS
from . import ik
from .fit import HandObservations, _np
from .two_hands import BONES, _segments, capsule_overlaps, capsule_radii


@dataclass
class SyntheticHand:
    """Truth and observations of one synthetic hand over T frames.

    Attributes:
        theta: (T, 16, 3) axis-angle truth; beta: (10,); transl: (T, 3) metres, camera frame.
        kp3d: (T, 21, 3) true keypoints, camera frame, metres.
        obs: the noisy observations (kp2d pixels, world metres in the crop's view).
    """

    theta: np.ndarray
    beta: np.ndarray
    transl: np.ndarray
    kp3d: np.ndarray
    obs: HandObservations
    phase: np.ndarray | None = None  # (T,) str: the contact phase ``two_hand_clip`` put the frame in ("" none)


def random_pose(model, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 15, 3) finger rotations (template axes) inside the model's limits, flexion-dominated."""
    limits = _np(model.joint_limits)[1:]
    frames = _np(model.joint_frames)[1:]
    lo, hi = limits[..., 0], limits[..., 1]
    u = rng.uniform(size=(n, NUM_JOINTS - 1, 3))
    # flexion anywhere in [0, 80 % of max]; twist and abduction within 40 % of their ranges
    flex = np.maximum(lo[:, 0], 0.0) + u[..., 0] * 0.8 * (hi[:, 0] - np.maximum(lo[:, 0], 0.0))
    other = lo[:, 1:] + (0.3 + 0.4 * u[..., 1:]) * (hi[:, 1:] - lo[:, 1:])
    local = np.concatenate([flex[..., None], other], -1)
    return np.einsum("jab,njb->nja", frames, local)


def random_orientation(rng: np.random.Generator, n: int, side: str) -> np.ndarray:
    """(n, 3) global orientations that show the hand to the camera with fingers roughly upward.

    Template fingers point along -x (right) / +x (left) and the palm faces -y; first turn the fingers to
    image-up (-y) and the palm (or back) toward the camera, then perturb by up to ~60 degrees.
    """
    s = 1.0 if side == "right" else -1.0
    # template -> camera: finger direction (-s, 0, 0) -> (0, -1, 0); palm normal (0, -1, 0) -> (0, 0, -1)
    col0, col1 = np.array([0.0, s, 0.0]), np.array([0.0, 0.0, 1.0])
    base = Rotation.from_matrix(np.stack([col0, col1, np.cross(col0, col1)], 1))
    flips = Rotation.from_rotvec(np.outer(rng.integers(0, 2, n) * np.pi, [0.0, 1.0, 0.0]))  # palm or back
    perturb = Rotation.from_rotvec(rng.normal(0.0, 0.5, (n, 3)))
    return (perturb * flips * base).as_rotvec()


def _smooth(keys: np.ndarray, key_t: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Slerp (n_keys, J, 3) rotation vectors to times t."""
    out = np.zeros((len(t),) + keys.shape[1:])
    for j in range(keys.shape[1]):
        out[:, j] = Slerp(key_t, Rotation.from_rotvec(keys[:, j]))(t).as_rotvec()
    return out


def synthetic_clip(
    model,
    k: np.ndarray,
    image_size: tuple[int, int],
    num_frames: int,
    seed: int,
    noise_px: float = 0.0,
    noise_mm: float = 0.0,
    key_every: int = 15,
    depth_range: tuple[float, float] = (0.35, 0.7),
    beta_std: float = 0.7,
    joint_offsets: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    x_range: tuple[float, float] = (0.2, 0.8),
) -> SyntheticHand:
    """A smooth random clip of one hand seen by camera k (3, 3); everything from ``seed``. joint_offsets
    (16, 3) metres move the true skeleton's rest joints beyond beta (a hand the shape space cannot make);
    beta (10,): the shape (default drawn from N(0, beta_std^2)); x_range: where the wrist may be across the
    image (fractions of its width)."""
    rng = np.random.default_rng(seed)
    n_keys = max(2, int(np.ceil((num_frames - 1) / key_every)) + 1)
    key_t = np.arange(n_keys) * float(key_every)
    t = np.arange(num_frames, dtype=np.float64)
    side = getattr(model, "side", "right")
    keys = np.concatenate([random_orientation(rng, n_keys, side)[:, None], random_pose(model, rng, n_keys)], 1)
    theta = _smooth(keys, key_t, t)
    drawn = rng.normal(0.0, beta_std, NUM_BETAS)
    beta = drawn if beta is None else np.asarray(beta, np.float64)
    w, h = image_size
    z = rng.uniform(*depth_range, n_keys)
    # wrist image position inside the central 60 % of the frame
    uv = np.stack([rng.uniform(x_range[0] * w, x_range[1] * w, n_keys), rng.uniform(0.25 * h, 0.85 * h, n_keys)], -1)
    wrist_keys = np.stack([(uv[:, 0] - k[0, 2]) / k[0, 0] * z, (uv[:, 1] - k[1, 2]) / k[1, 1] * z, z], -1)
    wrist = np.stack([np.interp(t, key_t, wrist_keys[:, i]) for i in range(3)], -1)
    dtype = model.joint_frames.dtype
    with torch.no_grad():
        th = torch.as_tensor(theta, dtype=dtype)
        bt = torch.as_tensor(np.tile(beta, (num_frames, 1)), dtype=dtype)
        out = model(th, bt, th[:, 0] * 0, with_vertices=False, joint_offsets=joint_offsets)
        j0 = _np(out.joints[:, 0])
        kp = _np(out.keypoints) - j0[:, None] + wrist[:, None]
    transl = wrist - j0
    return SyntheticHand(theta, beta, transl, kp, observe(kp, k, rng, noise_px, noise_mm))


def observe(
    kp: np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
    noise_px: float,
    noise_mm: float,
    image_size: tuple[int, int] | None = None,
):
    """MediaPipe-like observations of true keypoints kp (T, 21, 3): 2D with Gaussian noise (pixels), 3D about
    the centre as seen along the hand's viewing ray with Gaussian noise (mm). With image_size, keypoints
    outside the image get confidence 0, and frames with fewer than 12 inside have no 3D landmarks."""
    uvk = kp[..., :2] / kp[..., 2:] * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])
    kp2d = uvk + rng.normal(0.0, noise_px, uvk.shape)
    centre = kp2d.mean(1)
    rel = kp - kp.mean(1, keepdims=True)
    world = np.einsum("nji,npj->npi", ik.ray_rotation(centre, k), rel)  # camera -> crop view
    world = world + rng.normal(0.0, noise_mm / 1000.0, world.shape)
    conf = np.ones(kp2d.shape[:2])
    if image_size is not None:
        inside = (uvk >= 0).all(-1) & (uvk[..., 0] < image_size[0]) & (uvk[..., 1] < image_size[1])
        conf = inside.astype(np.float64)
    return HandObservations(kp2d, conf, world, conf.sum(1) >= 12)


def _blend_rotvec(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """Per joint slerp from rotation vectors a (J, 3) to b (J, 3) by weight w."""
    ra, rb = Rotation.from_rotvec(a), Rotation.from_rotvec(b)
    return (ra * Rotation.from_rotvec((ra.inv() * rb).as_rotvec() * w)).as_rotvec()


def two_hand_clip(
    models,
    k: np.ndarray,
    image_size: tuple[int, int],
    num_frames: int,
    seed: int,
    noise_px: float = 0.0,
    noise_mm: float = 0.0,
    depths: tuple[float, float] = (0.4, 0.55),
    contact: tuple[float, float] | None = (0.35, 0.65),
    gap_m: float = 0.005,
    touches: tuple[tuple[str, float, float], ...] = (),
    touch_gap_m: float = 0.001,
) -> tuple[SyntheticHand, SyntheticHand]:
    """One person's two hands (right, left; models in that order, the same beta): each moves on its own at
    about its depth of ``depths`` (metres), and over the fraction ``contact`` of the clip (blended in and out
    over 15 frames; None: never) the left hand turns into the right one's mirror image beside it, so that the
    two hands' bone capsules meet ``gap_m`` apart ("side" frames in ``phase``). Then, over each window of
    ``touches`` ((kind, start, end) fractions of the clip, kind in ``TOUCHES``), the left hand is turned and
    moved so that one of its fingertips touches the right hand ``touch_gap_m`` off the skin (see
    ``_touch``). Observations as ``observe`` (keypoints outside the image unseen)."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0.0, 0.7, NUM_BETAS)
    hands = [
        synthetic_clip(
            m, k, image_size, num_frames, seed + 101 * (i + 1), depth_range=(0.93 * z, 1.07 * z), beta=beta, x_range=xr
        )
        for i, (m, z, xr) in enumerate(zip(models, depths, ((0.15, 0.45), (0.55, 0.85)), strict=True))
    ]
    t = np.arange(num_frames, dtype=np.float64)
    blend, turn_in = _windows(t, contact if contact is not None else (-1.0, -1.0), num_frames)
    right, left = hands
    # around contact the left hand becomes the mirror image of the right one (the left model is the right one
    # mirrored: theta * (1, -1, -1)) in an upright plane facing the image's x axis, gap_m / 2 beyond the right
    # hand's bone capsules (``two_hands.capsule_radii``) on the image's right, where the person's left hand is;
    # the plane starts 10 cm further out and comes in with ``blend``: whatever of the right hand reaches
    # furthest that way (mostly a fingertip) touches its mirror image, the bodies stay apart, depths unchanged
    n = np.broadcast_to(np.array([1.0, 0.0, 0.0]), (num_frames, 3))
    radii = capsule_radii(models[0], beta, np.zeros((NUM_JOINTS, 3)))
    reach = np.maximum(right.kp3d[:, BONES[:, 0], 0], right.kp3d[:, BONES[:, 1], 0]) + radii
    c = (reach.max(1) + 0.5 * gap_m + 0.1 * (1.0 - blend))[:, None] * n
    theta_c, wrist_c = _mirrored(right, n, c)
    theta = np.stack([_blend_rotvec(left.theta[i], theta_c[i], turn_in[i]) for i in range(num_frames)])
    wrist = left.kp3d[:, 0] + turn_in[:, None] * (wrist_c - left.kp3d[:, 0])
    phase = np.where(turn_in > 0, "side", "").astype(object)
    for kind, start, end in touches:
        blend, turn_in = _windows(t, (start, end), num_frames)
        # both hands point as they touch (index straight, the other fingers curled), as when counting
        theta = _pointing(models[1], theta, turn_in)
        theta_r = _pointing(models[0], right.theta, turn_in)
        kp_r, _ = _posed(models[0], beta, theta_r, right.kp3d[:, 0])
        # the right hand's touching keypoint comes to the middle of the image (at its depth): both hands in view
        centre = turn_in[:, None] * kp_r[:, TOUCHES[kind][1]] * np.array([1.0, 1.0, 0.0])
        kp_r, j0_r = _posed(models[0], beta, theta_r, right.kp3d[:, 0] - centre)
        right = SyntheticHand(theta_r, beta, right.kp3d[:, 0] - centre - j0_r, kp_r, right.obs)
        if kind == "index-index":
            theta_c, wrist_c = _tip_mirror(right, radii, 8, touch_gap_m + 0.1 * (1.0 - blend))
            theta = np.stack([_blend_rotvec(theta[i], theta_c[i], turn_in[i]) for i in range(num_frames)])
            wrist = wrist + turn_in[:, None] * (wrist_c - wrist)
        else:
            theta, wrist = _touch(models, beta, right.kp3d, theta, wrist, kind, blend, turn_in, touch_gap_m)
        phase[turn_in > 0] = kind
    left_kp, j0 = _posed(models[1], beta, theta, wrist)
    left_obs = observe(left_kp, k, rng, noise_px, noise_mm, image_size)
    left = SyntheticHand(theta, beta, wrist - j0, left_kp, left_obs, phase.astype(str))
    right_obs = observe(right.kp3d, k, rng, noise_px, noise_mm, image_size)
    right = SyntheticHand(right.theta, right.beta, right.transl, right.kp3d, right_obs, phase.astype(str))
    return right, left


def _pointing(model, theta: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """theta (T, 16, 3) with the fingers blended, by weight (T,), into pointing: index straight, middle, ring
    and pinky curled (80 % of their flexion range), the thumb half flexed."""
    frames, limits = _np(model.joint_frames)[1:], _np(model.joint_limits)[1:]
    flex = np.full(NUM_JOINTS - 1, 0.8) * limits[:, 0, 1]
    flex[:3] = 0.0  # the index finger (joints 1-3)
    flex[12:] = 0.5 * limits[12:, 0, 1]  # the thumb (joints 13-15)
    local = np.zeros((NUM_JOINTS - 1, 3))
    local[:, 0] = flex
    point = np.einsum("jab,jb->ja", frames, local)
    out = theta.copy()
    for i in np.flatnonzero(weight > 0):
        out[i, 1:] = _blend_rotvec(theta[i, 1:], point, weight[i])
    return out


def _mirrored(right: SyntheticHand, n: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(theta, wrist) of the left hand as the right one's mirror image in the planes through c (T, 3) of unit
    normals n (T, 3) (the left model is the right one mirrored: theta * (1, -1, -1))."""
    house = np.eye(3) - 2 * n[:, :, None] * n[:, None, :]
    theta_c = right.theta * np.array([1.0, -1.0, -1.0])
    root_c = house @ Rotation.from_rotvec(right.theta[:, 0]).as_matrix() @ np.diag([-1.0, 1.0, 1.0])
    theta_c[:, 0] = Rotation.from_matrix(root_c).as_rotvec()
    return theta_c, right.kp3d[:, 0] - 2 * n * ((right.kp3d[:, 0] - c) * n).sum(1, keepdims=True)


def _tip_mirror(right: SyntheticHand, radii: np.ndarray, tip: int, gap: np.ndarray):
    """The left hand as the right one's mirror image across the plane, of normal half-way between the right
    fingertip's bone direction and the image's +x, lying gap / 2 (T,) beyond every bone capsule of the right
    hand: the mirror images cannot overlap, and where that fingertip's capsule reaches furthest its tip
    touches its image's (tip keypoints 2 r (1 - cos 45 deg) + gap apart, some 5 mm)."""
    kp = right.kp3d
    along = _unit(kp[:, tip] - kp[:, BONES[BONES[:, 1] == tip, 0][0]])
    n = _unit(along + np.array([1.0, 0.0, 0.0]))
    a, b = _segments(kp, radii)
    reach = (np.maximum((a * n[:, None]).sum(-1), (b * n[:, None]).sum(-1)) + radii).max(1)
    return _mirrored(right, n, (reach + 0.5 * gap)[:, None] * n)


# fingertip contacts: (left hand's tip keypoint, right hand's keypoint it touches, whether that is a tip);
# tip to tip as in the counting clip (index-index: mirror images, ``_tip_mirror``; the others: ``_touch``),
# and a fingertip laid on the other hand's index finger (its DIP joint)
TOUCHES = {
    "index-index": (8, 8, True),
    "thumb-index": (8, 4, True),
    "index-on-finger": (8, 7, False),
}


def _windows(t: np.ndarray, window: tuple[float, float], num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(blend, turn_in) over frames t for a window (fractions of the clip): blend 1 inside and 0 outside,
    ramped over 15 frames across each end; turn_in the same ramp 15 frames earlier / later."""
    a, b = (num_frames * c for c in window)
    blend = np.clip(np.minimum(t - a, b - t) / 15.0 + 0.5, 0.0, 1.0)
    return blend, np.clip(np.minimum(t - a, b - t) / 15.0 + 1.5, 0.0, 1.0)


def _posed(model, beta, theta, wrist) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (T, 21, 3) of the hand posed by theta with its wrist joint at ``wrist``, and the rest wrist."""
    dtype = model.joint_frames.dtype
    with torch.no_grad():
        th = torch.as_tensor(theta, dtype=dtype)
        bt = torch.as_tensor(np.tile(beta, (len(theta), 1)), dtype=dtype)
        out = model(th, bt, th[:, 0] * 0, with_vertices=False)
        j0 = _np(out.joints[:, 0])
        return _np(out.keypoints) - j0[:, None] + wrist[:, None], j0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _touch(models, beta, right_kp, theta, wrist, kind, blend, turn_in, gap):
    """The left hand (theta, wrist) turned and moved, by turn_in, so that its fingertip of ``TOUCHES[kind]``
    meets the right hand's keypoint: the contact normal u points from the right hand's surface toward the
    image's right (where the left hand is) -- off a fingertip half-way between the finger's direction and +x,
    off a joint across the finger --, the left hand turned so its wrist-to-fingertip line points along -u
    (the rest of the hand behind the fingertip, away from the right one), its tip keypoint
    (on the skin) put ``gap`` beyond the right hand's skin along u, and 10 cm further out while blend < 1.
    Tip to tip the tip keypoints end some 6 mm apart, on a joint the radius of the finger there."""
    tip_l, key_r, is_tip = TOUCHES[kind]
    bone = {b: i for i, b in enumerate(BONES[:, 1])}
    radii = capsule_radii(models[0], beta, np.zeros((NUM_JOINTS, 3)))
    along = _unit(right_kp[:, key_r] - right_kp[:, BONES[bone[key_r], 0]])
    x = np.array([1.0, 0.0, 0.0])
    across = _unit(x - (along @ x)[:, None] * along)
    # the contact normal, mostly across the image (its depth part damped): the left hand stays well in front
    u = _unit((_unit(along + across) if is_tip else across) * np.array([1.0, 1.0, 0.3]))
    # the skin point: the tip keypoint itself, or the skin over the joint across the finger
    surface = right_kp[:, key_r] if is_tip else right_kp[:, key_r] + radii[bone[key_r]] * u
    left_kp, _ = _posed(models[1], beta, theta, wrist)
    d_l = _unit(left_kp[:, tip_l] - left_kp[:, 0])  # wrist to tip: the rest of the hand stays behind the tip
    root = Rotation.from_rotvec(theta[:, 0])
    turn = []
    for i in range(len(theta)):  # the least rotation taking the left wrist-to-fingertip direction to -u
        axis = np.cross(d_l[i], -u[i])
        angle = np.arctan2(np.linalg.norm(axis), d_l[i] @ -u[i])
        turn.append(_unit(axis) * angle * turn_in[i])
    theta = theta.copy()
    theta[:, 0] = (Rotation.from_rotvec(np.array(turn)) * root).as_rotvec()
    turned, _ = _posed(models[1], beta, theta, wrist)
    target = surface + (gap + 0.1 * (1.0 - blend))[:, None] * u
    shift = turn_in[:, None] * (target - turned[:, tip_l])
    wrist, turned = wrist + shift, turned + shift[:, None]
    # where other bones of the two hands would then overlap, the left hand backs off (along u or toward the
    # camera, whichever needs least; 2 mm steps up to 12 cm) until no capsules overlap by more than
    # 0.5 mm, smoothed over time (the fingertips then touch a little less, or not: the truth says which)
    steps = np.arange(0.0, 0.0305, 0.001)
    best = np.full(len(theta), np.inf)
    back = np.zeros_like(wrist)
    for d in (u, np.broadcast_to([0.0, 0.0, -1.0], u.shape)):
        ok = np.stack([capsule_overlaps(right_kp, turned + s * d[:, None], radii, radii)[0].max((1, 2)) for s in steps])
        ok = ok <= 0.0005
        need = np.where(ok.any(0), steps[np.argmax(ok, 0)], steps[-1])
        better = need < best
        best[better], back[better] = need[better], (need[:, None] * d)[better]
    back = gaussian_filter1d(back * turn_in[:, None], 2.0, axis=0, mode="nearest")
    return theta, wrist + back
