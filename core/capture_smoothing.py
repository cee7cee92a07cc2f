"""Smoothing applied to capture files: HandTrack <-> Motion, and the hand's 3D joints by forward kinematics.

Joint positions come from the track's own skeleton (``rest_joints``, MANO chain) so
they follow the smoothed pose exactly; fingertips ride rigidly on their distal joint
with an offset measured from the fitted keypoints (``kp3d``).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from . import quat
from .capture import Capture, HandTrack
from .keypoints import FINGERS, MANO_PARENTS, HandKeypoint, mano_to_keypoints
from .lbs import global_transforms, rodrigues
from .naming import FINGER_JOINTS
from .smoothing import (
    MANO_JOINT_GROUPS,
    Motion,
    PositionsFn,
    SmoothingError,
    SmoothingReport,
    SmoothingResult,
    SmoothingSettings,
)
from .smoothing import smooth_motion as _smooth_motion

DISTAL = np.array([int(FINGER_JOINTS[f][-1]) for f in FINGERS], dtype=np.int64)
TIP_KEYPOINTS = np.array([int(HandKeypoint[f"{f.upper()}_TIP"]) for f in FINGERS], dtype=np.int64)


def _chain(rot: np.ndarray, rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rot = np.asarray(rot, np.float64)
    joints = np.broadcast_to(np.asarray(rest_joints, np.float64), (len(rot), 16, 3))
    return global_transforms(rodrigues(quat.log(rot)), joints, MANO_PARENTS)


def tip_offsets(track: HandTrack) -> np.ndarray:
    """(5, 3) fingertip offsets from their distal joints, in the distal joint's rest (template) axes.

    Median over valid frames of the fitted tips seen from the posed distal joint; without
    valid frames, 0.8 of the distal segment continued straight.
    """
    rest = np.asarray(track.rest_joints, np.float64)
    valid = np.asarray(track.valid, bool)
    if np.any(valid):
        rot = quat.exp(np.asarray(track.theta, np.float64)[valid])
        rot_g, pos_g = _chain(rot, rest)
        pos_g = pos_g + np.asarray(track.transl, np.float64)[valid][:, None]
        tips = np.asarray(track.kp3d, np.float64)[valid][:, TIP_KEYPOINTS]
        local = np.einsum("tfji,tfj->tfi", rot_g[:, DISTAL], tips - pos_g[:, DISTAL])
        return np.median(local, axis=0)
    parents = MANO_PARENTS[DISTAL]
    return 0.8 * (rest[DISTAL] - rest[parents])


def hand_positions(rot: np.ndarray, loc: np.ndarray, rest_joints: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """(T, 16, 4) MANO-order joint quaternions (template axes) + (T, 3) MANO translation
    -> (T, 21, 3) keypoints (HandKeypoint order), camera frame, metres."""
    rot_g, pos_g = _chain(rot, rest_joints)
    loc = np.asarray(loc, np.float64)[:, None]
    tip_pos = pos_g[:, DISTAL] + np.einsum("tfij,fj->tfi", rot_g[:, DISTAL], np.asarray(tips, np.float64))
    return mano_to_keypoints(pos_g + loc, tip_pos + loc)


def track_motion(track: HandTrack) -> Motion:
    """The track's pose as a Motion (rotations in MANO template axes, location = ``transl``)."""
    return Motion(
        rot=quat.exp(np.asarray(track.theta, np.float64)),
        loc=np.asarray(track.transl, np.float64),
        valid=np.asarray(track.valid, bool),
        conf=np.asarray(track.frame_conf, np.float64),
        groups=MANO_JOINT_GROUPS.copy(),
    )


def track_positions_fn(track: HandTrack) -> PositionsFn:
    rest = np.asarray(track.rest_joints, np.float64)
    tips = tip_offsets(track)
    return lambda rot, loc: hand_positions(rot, loc, rest, tips)


def smooth_track(track: HandTrack, settings: SmoothingSettings, fps: float) -> tuple[HandTrack, SmoothingResult]:
    """Smooth one track. The new track has the smoothed ``theta``/``transl``, ``valid`` widened by
    the filled gaps and ``kp3d`` recomputed from the smoothed pose; observations (``kp2d``,
    confidences) stay as captured."""
    result = _smooth_motion(track_motion(track), settings, fps, track_positions_fn(track))
    m = result.motion
    new = replace(
        track,
        theta=quat.log(m.rot).astype(np.float32),
        transl=m.loc.astype(np.float32),
        kp3d=np.where(m.valid[:, None, None], result.positions, track.kp3d).astype(np.float32),
        valid=m.valid.copy(),
    )
    return new, result


def smooth_capture(capture: Capture, settings: SmoothingSettings) -> tuple[Capture, dict[str, SmoothingReport]]:
    """Smooth every hand of a capture (hands never found are left as they are).

    The copy records the settings and readouts in ``info["smoothing"]``."""
    out = copy.deepcopy(capture)
    reports = {}
    for side, track in capture.hands.items():
        if not np.any(track.valid):
            continue  # a hand never found stays as it is; smoothing it would be an error
        out.hands[side], result = smooth_track(track, settings, capture.fps)
        reports[side] = result.report
    if not reports:
        raise SmoothingError("nothing captured to smooth: no hand of the capture has a frame with a pose")
    out.info["smoothing"] = {
        "settings": settings.to_dict(),
        "reports": {s: {k: float(v) for k, v in vars(r).items()} for s, r in reports.items()},
    }
    return out, reports
