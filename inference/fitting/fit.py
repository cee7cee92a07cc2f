"""Batched fit of a MANO-style hand model to keypoints over a whole clip (torch, CPU or CUDA).

Unknowns per hand track: pose theta (T, 16, 3) and translation (T, 3) per frame, shape beta (10,) per clip.
Evidence: 2D keypoints in pixels with confidences (robust Geman-McClure cost), 3D landmarks relative to
the hand centre (MediaPipe "world" landmarks, rotated from the crop's viewing ray into the camera frame)
and a pinhole camera. Priors: joint limits, a shape regulariser, smooth rotations and translation.

The solve is HAMR's coarse-to-fine iteration done as optimisation, all frames of a track at once:
analytic IK + shape from bone lengths + linear translation (``ik.py``) -> stage 1 global orientation and
translation -> stage 2 all pose (with joint limits) -> stage 3 pose and shape, each a bounded number of
batched Levenberg-Marquardt steps (``solver.py``); every third stage-2 step and a final one solve the log-depth
track of the whole clip at once (``HandSolver.depth_step``); a final polish drops the 3D landmark term, so the 2D
keypoints, which disagree with the 3D landmarks on proportions, place the hand with the skeleton of stage 3 (its
bone lengths leave each bone's depth only a sign to choose, which the start decides); its steps solve the whole
track at once (``HandSolver.track_step``). Nothing is random. The translation is solved as the
wrist's image-plane direction and log depth, which keeps the poorly observed depth well conditioned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from ...core import anatomy
from ...core.keypoints import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS
from ..handmodel.model import owned
from . import ik, persons, solver

_DTYPE = torch.float64  # the solver's gradients and cost comparisons need double precision


class FitError(ValueError):
    """The fit cannot run on the given input (shapes, no usable frame, bad camera)."""


@dataclass
class FitOptions:
    """Weights and iteration budget of the fit.

    Residuals are divided by the hand's size before the robust cost (RMS distance of the keypoints from their
    centroid: pixels for 2D, metres for 3D), so ``sigma_2d`` / ``sigma_3d`` (Geman-McClure scales) are
    fractions of it and the weights hold at any resolution and distance. Temporal weights are per frame at
    30 fps (``dt_scale`` in ``fit_hands`` adapts them); translation priors measure motion in units of
    ``hand_scale_m``. The rotations have no temporal prior by default: each frame's pose follows its own
    evidence, and temporal smoothing is left to the capture's smoothing (``core.smoothing``), which the user
    sets and can undo. The wrist's translation has a weak one and its log depth a strong one (the image sees
    depth only through the hand's size in pixels). ``scale_free_3d`` compares the 3D landmarks after scaling
    them to the model's size (MediaPipe's world landmarks have a canonical, not a metric, size).
    """

    iterations: tuple[int, int, int] = (3, 5, 3)  # Levenberg-Marquardt steps of stages 1, 2, 3
    w_2d: float = 1.0
    w_3d: float = 0.2
    scale_free_3d: bool = True  # compare the 3D landmarks' shape at the model's size
    sigma_2d: float = 0.25
    sigma_3d: float = 0.5
    w_pose: float = 1e-5  # pull of the finger rotations towards the flat hand (radians^2)
    w_twist: float = 1e-3  # extra pull of twist about the bone towards zero
    w_shape: float = 3e-4  # |beta|^2 per seen frame (tuned on ge2019_dev); beta is also kept within +-3
    w_rot_velocity: float = 0.0
    w_rot_accel: float = 0.0
    w_transl_velocity: float = 1e-5
    w_transl_accel: float = 1e-4
    w_depth_velocity: float = 0.0  # log wrist depth per frame (relative depth change), on top of the translation
    w_depth_accel: float = 10.0
    hand_scale_m: float = 0.05
    init_shape: bool = True  # estimate beta from the 3D landmarks' bone lengths before the IK
    # final pose steps without the 3D landmark term (the 2D keypoints place the hand with the calibrated skeleton);
    # w_polish_depth > 0 adds a prior holding each keypoint's depth about the hand's centroid where stage 3 put it.
    # A frame alone has more pose unknowns than 2D residuals: the longer the polish, the further its depths drift
    # from the 3D landmarks. In a clip that drift differs frame to frame and smoothing averages it out, so clips
    # polish to convergence; a single photo has nothing to average with and stops early (tuned on ge2019_dev).
    polish_iterations: int = 10
    photo_polish_iterations: int = 3
    w_polish_depth: float = 0.0
    # per-clip offsets of the palm's rest joints beyond beta (``identity.py``): prior weight on |offset /
    # hand_scale_m|^2 once per clip, and bound per coordinate in metres (0 = off)
    w_joint_offset: float = 1.0
    max_joint_offset_m: float = 0.008
    # two hands (``two_hands.py``): same_person gives both hands one size before the polish (off for two
    # people's hands); two_hands runs the joint stage after it: contact (image distance below contact_px x the
    # hand's RMS pixel size, fitted depths within contact_depth_m) and non-interpenetration of bone capsules
    same_person: bool = True
    two_hands: bool = True
    w_contact: float = 1.0
    contact_px: float = 0.15
    contact_depth_m: float = 0.05
    w_penetration: float = 1.0
    w_two_hand_image: float = 1000.0  # the joint stage's hold on each hand's fitted image (x the 2D term's weight)
    w_two_hand_accel: float = 1.0
    device: str = "cpu"

    @classmethod
    def parse(cls, pairs: Sequence[str], **base) -> FitOptions:
        """Options from "name=value" strings (the command line's ``--fit``) on top of ``base`` keywords; values
        take the field's type ("3,6,3" for ``iterations``, true/false for flags). Raises FitError on an unknown
        name or a bad value."""
        names = [f.name for f in fields(cls) if f.name != "device"]
        values = dict(base)
        for pair in pairs:
            name, sep, text = pair.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise FitError(f"fit options are NAME=VALUE with NAME one of {', '.join(names)}; got {pair!r}")
            default = getattr(cls, name)
            try:
                if isinstance(default, tuple):
                    value = tuple(int(v) for v in text.split(","))
                elif isinstance(default, bool):
                    value = {"true": True, "1": True, "false": False, "0": False}[text.strip().lower()]
                else:
                    value = type(default)(text)
            except (KeyError, ValueError):
                raise FitError(f"bad value for fit option {name}: {text!r} ({type(default).__name__})") from None
            values[name] = value
        options = cls(**values)
        options.validate()
        return options

    def validate(self) -> None:
        it = tuple(self.iterations)
        if len(it) != 3 or not all(isinstance(n, int) and n >= 0 for n in it):
            raise FitError(f"iterations must be three step counts >= 0 (stages 1, 2, 3), got {self.iterations!r}")
        for name in ("polish_iterations", "photo_polish_iterations"):
            n = getattr(self, name)
            if not (isinstance(n, int) and not isinstance(n, bool) and n >= 0):
                raise FitError(f"{name} must be a step count >= 0, got {n!r}")
        for name in (
            "w_2d",
            "w_3d",
            "w_pose",
            "w_twist",
            "w_shape",
            "w_rot_velocity",
            "w_rot_accel",
            "w_transl_velocity",
            "w_transl_accel",
            "w_depth_velocity",
            "w_depth_accel",
            "w_polish_depth",
            "w_joint_offset",
            "max_joint_offset_m",
            "w_contact",
            "contact_px",
            "contact_depth_m",
            "w_penetration",
            "w_two_hand_image",
            "w_two_hand_accel",
        ):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise FitError(f"{name} must be a finite weight >= 0, got {v!r}")
        for name in ("sigma_2d", "sigma_3d", "hand_scale_m"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise FitError(f"{name} must be positive, got {v!r}")


@dataclass
class HandObservations:
    """Keypoint evidence of one hand over T frames (rows of missing frames may hold anything finite).

    Attributes:
        kp2d: (T, 21, 2) pixels, HandKeypoint order.
        kp_conf: (T, 21) in [0, 1]; 0 = keypoint missing.
        world: (T, 21, 3) metres, camera-aligned axes (x right, y down, z away), origin anywhere near the
            hand (only shape and orientation are used), as seen along the viewing ray of the hand's crop.
        world_valid: (T,) bool, False where ``world`` is missing.
    """

    kp2d: np.ndarray
    kp_conf: np.ndarray
    world: np.ndarray
    world_valid: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(len(self.kp2d))

    @property
    def valid(self) -> np.ndarray:
        """(T,) frames with enough evidence to place the hand: 3D landmarks and >= 4 2D keypoints."""
        return np.asarray(self.world_valid, bool) & ((np.asarray(self.kp_conf) > 0).sum(1) >= 4)


@dataclass
class HandFit:
    """Fitted hand over T frames (camera frame: OpenCV axes, metres).

    Attributes:
        theta: (T, 16, 3) MANO-order axis-angle, flat-hand relative, row 0 the global orientation.
        beta: (10,) shape.
        transl: (T, 3) MANO translation (wrist = J0(beta) + transl).
        kp3d: (T, 21, 3) fitted keypoints, camera frame.
        rest_joints: (16, 3) rest joints J(beta) + joint_offsets, template axes.
        joint_offsets: (16, 3) metres, the skeleton's calibration beyond beta (zero but for the palm's joints).
        valid: (T,) frames fitted from evidence; other frames are interpolated and held by the priors.
        err2d_px: (T,) mean reprojection error over the observed keypoints (NaN where not valid).
        err3d_mm: (T,) mean distance between fitted and observed 3D landmarks after removing their
            centroids (NaN where not valid).
    """

    theta: np.ndarray
    beta: np.ndarray
    transl: np.ndarray
    kp3d: np.ndarray
    rest_joints: np.ndarray
    joint_offsets: np.ndarray
    valid: np.ndarray
    err2d_px: np.ndarray
    err3d_mm: np.ndarray


@dataclass
class FitReport:
    """What the optimiser did: seconds and total cost after each stage, Levenberg-Marquardt steps per stage."""

    seconds: dict[str, float] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    two_hands: dict = field(default_factory=dict)  # ``two_hands.TwoHandInfo.to_json`` when one person was fitted
    persons: list = field(default_factory=list)  # ``persons.Pairing.records``: which tracks are one person's


def _check(obs: HandObservations) -> None:
    t = obs.num_frames
    shapes = {
        "kp2d": (t, NUM_KEYPOINTS, 2),
        "kp_conf": (t, NUM_KEYPOINTS),
        "world": (t, NUM_KEYPOINTS, 3),
        "world_valid": (t,),
    }
    for name, shape in shapes.items():
        got = np.shape(getattr(obs, name))
        if got != shape:
            raise FitError(f"hand observations: {name} has shape {got}, expected {shape}")


def _clean(obs: HandObservations) -> HandObservations:
    """Zero the confidence of non-finite keypoints and invalidate non-finite 3D frames."""
    kp2d = np.asarray(obs.kp2d, np.float64)
    world = np.asarray(obs.world, np.float64)
    conf = np.clip(np.nan_to_num(np.asarray(obs.kp_conf, np.float64)), 0.0, 1.0)
    conf = np.where(np.isfinite(kp2d).all(-1), conf, 0.0)
    world_valid = np.asarray(obs.world_valid, bool) & np.isfinite(world).all((1, 2))
    return HandObservations(
        np.nan_to_num(kp2d, posinf=0.0, neginf=0.0), conf, np.nan_to_num(world, posinf=0.0, neginf=0.0), world_valid
    )


def _np(x) -> np.ndarray:
    """Model attribute (tensor on any device, or array) -> float64 numpy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _rms_size(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    wsum = np.maximum(w.sum(1, keepdims=True), 1e-9)
    c = (w[..., None] * x).sum(1, keepdims=True) / wsum[..., None]
    return np.sqrt((w * ((x - c) ** 2).sum(-1)).sum(1) / wsum[:, 0])


def world_in_camera(obs: HandObservations, k: np.ndarray) -> np.ndarray:
    """(T, 21, 3) observed 3D landmarks about their centroid, rotated from the crop's view into the camera
    frame (by the rotation taking the optical axis onto the ray through the 2D keypoints' centroid)."""
    w = np.maximum(obs.kp_conf, 1e-6)
    c2d = (w[..., None] * obs.kp2d).sum(1) / w.sum(1)[:, None]
    rel = obs.world - obs.world.mean(1, keepdims=True)
    return np.einsum("nij,npj->npi", ik.ray_rotation(c2d, k), rel)


def interpolate_missing(theta: np.ndarray, wrist: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill frames where ``valid`` is False: rotations by slerp, wrist positions linearly, held at the ends.

    theta: (T, 16, 3) axis-angle; wrist: (T, 3); valid: (T,) with at least one True.
    """
    idx = np.flatnonzero(valid)
    if len(idx) == len(valid):
        return theta, wrist
    t = np.clip(np.arange(len(valid)), idx[0], idx[-1]).astype(np.float64)
    theta = theta.copy()
    if len(idx) == 1:
        theta[:] = theta[idx[0]]
    else:
        for j in range(theta.shape[1]):
            theta[:, j] = Slerp(idx, Rotation.from_rotvec(theta[idx, j]))(t).as_rotvec()
    wrist = np.stack([np.interp(t, idx, wrist[idx, i]) for i in range(3)], -1)
    return theta, wrist


def _initialise(model, obs: HandObservations, k: np.ndarray, options: FitOptions) -> dict[str, np.ndarray]:
    """Shape from bone lengths, IK and linear translation on the valid frames, interpolated over the others."""
    dev = torch.device(options.device)
    t = obs.num_frames
    valid = obs.valid
    with torch.no_grad():
        # rest keypoints are linear in beta: sample beta = 0 and the unit vectors
        betas = torch.cat([torch.zeros(1, NUM_BETAS), torch.eye(NUM_BETAS)]).to(dtype=_DTYPE, device=dev)
        zero = torch.zeros(NUM_BETAS + 1, NUM_JOINTS, 3, dtype=_DTYPE, device=dev)
        rest = model(zero, betas, zero[:, 0], with_vertices=False).keypoints.cpu().numpy()
    rest0, shape_dirs = rest[0], (rest[1:] - rest[:1]).transpose(1, 2, 0)
    beta = np.zeros(NUM_BETAS)
    if options.init_shape:
        beta = ik.fit_shape(rest0, shape_dirs, obs.world[valid], obs.kp_conf[valid].mean(1))
    iv = np.flatnonzero(valid)
    conf = obs.kp_conf[iv]
    world = world_in_camera(obs, k)[iv]
    theta = np.zeros((t, NUM_JOINTS, 3))
    frames = _np(model.joint_frames)
    theta[iv] = ik.ik_from_world(world, rest0 + shape_dirs @ beta, frames, _np(model.parents).astype(int))
    # noisy landmarks give twists and hyper-extensions no hand makes: start inside the limits
    theta[iv, 1:] = anatomy.clamp_to_limits(theta[iv, 1:], frames[1:], _np(model.joint_limits)[1:])
    with torch.no_grad():
        th = torch.as_tensor(theta[iv], dtype=_DTYPE, device=dev)
        bt = torch.as_tensor(np.tile(beta, (len(iv), 1)), dtype=_DTYPE, device=dev)
        out = model(th, bt, th[:, 0] * 0, with_vertices=False)
        posed = (out.keypoints - out.joints[:, :1]).cpu().numpy()  # wrist at the origin
    wrist = np.zeros((t, 3))
    wr = ik.solve_translation(posed, obs.kp2d[iv], conf, k)
    z_size = ik.depth_from_size(posed, obs.kp2d[iv], conf, float(k[0, 0]))
    bad = ~np.isfinite(wr).all(1) | (wr[:, 2] < 0.3 * z_size) | (wr[:, 2] > 3.0 * z_size)
    if bad.any():  # degenerate linear solve (few points, outliers): put the wrist on its ray at z_size
        seen = np.maximum(conf, 1e-6)
        c2d = (seen[..., None] * obs.kp2d[iv]).sum(1) / seen.sum(1)[:, None]
        c3d = (seen[..., None] * posed).sum(1) / seen.sum(1)[:, None]
        ray = np.stack([(c2d[:, 0] - k[0, 2]) / k[0, 0], (c2d[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(iv))], -1)
        wr[bad] = (ray * z_size[:, None] - c3d)[bad]
    wrist[iv] = wr
    theta, wrist = interpolate_missing(theta, wrist, valid)
    wrist[:, 2] = np.maximum(wrist[:, 2], 1e-2)
    return {
        "theta": theta,
        "wrist": np.concatenate([wrist[:, :2] / wrist[:, 2:], np.log(wrist[:, 2:])], -1),
        "beta": beta,
    }


def fit_hands(
    models: Sequence[torch.nn.Module],
    observations: Sequence[HandObservations],
    k: np.ndarray,
    options: FitOptions | None = None,
    dt_scale: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[HandFit], FitReport]:
    """Fit one hand model per hand track (same camera, same frames) and return the fits in input order.

    models: HandModel per track (its side's model); they are moved to ``options.device`` in float64 (in
    place, as ``nn.Module.to`` does). observations: evidence per track, all with the same T; k: (3, 3)
    pinhole intrinsics in pixels; dt_scale: time between fitted samples in units of 1/30 s (so the temporal
    priors mean the same at any fps and stride); progress: called with (steps done, steps total).
    """
    options = options or FitOptions()
    options.validate()
    k = np.asarray(k, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise FitError(f"camera matrix must be a finite 3x3 with positive focal lengths, got {k.tolist()}")
    if len(models) != len(observations) or not observations:
        raise FitError("need one hand model per hand track and at least one track")
    for obs in observations:
        _check(obs)
    if len({o.num_frames for o in observations}) != 1:
        raise FitError("all hand tracks must cover the same frames")
    observations = [_clean(o) for o in observations]
    for i, obs in enumerate(observations):
        if not obs.valid.any():
            raise FitError(f"hand track {i} has no frame with 3D landmarks and at least 4 finite 2D keypoints")
    if not np.isfinite(dt_scale) or dt_scale <= 0:
        raise FitError(f"dt_scale must be positive, got {dt_scale}")
    dev = torch.device(options.device)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead (and fight other processes)
    try:
        return _fit(models, observations, k, options, dt_scale, progress)
    finally:
        torch.set_num_threads(threads)


def make_solver(model, obs: HandObservations, k: np.ndarray, options: FitOptions, dt_scale: float = 1.0):
    """The solver of one cleaned track (``_clean``), started from the analytic initialisation: what
    ``fit_hands`` iterates (tests drive single steps of it). The model must be float64 on ``options.device``."""
    dev = torch.device(options.device)
    weights = solver.Weights(
        **{f: getattr(options, f) for f in solver.Weights.__dataclass_fields__ if f != "dt_scale"}, dt_scale=dt_scale
    )
    init = _initialise(model, obs, k, options)
    valid = obs.valid
    conf = np.where(valid[:, None], obs.kp_conf, 0.0)
    tt = lambda a: owned(np.ascontiguousarray(a), _DTYPE, dev)  # noqa: E731  (owned: run-to-run identical)
    data = {
        "kp2d": tt(obs.kp2d),
        "conf": tt(conf),
        "world": tt(world_in_camera(obs, k)),
        "inv_m": tt(1.0 / np.maximum(_rms_size(obs.world, np.ones(conf.shape)), 1e-3)),
        "valid": tt(valid),
        "inv_px": tt(1.0 / np.maximum(_rms_size(obs.kp2d, np.maximum(conf, 1e-6)), 1.0)),
        "k": tt(k),
    }
    return solver.HandSolver(model, data, {n: tt(v) for n, v in init.items()}, weights)


def _fit(models, observations, k, options, dt_scale, progress):
    dev = torch.device(options.device)
    report = FitReport()
    start = time.perf_counter()
    models = [m.to(device=dev, dtype=_DTYPE) for m in models]
    solvers = [make_solver(model, obs, k, options, dt_scale) for model, obs in zip(models, observations, strict=True)]
    report.seconds["init"] = time.perf_counter() - start
    n1, n2, n3 = options.iterations
    # tracks of one frame are a photo (FitOptions.photo_polish_iterations); all tracks cover the same frames
    n4 = options.photo_polish_iterations if observations[0].num_frames == 1 else options.polish_iterations
    total, done = n1 + n2 + n3 + n4, 0
    root_and_wrist = torch.zeros(solver.NUM_PARAMS, dtype=torch.bool, device=dev)
    root_and_wrist[:3] = True
    root_and_wrist[solver.NUM_POSE :] = True
    everything = torch.ones(solver.NUM_PARAMS, dtype=torch.bool, device=dev)
    polish_cost: list[float | None] = [None] * len(solvers)  # each track's cost after its last polish step
    rotation_priors = options.w_rot_velocity > 0 or options.w_rot_accel > 0
    pairing = persons.pair_hands([getattr(m, "side", None) for m in models], observations)
    report.persons = pairing.records
    with torch.no_grad():
        for stage, n_iter in ((1, n1), (2, n2), (3, n3), (4, n4)):
            if stage == 4 and options.same_person and pairing.pairs:
                persons.couple_pairs(solvers, pairing, report)  # one hand size per person, before the polish
            start = time.perf_counter()
            for i in range(n_iter):
                for j, s in enumerate(solvers):
                    if stage == 4:
                        if i == 0:
                            s.start_polish()
                        # the whole track at once: its temporal priors (depth's too) exactly
                        polish_cost[j] = s.track_step(polish_cost[j])
                        if rotation_priors:  # they slow the depth track's convergence: one more step on it
                            s.depth_step()
                            polish_cost[j] = None
                    elif stage == 3:
                        s.joint_step()
                    elif stage == 2 and i % 3 == 2 and s.has_depth_prior:
                        s.depth_step()  # every third pose step: the depth track solved over the clip at once
                    else:
                        s.pose_step(root_and_wrist if stage == 1 else everything)
                    if stage == 3 and i == n_iter - 1:
                        s.depth_step()  # the shape steps move the depths: settle them over the clip last
                done += 1
                if progress:
                    progress(done, total)
            name = f"stage{stage}" if stage < 4 else "polish"  # the polish changes the objective (no 3D term)
            report.seconds[name] = time.perf_counter() - start
            report.loss[name] = sum(s.total_cost() for s in solvers)
            report.iterations[name] = n_iter
        fits = []
        for s, obs in zip(solvers, observations, strict=True):
            t = obs.num_frames
            theta = s.theta
            p = s.points(theta, s.ident_rows(t))
            wrist = s.wrist(s.x)
            kp = (p + wrist[:, None]).cpu().numpy()
            zero = torch.zeros(1, NUM_JOINTS, 3, dtype=_DTYPE, device=dev)
            beta, offsets = s.layout.split(s.ident[None])
            offsets = torch.zeros_like(zero) if offsets is None else offsets
            rest_joints = s.model(zero, beta, zero[:, 0], with_vertices=False, joint_offsets=offsets).rest_joints
            rest_joints, offsets = rest_joints[0].cpu().numpy(), offsets[0].cpu().numpy()
            transl = wrist.cpu().numpy() - rest_joints[0]
            fits.append(_finish(obs, k, theta.cpu().numpy(), s.beta.cpu().numpy(), transl, kp, rest_joints, offsets))
    if options.two_hands and pairing.pairs:
        fits = persons.joint_stages(models, fits, observations, k, options, dt_scale, pairing, report)
    return fits, report


def _finish(obs, k, theta, beta, transl, kp, rest_joints, offsets) -> HandFit:
    valid = obs.valid
    uv = kp[..., :2] / kp[..., 2:] * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])
    d2 = np.linalg.norm(uv - obs.kp2d, axis=-1)
    seen = obs.kp_conf > 0
    err2d = np.where(valid, np.where(seen, d2, 0.0).sum(1) / np.maximum(seen.sum(1), 1), np.nan)
    rel = kp - kp.mean(1, keepdims=True)
    err3d = np.where(valid, 1000.0 * np.linalg.norm(rel - world_in_camera(obs, k), axis=-1).mean(1), np.nan)
    return HandFit(theta, beta, transl, kp, rest_joints, offsets, valid.copy(), err2d, err3d)
