"""The live preview's per-frame message and its recording into a capture (numpy only: the worker writes
the messages, Blender reads them and records them).

One message per processed camera frame, one JSON line on the worker's stdout (``LiveFrame.to_json``).
A recording is the messages seen while Record was on; ``record_capture`` turns them into a ``Capture``
with the camera's frame indices and rate, so the file has the format and timing of an offline capture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .capture import CameraIntrinsics, Capture, HandTrack
from .capture_checks import key_side, track_order
from .keypoints import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS

MESSAGE = "handcap.live"


@dataclass
class LiveHand:
    """One hand in one live frame: theta (16, 3) flat-hand axis-angle, transl (3,) m, beta (10,) (frozen
    once ``calibrated``), kp2d (21, 2) px observed, kp3d (21, 3) m fitted (smoothed), conf in [0, 1]."""

    theta: np.ndarray
    transl: np.ndarray
    beta: np.ndarray
    kp2d: np.ndarray
    kp3d: np.ndarray
    conf: float
    calibrated: bool


@dataclass
class LiveFrame:
    """frame: camera frame index (0-based since the start); t_read / t_done: seconds (monotonic clock of
    the worker) when the frame was read and when its pose was ready; hands: track key ("right", "left",
    "right_2", ...) -> LiveHand; camera: fps, image size, intrinsics of the stream."""

    frame: int
    t_read: float
    t_done: float
    hands: dict[str, LiveHand] = field(default_factory=dict)
    fps: float = 0.0
    image_size: tuple[int, int] = (0, 0)
    intrinsics: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)

    def to_json(self) -> str:
        r = lambda a, d=5: np.round(np.asarray(a, np.float64), d).tolist()  # noqa: E731
        hands = {
            s: {
                "theta": r(h.theta),
                "transl": r(h.transl, 6),
                "beta": r(h.beta),
                "kp2d": r(h.kp2d, 3),
                "kp3d": r(h.kp3d, 6),
                "conf": round(float(h.conf), 4),
                "calibrated": bool(h.calibrated),
            }
            for s, h in self.hands.items()
        }
        return json.dumps(
            {
                "type": MESSAGE,
                "frame": self.frame,
                "t_read": self.t_read,
                "t_done": self.t_done,
                "fps": self.fps,
                "image_size": list(self.image_size),
                "intrinsics": list(self.intrinsics),
                "hands": hands,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LiveFrame | None:
        """A message, or None for any other line (progress, notes)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(d, dict) or d.get("type") != MESSAGE:
            return None
        hands = {
            s: LiveHand(
                np.array(h["theta"]),
                np.array(h["transl"]),
                np.array(h["beta"]),
                np.array(h["kp2d"]),
                np.array(h["kp3d"]),
                float(h["conf"]),
                bool(h["calibrated"]),
            )
            for s, h in d["hands"].items()
        }
        return cls(
            int(d["frame"]),
            float(d["t_read"]),
            float(d["t_done"]),
            hands,
            float(d["fps"]),
            tuple(d["image_size"]),
            tuple(d["intrinsics"]),
        )


def record_capture(frames: list[LiveFrame], source: str, rest_joints_of, hand_model: str = "builtin-v1") -> Capture:
    """The recorded frames as a capture (frames: the camera's indices; rows without a hand: valid False,
    holding the nearest seen pose). rest_joints_of(side, beta) -> (16, 3) rest joints of the hand model."""
    if not frames:
        raise ValueError("nothing was recorded")
    idx = np.array([f.frame for f in frames], np.int64)
    order = np.argsort(idx)
    frames = [frames[i] for i in order]
    idx = idx[order]
    t = len(frames)
    first = frames[0]
    w, h = (int(v) for v in first.image_size)
    fx, fy, cx, cy = first.intrinsics
    hands = {}
    for key in sorted({k for f in frames for k in f.hands}, key=track_order):
        side = key_side(key)
        rows = [i for i, f in enumerate(frames) if key in f.hands]
        valid = np.zeros(t, bool)
        valid[rows] = True
        last = frames[rows[-1]].hands[key]
        beta = np.asarray(last.beta, np.float64).reshape(NUM_BETAS)
        arr = {
            "theta": np.zeros((t, NUM_JOINTS, 3)),
            "transl": np.zeros((t, 3)),
            "kp2d": np.zeros((t, NUM_KEYPOINTS, 2)),
            "kp3d": np.zeros((t, NUM_KEYPOINTS, 3)),
            "conf": np.zeros(t),
        }
        nearest = np.array([min(rows, key=lambda r, i=i: (abs(r - i), r)) for i in range(t)])
        for i in range(t):
            hd = frames[nearest[i]].hands[key]
            for name in ("theta", "transl", "kp2d", "kp3d"):
                arr[name][i] = getattr(hd, name)
            arr["conf"][i] = hd.conf if valid[i] else 0.0
        hands[key] = HandTrack(
            side=side,
            theta=arr["theta"].astype(np.float32),
            beta=beta.astype(np.float32),
            transl=arr["transl"].astype(np.float32),
            kp2d=arr["kp2d"].astype(np.float32),
            kp3d=arr["kp3d"].astype(np.float32),
            frame_conf=arr["conf"].astype(np.float32),
            kp_conf=np.repeat(arr["conf"][:, None], NUM_KEYPOINTS, 1).astype(np.float32),
            valid=valid,
            rest_joints=np.asarray(rest_joints_of(side, beta), np.float32),
        )
    return Capture(
        source=source,
        frames=idx,
        fps=float(first.fps),
        image_size=(w, h),
        intrinsics=CameraIntrinsics(fx, fy, cx, cy, w, h),
        hand_model=hand_model,
        hands=hands,
        info={
            "live": {
                "frames_recorded": t,
                "latency_ms_median": round(float(np.median([1000 * (f.t_done - f.t_read) for f in frames])), 2),
            }
        },
    )
