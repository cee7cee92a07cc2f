"""Live preview: camera frames -> tracked landmarks -> a fast per-frame fit -> One-Euro smoothing.

Runs in the worker process (``python -m handcap.inference.live SOURCE``), never in Blender: each frame's
result is one JSON line on stdout (``core.live_record.LiveFrame``), which the modal operator
``handcap.live_preview`` reads from a timer and applies to the rig. The same path runs from a video file
played at its own frame rate (``--virtual``), which is how it is tested and benchmarked.

Per frame and hand: the landmarker's tracking step (identities: a track keeps the side it was given),
then the steps of the fit's analytic start (``fitting.ik``, as ``fitting.fit`` initialises a clip: shape from
bone lengths, inverse kinematics from the 3D landmarks, the linear translation from the 2D keypoints; no
iterations), with the shape averaged over the first ``calibrate_frames`` frames and then frozen, and both
hands' inverse kinematics in one call (the built-in left hand is the right one mirrored in x); then a
streaming One-Euro filter on the joint rotations (quaternions) and the translation.

The landmarker is stepped one frame at a time through ``HandLandmarker._step`` (its tracking step; the
public ``iter_source`` reads frames ahead, which a live stream must not do).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..core import quat
from ..core.handmodel import rest_joints
from ..core.keypoints import NUM_BETAS, NUM_JOINTS
from ..core.live_record import LiveFrame, LiveHand


@dataclass
class LiveOptions:
    """hands: most hands (1, 2); model / mano_dir: the hand model; fov_deg: camera (None: default 55 deg);
    min_cutoff (Hz), beta, d_cutoff (Hz): the One-Euro filter of rotations and translation (min_cutoff
    inf = no smoothing); calibrate_frames: frames whose shape estimates are averaged, then frozen."""

    hands: int = 2
    model: str = "builtin"
    mano_dir: str | None = None
    fov_deg: float | None = None
    min_cutoff: float = 1.5
    beta: float = 0.3
    d_cutoff: float = 1.0
    calibrate_frames: int = 10


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


class _HandState:
    def __init__(self, model, options: LiveOptions):
        import torch

        self.model = model
        # rest keypoints are linear in beta: sample beta = 0 and the unit vectors once
        betas = torch.cat([torch.zeros(1, NUM_BETAS), torch.eye(NUM_BETAS)]).to(torch.float64)
        zero = torch.zeros(NUM_BETAS + 1, NUM_JOINTS, 3, dtype=torch.float64)
        with torch.no_grad():
            rest = model(zero, betas, zero[:, 0], with_vertices=False).keypoints.numpy()
        self.rest0, self.dirs = rest[0], (rest[1:] - rest[:1]).transpose(1, 2, 0)
        self.frames, self.limits = model.joint_frames.numpy(), model.joint_limits.numpy()
        self.betas: list[np.ndarray] = []
        self.beta = np.zeros(NUM_BETAS)
        self.rot = OneEuro(options.min_cutoff, options.beta, options.d_cutoff, rotations=True)
        self.pos = OneEuro(options.min_cutoff, options.beta, options.d_cutoff, rotations=False)
        self.last_frame: int | None = None
        self.n_calib = options.calibrate_frames

    @property
    def calibrated(self) -> bool:
        return len(self.betas) >= self.n_calib


class LiveSession:
    """One live stream: ``step(frame_index, rgb, t_read)`` -> ``LiveFrame``. Holds the landmarker's
    tracker, the side given to each track id, each side's shape calibration and filters."""

    def __init__(self, size: tuple[int, int], fps: float, options: LiveOptions | None = None, landmarker=None):
        import torch

        from .camera import intrinsics_from_options
        from .handmodel import load_hand_model
        from .landmarker import HandLandmarker, LandmarkerOptions
        from .tracking import TrackerState

        self.options = options or LiveOptions()
        self.size, self.fps = (int(size[0]), int(size[1])), float(fps)
        self.k = intrinsics_from_options(*self.size, fov_deg=self.options.fov_deg)
        self.landmarker = landmarker or HandLandmarker(
            LandmarkerOptions(max_hands=self.options.hands, device="cpu", tracking=True)
        )
        self.tracker = TrackerState(self.options.hands, tracking=True)
        self.models = {
            s: load_hand_model(self.options.model, s, mano_dir=self.options.mano_dir, dtype=torch.float64)
            for s in ("right", "left")
        }
        self.mirror_left = self.options.model == "builtin"  # built-in left = right mirrored: one IK call
        self.hands = {s: _HandState(m, self.options) for s, m in self.models.items()}
        self.side_of_track: dict[int, str] = {}

    def _sides(self, observations) -> list[tuple[object, str]]:
        """Each observation with a side that stays with its track id; a new track takes its own side
        unless another hand of this frame holds it."""
        live = {h.track_id for h in observations}
        self.side_of_track = {t: s for t, s in self.side_of_track.items() if t in live}
        taken = {self.side_of_track[h.track_id] for h in observations if h.track_id in self.side_of_track}
        out = []
        for h in sorted(observations, key=lambda o: -o.presence):
            side = self.side_of_track.get(h.track_id)
            if side is None:
                side = h.side if h.side not in taken else ("left" if h.side == "right" else "right")
                if side in taken:
                    continue  # a third hand
                self.side_of_track[h.track_id] = side
                taken.add(side)
            out.append((h, side))
        return out

    def _model_points(self, side: str, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(N, 21, 3) keypoints of ``side``'s model at transl 0 (joints-only torch path, float64)."""
        import torch

        th = torch.as_tensor(theta, dtype=torch.float64)
        bt = torch.as_tensor(np.broadcast_to(beta, (len(theta), NUM_BETAS)).copy(), dtype=torch.float64)
        with torch.no_grad():
            return self.models[side](th, bt, th[:, 0] * 0, with_vertices=False).keypoints.numpy()

    def _solve(self, seen: list[tuple[object, str]], frame: int) -> dict[str, LiveHand]:
        """The fit's analytic start for every hand of the frame at once: shape (until calibrated), inverse
        kinematics from the 3D landmarks, linear translation from the 2D keypoints; then the filters."""
        from ..core import anatomy
        from .fitting import ik
        from .fitting.fit import HandObservations, world_in_camera

        if not seen:
            return {}
        k = self.k.matrix
        worlds, rests, sides = [], [], []
        for obs, side in seen:
            st = self.hands[side]
            if not st.calibrated:
                st.betas.append(ik.fit_shape(st.rest0, st.dirs, obs.world[None]))
                st.beta = np.mean(st.betas, 0)
            ho = HandObservations(obs.kp2d[None], np.ones((1, 21)), obs.world[None], np.ones(1, bool))
            w, r = world_in_camera(ho, k)[0], st.rest0 + st.dirs @ st.beta
            if self.mirror_left and side == "left":  # the left model is the right one mirrored in x
                w, r = w * _MIRROR, r * _MIRROR
            worlds.append(w)
            rests.append(r)
            sides.append(side)
        ref = "right" if self.mirror_left else None
        theta = np.zeros((len(seen), NUM_JOINTS, 3))
        groups = [list(range(len(seen)))] if ref else [[i] for i in range(len(seen))]
        for g in groups:
            m = self.models[ref or sides[g[0]]]
            theta[g] = ik.ik_from_world(
                np.stack([worlds[i] for i in g]),
                np.stack([rests[i] for i in g]),
                m.joint_frames.numpy(),
                m.parents.numpy().astype(int),
            )
        out = {}
        for i, (obs, side) in enumerate(seen):
            st, m = self.hands[side], self.models[side]
            th = theta[i] * _MIRROR_ROTVEC if (ref and side == "left") else theta[i]
            th[1:] = anatomy.clamp_to_limits(th[1:], st.frames[1:], st.limits[1:])
            posed = self._model_points(side, th[None], st.beta)
            posed = posed - posed[:, :1]
            conf = np.ones((1, 21))
            wrist = ik.solve_translation(posed, obs.kp2d[None], conf, k)[0]
            z_size = ik.depth_from_size(posed, obs.kp2d[None], conf, float(k[0, 0]))[0]
            if not np.all(np.isfinite(wrist)) or not 0.3 * z_size < wrist[2] < 3.0 * z_size:
                c2d, c3d = obs.kp2d.mean(0), posed[0].mean(0)
                ray = np.array([(c2d[0] - k[0, 2]) / k[0, 0], (c2d[1] - k[1, 2]) / k[1, 1], 1.0])
                wrist = ray * z_size - c3d
            transl = wrist - rest_joints(m.data, st.beta)[0]
            dt = 1.0 / self.fps if st.last_frame is None else (frame - st.last_frame) / self.fps
            if st.last_frame is None or frame - st.last_frame > max(3, self.fps / 2):
                st.rot.prev = st.pos.prev = None  # the hand was lost: start the filters afresh
            st.last_frame = frame
            th = quat.log(st.rot(quat.exp(th), dt))
            transl = st.pos(transl[None], dt)[0]
            kp3d = self._model_points(side, th[None], st.beta)[0] + transl
            out[side] = LiveHand(th, transl, st.beta.copy(), obs.kp2d, kp3d, float(obs.presence), st.calibrated)
        return out

    def step(self, frame: int, rgb: np.ndarray, t_read: float) -> LiveFrame:
        result = self.landmarker._step([self.tracker], [rgb], [frame])[0]
        hands = self._solve(self._sides(result.hands), frame)
        k = self.k
        return LiveFrame(frame, t_read, time.monotonic(), hands, self.fps, self.size, (k.fx, k.fy, k.cx, k.cy))


def run(source, options: LiveOptions | None = None, on_frame=None, max_seconds: float | None = None) -> list[LiveFrame]:
    """Read ``source`` (a ``sources.LiveSource``) to its end (or for ``max_seconds``), step every frame it
    delivers and pass each ``LiveFrame`` to ``on_frame``; returns them all."""
    session = LiveSession(source.size, source.fps, options)
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


def main(argv: list[str] | None = None) -> int:
    from .sources import SourceError, open_live

    p = argparse.ArgumentParser(prog="python -m handcap.inference.live", description=__doc__.split("\n")[0])
    p.add_argument("source", help="camera index (0) or stream/video path")
    p.add_argument("--virtual", action="store_true", help="play a video file at its own frame rate")
    p.add_argument("--hands", type=int, choices=(1, 2), default=2)
    p.add_argument("--model", choices=("builtin", "mano"), default="builtin")
    p.add_argument("--mano-dir")
    p.add_argument("--fov", type=float)
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = p.parse_args(argv)
    opts = LiveOptions(hands=args.hands, model=args.model, mano_dir=args.mano_dir, fov_deg=args.fov)
    try:
        source = open_live(args.source, virtual=args.virtual)
    except SourceError as exc:
        print(f"handcap live: error: {exc}", file=sys.stderr)
        return 2

    def emit(frame: LiveFrame) -> None:
        sys.stdout.write(frame.to_json() + "\n")
        sys.stdout.flush()

    with source:
        run(source, opts, emit, args.seconds)
    return 0


__all__ = ["LiveOptions", "LiveSession", "OneEuro", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
