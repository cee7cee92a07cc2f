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
from scipy.spatial.transform import Rotation, Slerp

from ...core.keypoints import NUM_BETAS, NUM_JOINTS
from . import ik
from .fit import HandObservations, _np


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
) -> SyntheticHand:
    """A smooth random clip of one hand seen by camera k (3, 3); everything from ``seed``. joint_offsets
    (16, 3) metres move the true skeleton's rest joints beyond beta (a hand the shape space cannot make)."""
    rng = np.random.default_rng(seed)
    n_keys = max(2, int(np.ceil((num_frames - 1) / key_every)) + 1)
    key_t = np.arange(n_keys) * float(key_every)
    t = np.arange(num_frames, dtype=np.float64)
    side = getattr(model, "side", "right")
    keys = np.concatenate([random_orientation(rng, n_keys, side)[:, None], random_pose(model, rng, n_keys)], 1)
    theta = _smooth(keys, key_t, t)
    beta = rng.normal(0.0, beta_std, NUM_BETAS)
    w, h = image_size
    z = rng.uniform(*depth_range, n_keys)
    # wrist image position inside the central 60 % of the frame
    uv = np.stack([rng.uniform(0.2 * w, 0.8 * w, n_keys), rng.uniform(0.25 * h, 0.85 * h, n_keys)], -1)
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
    uvk = kp[..., :2] / kp[..., 2:] * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])
    kp2d = uvk + rng.normal(0.0, noise_px, uvk.shape)
    centre = kp2d.mean(1)
    rel = kp - kp.mean(1, keepdims=True)
    world = np.einsum("nji,npj->npi", ik.ray_rotation(centre, k), rel)  # camera -> crop view
    world = world + rng.normal(0.0, noise_mm / 1000.0, world.shape)
    obs = HandObservations(kp2d, np.ones(kp2d.shape[:2]), world, np.ones(num_frames, bool))
    return SyntheticHand(theta, beta, transl, kp, obs)
