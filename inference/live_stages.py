"""The live preview's stages: camera frames -> tracked landmarks -> a fast per-frame fit -> One-Euro smoothing.

Per frame and hand: the landmarker's tracking step (identities: a track keeps the side it was given),
then the steps of the fit's analytic start (``fitting.ik``, as ``fitting.fit`` initialises a clip: shape from
bone lengths, inverse kinematics from the 3D landmarks, the linear translation from the 2D keypoints; no
iterations), with the shape averaged over the first ``calibrate_frames`` frames and then frozen, and both
hands' inverse kinematics in one call (the built-in left hand is the right one mirrored in x); then a
streaming One-Euro filter on the joint rotations (quaternions) and the translation.

Two stages: ``LandmarkStage`` (networks and tracker, torch) and ``PoseStage`` (everything after, numpy
only: the keypoints come from the hand model cut down to its fingertip vertices). ``LiveSession`` runs
both in one process; the worker (``inference.live``) runs them as a two-process pipeline
(``live_pipeline``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..core import quat
from ..core.capture import track_key
from ..core.capture_checks import key_side
from ..core.handmodel import forward, rest_joints
from ..core.keypoints import NUM_BETAS, NUM_JOINTS, mano_to_keypoints
from ..core.live_record import LiveFrame, LiveHand


@dataclass
class LiveOptions:
    """hands: most hands (1..``core.request.MAX_HANDS``; up to 2 they are one person's, a misread side
    flipped, more get keys "right_2", ...); model / mano_dir: the hand model; fov_deg: camera (None: default 55 deg);
    min_cutoff (Hz), beta, d_cutoff (Hz): the One-Euro filter of rotations and translation (min_cutoff
    inf = no smoothing); calibrate_frames: frames whose shape estimates are averaged, then frozen; threads:
    torch threads of the landmark process (``live_pipeline``; 1: see there)."""

    hands: int = 2
    model: str = "builtin"
    mano_dir: str | None = None
    fov_deg: float | None = None
    min_cutoff: float = 1.5
    beta: float = 0.3
    d_cutoff: float = 1.0
    calibrate_frames: int = 10
    threads: int = 1


_MIRROR = np.array([-1.0, 1.0, 1.0])
_MIRROR_ROTVEC = np.array([1.0, -1.0, -1.0])


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """Streaming One-Euro filter (Casiez et al. 2012) for C channels of vectors or unit quaternions, the
    causal filter ``core.filters.one_euro`` runs over a whole array, one sample at a time."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float, rotations: bool):
        self.min_cutoff, self.beta, self.d_cutoff, self.rotations = min_cutoff, beta, d_cutoff, rotations
        self.prev = None
        self.speed = None

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.prev is None or not np.isfinite(self.min_cutoff) or dt <= 0:
            self.prev, self.speed = x.copy(), np.zeros(x.shape[0])
            return x
        diff = quat.log(quat.mul(quat.conj(self.prev), x)) if self.rotations else x - self.prev
        self.speed = self.speed + _alpha(self.d_cutoff, dt) * (np.linalg.norm(diff, axis=-1) / dt - self.speed)
        cutoff = self.min_cutoff + self.beta * self.speed
        gain = (1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt)))[:, None]
        if self.rotations:
            self.prev = quat.normalize(quat.mul(self.prev, quat.exp(gain * diff)))
        else:
            self.prev = self.prev + gain * diff
        return self.prev


def _model_data(options: LiveOptions, side: str):
    """The numpy hand model of ``side`` (the pose stage needs no torch model: joints and tips only)."""
    from ..core.handmodel import load_builtin

    if options.model == "builtin":
        return load_builtin(side)
    if options.model != "mano":
        raise ValueError(f"unknown hand model {options.model!r}; use 'builtin' or 'mano'")
    from .handmodel.mano import load_mano_data

    return load_mano_data(options.mano_dir, side)


def _tips_only(data):
    """The model cut down to its 5 fingertip vertices: ``handmodel.forward`` on it gives the 21 keypoints
    for the cost of 5 vertices instead of the whole mesh (the joints are the same)."""
    ids = np.asarray(data.tip_vertex_ids)
    return replace(
        data,
        v_template=data.v_template[ids],
        faces=np.zeros((0, 3), np.int32),
        shapedirs=data.shapedirs[ids],
        posedirs=None if data.posedirs is None else data.posedirs[ids],
        weights=data.weights[ids],
        tip_vertex_ids=np.arange(len(ids)),
        j_regressor=None,
    )


class _HandState:
    """One side: its model, shape calibration, filters and when it was last seen."""

    def __init__(self, data, options: LiveOptions):
        self.data, self.tips = data, _tips_only(data)
        # rest keypoints are linear in beta: beta = 0 and the change per unit beta, (21, 3) and (21, 3, 10)
        self.rest0 = mano_to_keypoints(data.j_template, self.tips.v_template)
        self.dirs = mano_to_keypoints(
            data.j_shapedirs.transpose(2, 0, 1), self.tips.shapedirs.transpose(2, 0, 1)
        ).transpose(1, 2, 0)
        self.frames, self.limits = data.joint_frames, data.joint_limits
        self.betas: list[np.ndarray] = []
        self.beta = np.zeros(NUM_BETAS)
        self.rot = OneEuro(options.min_cutoff, options.beta, options.d_cutoff, rotations=True)
        self.pos = OneEuro(options.min_cutoff, options.beta, options.d_cutoff, rotations=False)
        self.last_frame: int | None = None
        self.n_calib = options.calibrate_frames

    @property
    def calibrated(self) -> bool:
        return len(self.betas) >= self.n_calib

    def keypoints(self, theta: np.ndarray) -> np.ndarray:
        """(N, 21, 3) keypoints of this side's model for theta (N, 16, 3) at transl 0 (numpy, float64)."""
        return forward(self.tips, theta, self.beta).keypoints


class LandmarkStage:
    """Frames -> tracked hands: the landmarker's tracking step, one frame at a time (``HandLandmarker._step``;
    the public ``iter_source`` reads frames ahead, which a live stream must not do). The palm detector runs
    only while fewer hands than ``hands`` are tracked; both hands' crops go through the landmark net in one
    call."""

    def __init__(self, options: LiveOptions, landmarker=None):
        from .landmarker import HandLandmarker, LandmarkerOptions
        from .tracking import TrackerState

        self.landmarker = landmarker or HandLandmarker(
            LandmarkerOptions(max_hands=options.hands, device="cpu", tracking=True)
        )
        self.tracker = TrackerState(options.hands, tracking=True)

    def __call__(self, frame: int, rgb: np.ndarray) -> list:
        return self.landmarker._step([self.tracker], [rgb], [frame])[0].hands

    def warm_up(self, size: tuple[int, int], hands: int) -> None:
        """Run both networks once on a black frame of ``size`` (a first call sets up the CPU kernels,
        which would otherwise stall the stream's first frames); the tracker is not touched."""
        w, h = size
        black = np.zeros((h, w, 3), np.uint8)
        nets = self.landmarker.nets
        nets.detect_palms([black])
        for n in range(1, hands + 1):  # a refine pass can run on fewer crops than there are hands
            nets.landmarks([black], [np.tile([w / 2, h / 2, min(w, h) / 2, 0.0], (n, 1))])


class PoseStage:
    """Tracked hands -> ``LiveHand`` per track key (numpy only): the key given to each track id, each key's
    shape calibration, the fit's analytic start and the One-Euro filters."""

    def __init__(self, size: tuple[int, int], fps: float, options: LiveOptions | None = None):
        from . import fitting  # noqa: F401  (imported now, not in the first frame's pose)
        from .camera import intrinsics_from_options

        self.options = options or LiveOptions()
        self.size, self.fps = (int(size[0]), int(size[1])), float(fps)
        self.k = intrinsics_from_options(*self.size, fov_deg=self.options.fov_deg)
        self.hands: dict[str, _HandState] = {}  # track key ("right", "left", "right_2", ...) -> its state
        self.right_data = _model_data(self.options, "right")
        self.mirror_left = self.options.model == "builtin"  # built-in left = right mirrored: one IK call
        self.key_of_track: dict[int, str] = {}

    def _state(self, key: str) -> _HandState:
        """The state of a track key, made on its first sight (a hand found again under the same key keeps
        its shape calibration, as a side did before there were keys)."""
        if key not in self.hands:
            side = key_side(key)
            data = self.right_data if side == "right" else _model_data(self.options, side)
            self.hands[key] = _HandState(data, self.options)
        return self.hands[key]

    def _free_key(self, side: str, taken: set[str]) -> str | None:
        """The key a new track takes. Up to two hands (one person): its own side unless another hand of the
        frame holds it, then the other side. More hands: the first free key of its own side."""
        if len(taken) >= self.options.hands:
            return None
        if self.options.hands <= 2:
            return next((s for s in (side, "left" if side == "right" else "right") if s not in taken), None)
        return next((k for i in range(self.options.hands) if (k := track_key(side, i)) not in taken), None)

    def _keys(self, observations) -> tuple[list[tuple[object, str]], set[str]]:
        """Each observation with a track key that stays with its track id (``_free_key`` for new tracks;
        hands beyond ``options.hands`` are left out), and the keys given to a new track in this frame."""
        live = {h.track_id for h in observations}
        self.key_of_track = {t: k for t, k in self.key_of_track.items() if t in live}
        taken = {self.key_of_track[h.track_id] for h in observations if h.track_id in self.key_of_track}
        out, fresh = [], set()
        for h in sorted(observations, key=lambda o: -o.presence):
            key = self.key_of_track.get(h.track_id)
            if key is None:
                key = self._free_key(h.side, taken)
                if key is None:
                    continue  # more hands than asked for
                self.key_of_track[h.track_id] = key
                taken.add(key)
                fresh.add(key)
            out.append((h, key))
        return out, fresh

    def __call__(self, frame: int, observations) -> dict[str, LiveHand]:
        """The fit's analytic start for every hand of the frame at once: shape (until calibrated), inverse
        kinematics from the 3D landmarks, linear translation from the 2D keypoints; then the filters."""
        from ..core import anatomy
        from .fitting import ik
        from .fitting.fit import HandObservations, world_in_camera

        seen, fresh = self._keys(observations)
        if not seen:
            return {}
        k, n = self.k.matrix, len(seen)
        states = [self._state(key) for _, key in seen]
        kp2d = np.stack([obs.kp2d for obs, _ in seen])
        world = np.stack([obs.world for obs, _ in seen])
        for st, w in zip(states, world, strict=True):
            if not st.calibrated:
                st.betas.append(ik.fit_shape(st.rest0, st.dirs, w[None]))
                st.beta = np.mean(st.betas, 0)
        conf = np.ones((n, 21))
        worlds = world_in_camera(HandObservations(kp2d, conf, world, np.ones(n, bool)), k)
        rests = np.stack([st.rest0 + st.dirs @ st.beta for st in states])
        left = np.array([key_side(key) == "left" for _, key in seen])
        theta = np.zeros((n, NUM_JOINTS, 3))
        if self.mirror_left:  # the left model is the right one mirrored in x: both hands in one call
            flip = np.where(left[:, None, None], _MIRROR, 1.0)
            m = self.right_data
            theta = ik.ik_from_world(worlds * flip, rests * flip, m.joint_frames, m.parents)
            theta = np.where(left[:, None, None], theta * _MIRROR_ROTVEC, theta)
        else:
            for i, st in enumerate(states):
                theta[i] = ik.ik_from_world(worlds[i : i + 1], rests[i : i + 1], st.frames, st.data.parents)[0]
        for i, st in enumerate(states):
            theta[i, 1:] = anatomy.clamp_to_limits(theta[i, 1:], st.frames[1:], st.limits[1:])
        posed = np.concatenate([st.keypoints(theta[i : i + 1]) for i, st in enumerate(states)])
        posed = posed - posed[:, :1]
        wrists = ik.solve_translation(posed, kp2d, conf, k)
        z_size = ik.depth_from_size(posed, kp2d, conf, float(k[0, 0]))
        out = {}
        for i, ((obs, key), st) in enumerate(zip(seen, states, strict=True)):
            wrist = wrists[i]
            if not np.all(np.isfinite(wrist)) or not 0.3 * z_size[i] < wrist[2] < 3.0 * z_size[i]:
                c2d, c3d = kp2d[i].mean(0), posed[i].mean(0)
                ray = np.array([(c2d[0] - k[0, 2]) / k[0, 0], (c2d[1] - k[1, 2]) / k[1, 1], 1.0])
                wrist = ray * z_size[i] - c3d
            transl = wrist - rest_joints(st.data, st.beta)[0]
            dt = 1.0 / self.fps if st.last_frame is None else (frame - st.last_frame) / self.fps
            if st.last_frame is None or frame - st.last_frame > max(3, self.fps / 2) or key in fresh:
                st.rot.prev = st.pos.prev = None  # the hand was lost, or this is another hand: start afresh
            st.last_frame = frame
            th = quat.log(st.rot(quat.exp(theta[i]), dt))
            transl = st.pos(transl[None], dt)[0]
            kp3d = st.keypoints(th[None])[0] + transl
            out[key] = LiveHand(th, transl, st.beta.copy(), obs.kp2d, kp3d, float(obs.presence), st.calibrated)
        return out


class LiveSession:
    """One live stream in one process: ``step(frame_index, rgb, t_read)`` -> ``LiveFrame`` (the landmark
    stage, then the pose stage; ``live_pipeline`` runs the two in two processes)."""

    def __init__(self, size: tuple[int, int], fps: float, options: LiveOptions | None = None, landmarker=None):
        self.options = options or LiveOptions()
        self.landmarks = LandmarkStage(self.options, landmarker)
        self.pose = PoseStage(size, fps, self.options)
        self.size, self.fps, self.k = self.pose.size, self.pose.fps, self.pose.k

    @property
    def landmarker(self):
        return self.landmarks.landmarker

    def step(self, frame: int, rgb: np.ndarray, t_read: float) -> LiveFrame:
        hands = self.pose(frame, self.landmarks(frame, rgb))
        return live_frame(frame, t_read, hands, self.fps, self.size, self.k)


def live_frame(frame: int, t_read: float, hands: dict, fps: float, size, k) -> LiveFrame:
    """The message of a processed frame, stamped now (``t_done``)."""
    return LiveFrame(frame, t_read, time.monotonic(), hands, fps, size, (k.fx, k.fy, k.cx, k.cy))


def run(source, options: LiveOptions | None = None, on_frame=None, max_seconds: float | None = None) -> list[LiveFrame]:
    """Read ``source`` (a ``sources.LiveSource``) to its end (or for ``max_seconds``), step every frame it
    delivers and pass each ``LiveFrame`` to ``on_frame``; returns them all."""
    session = LiveSession(source.size, source.fps, options)
    session.landmarks.warm_up(source.size, session.options.hands)  # as the pipeline does
    out = []
    t0 = time.monotonic()
    while max_seconds is None or time.monotonic() - t0 < max_seconds:
        got = source.read()
        if got is None:
            break
        frame = session.step(*got)
        out.append(frame)
        if on_frame is not None:
            on_frame(frame)
    return out


__all__ = ["LandmarkStage", "LiveOptions", "LiveSession", "OneEuro", "PoseStage", "live_frame", "run"]
