"""Keypoint and joint naming shared by every layer (no bpy, no torch).

Two orders matter (see README "Conventions"):

* ``HandKeypoint``: the 21-point MediaPipe / OpenPose / FreiHAND order used for
  2D and 3D keypoints everywhere in HandCap (capture files, evaluation).
* ``ManoJoint``: the 16 kinematic joints of MANO (pinky before ring), the order
  of pose theta (16 x 3 axis-angle) and of the rest joints J(beta).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class HandKeypoint(IntEnum):
    WRIST = 0
    THUMB_CMC = 1
    THUMB_MCP = 2
    THUMB_IP = 3
    THUMB_TIP = 4
    INDEX_MCP = 5
    INDEX_PIP = 6
    INDEX_DIP = 7
    INDEX_TIP = 8
    MIDDLE_MCP = 9
    MIDDLE_PIP = 10
    MIDDLE_DIP = 11
    MIDDLE_TIP = 12
    RING_MCP = 13
    RING_PIP = 14
    RING_DIP = 15
    RING_TIP = 16
    PINKY_MCP = 17
    PINKY_PIP = 18
    PINKY_DIP = 19
    PINKY_TIP = 20


class ManoJoint(IntEnum):
    WRIST = 0
    INDEX1 = 1
    INDEX2 = 2
    INDEX3 = 3
    MIDDLE1 = 4
    MIDDLE2 = 5
    MIDDLE3 = 6
    PINKY1 = 7
    PINKY2 = 8
    PINKY3 = 9
    RING1 = 10
    RING2 = 11
    RING3 = 12
    THUMB1 = 13
    THUMB2 = 14
    THUMB3 = 15


NUM_KEYPOINTS = 21
NUM_JOINTS = 16
NUM_BETAS = 10

FINGERS = ("thumb", "index", "middle", "ring", "pinky")

#: Parent of each MANO joint (-1 for the wrist root).
MANO_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], dtype=np.int64)

#: Index into the 21 rows [16 MANO joints | 5 tips (thumb, index, middle, ring, pinky)]
#: for each HandKeypoint: ``kp21 = np.concatenate([joints16, tips5])[MANO_TO_KEYPOINTS]``.
MANO_TO_KEYPOINTS = np.array([0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20], dtype=np.int64)

#: Parent of each HandKeypoint in the 21-point skeleton (-1 for the wrist).
KEYPOINT_PARENTS = np.array([-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19], dtype=np.int64)

#: Finger (index into FINGERS) of each HandKeypoint; the wrist has -1.
KEYPOINT_FINGER = np.array([-1] + [f for f in range(5) for _ in range(4)], dtype=np.int64)

#: The 20 bones of the 21-point skeleton as (parent, child) HandKeypoint pairs.
KEYPOINT_BONES = tuple((int(p), c) for c, p in enumerate(KEYPOINT_PARENTS) if p >= 0)


def mano_to_keypoints(joints16: np.ndarray, tips5: np.ndarray) -> np.ndarray:
    """(..., 16, D) joints + (..., 5, D) tips -> (..., 21, D) in HandKeypoint order."""
    return np.concatenate([joints16, tips5], axis=-2)[..., MANO_TO_KEYPOINTS, :]
