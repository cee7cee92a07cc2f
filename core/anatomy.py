"""Anatomical joint frames and range-of-motion limits of the 16 MANO joints (numpy only).

A joint frame is a rotation matrix whose COLUMNS are the joint's local axes in
template coordinates (the same frames serve as Blender bone axes):

* y: along the bone, from the joint toward its child joint (the fingertip for
  the distal joints; the middle-finger MCP for the wrist);
* z: the palmar direction (the way the bone's tip moves when the finger curls),
  made orthogonal to y; for the thumb it leans toward the little finger
  (``THUMB_PAD_ANGLE``) because the thumb curls across the palm;
* x = y cross z: the flexion axis. Positive rotation about x moves y toward z,
  i.e. CURLS the finger toward the palm, on both hands.

Because each hand's frames are right-handed, mirrored motion of the left hand has
the same flexion (x) but opposite twist (y) and abduction (z) components; the
left-hand limits are mirrored accordingly. On the right hand, positive z rotation
swings a finger toward the little-finger (ulnar) side; on the left hand toward
the thumb (radial) side.

Pose vectors are MANO axis-angle rows in template axes. The same rotation in a
joint's local frame is ``frames[j].T @ theta[j]`` (see ``to_local``); limits are
boxes on that local rotation vector: (16, 3, 2) radians, [..., 0] min, [..., 1] max,
relative to the model's flat rest pose. Sources are listed in docs/hand-model.md.
"""

from __future__ import annotations

import numpy as np

from .keypoints import NUM_JOINTS, ManoJoint

#: How far (radians) the thumb's curl direction leans from the palm normal toward the little finger.
THUMB_PAD_ANGLE = np.radians(50.0)

#: Fingers as (MCP, PIP, DIP) joint triples in MANO order, and their index into the 5 tips (thumb first).
_CHAINS = {
    "thumb": ((13, 14, 15), 0),
    "index": ((1, 2, 3), 1),
    "middle": ((4, 5, 6), 2),
    "ring": ((10, 11, 12), 3),
    "pinky": ((7, 8, 9), 4),
}


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError("degenerate hand skeleton: two joints coincide")
    return v / n


def _check_side(side: str) -> float:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    return 1.0 if side == "right" else -1.0


def palm_normal(rest_joints: np.ndarray, side: str) -> np.ndarray:
    """Unit palmar normal (pointing out of the palm) from the wrist, index MCP and little MCP."""
    j = np.asarray(rest_joints, dtype=np.float64)
    s = _check_side(side)
    a = j[ManoJoint.INDEX1] - j[ManoJoint.WRIST]
    b = j[ManoJoint.PINKY1] - j[ManoJoint.WRIST]
    return _unit(s * np.cross(a, b))


def joint_frames_from_rest(rest_joints: np.ndarray, side: str, tips: np.ndarray | None = None) -> np.ndarray:
    """Local joint frames (16, 3, 3), columns x (flexion axis), y (bone), z (palmar), in template axes.

    Args:
        rest_joints: (16, 3) rest joints J(beta) in MANO order, metres.
        side: "right" or "left" (decides which way the palm faces).
        tips: optional (5, 3) rest fingertips (thumb, index, middle, ring, pinky). Without
            them a distal joint's y axis continues its parent bone.
    """
    j = np.asarray(rest_joints, dtype=np.float64)
    if j.shape != (NUM_JOINTS, 3):
        raise ValueError(f"rest_joints must have shape (16, 3), got {j.shape}")
    if tips is not None:
        tips = np.asarray(tips, dtype=np.float64)
        if tips.shape != (5, 3):
            raise ValueError(f"tips must have shape (5, 3), got {tips.shape}")
    n = palm_normal(j, side)
    ulnar = _unit(j[ManoJoint.PINKY1] - j[ManoJoint.INDEX1])
    thumb_pad = _unit(np.cos(THUMB_PAD_ANGLE) * n + np.sin(THUMB_PAD_ANGLE) * ulnar)
    y = np.zeros((NUM_JOINTS, 3))
    z_hint = np.tile(n, (NUM_JOINTS, 1))
    y[ManoJoint.WRIST] = _unit(j[ManoJoint.MIDDLE1] - j[ManoJoint.WRIST])
    for finger, (chain, tip_index) in _CHAINS.items():
        for k, joint in enumerate(chain):
            if k < 2:
                y[joint] = _unit(j[chain[k + 1]] - j[joint])
            elif tips is not None:
                y[joint] = _unit(tips[tip_index] - j[joint])
            else:
                y[joint] = _unit(j[joint] - j[chain[k - 1]])
            if finger == "thumb":
                z_hint[joint] = thumb_pad
    # Gram-Schmidt: z is the palmar hint with its along-bone part removed.
    z = _unit(z_hint - np.sum(z_hint * y, axis=-1, keepdims=True) * y)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)


def _deg(lo: float, hi: float) -> tuple[float, float]:
    return float(np.radians(lo)), float(np.radians(hi))


# Right hand, degrees, (flexion x, twist y, abduction z); z > 0 = toward the little finger.
# Flexion from AAOS / Hume et al. 1990 (see docs/hand-model.md); twist and abduction at the
# PIP/DIP are small passive play so the fit can absorb soft-tissue and keypoint noise.
_FINGER_LIMITS_DEG = {
    # joint: ((flex min, max), (twist min, max), (abduction min, max))
    "mcp": ((-45.0, 95.0), (-15.0, 15.0), None),
    "pip": ((-10.0, 110.0), (-10.0, 10.0), (-10.0, 10.0)),
    "dip": ((-20.0, 90.0), (-10.0, 10.0), (-10.0, 10.0)),
}
_MCP_ABDUCTION_DEG = {"index": (-25.0, 20.0), "middle": (-20.0, 20.0), "ring": (-20.0, 20.0), "pinky": (-15.0, 35.0)}
_THUMB_LIMITS_DEG = (
    # CMC (saddle joint): generous so that opposition (thumb tip to little fingertip) is reachable.
    ((-40.0, 70.0), (-30.0, 50.0), (-40.0, 50.0)),
    # MCP
    ((-20.0, 60.0), (-15.0, 15.0), (-15.0, 15.0)),
    # IP
    ((-20.0, 80.0), (-10.0, 10.0), (-10.0, 10.0)),
)
#: The root row is the global orientation: not limited (a box wider than any rotation vector).
ROOT_LIMIT = 2.0 * np.pi


def default_joint_limits(side: str) -> np.ndarray:
    """Default anatomical limits (16, 3, 2) in radians for ``side``, in that side's joint frames."""
    s = _check_side(side)
    lim = np.zeros((NUM_JOINTS, 3, 2))
    lim[ManoJoint.WRIST] = [[-ROOT_LIMIT, ROOT_LIMIT]] * 3
    for finger, (chain, _) in _CHAINS.items():
        for k, joint in enumerate(chain):
            if finger == "thumb":
                rows = _THUMB_LIMITS_DEG[k]
            else:
                flex, twist, abd = _FINGER_LIMITS_DEG[("mcp", "pip", "dip")[k]]
                rows = (flex, twist, abd if abd is not None else _MCP_ABDUCTION_DEG[finger])
            lim[joint] = [_deg(*r) for r in rows]
    if s < 0:
        # Mirrored motion keeps flexion and flips twist and abduction: [lo, hi] -> [-hi, -lo].
        lim[:, 1:] = -lim[:, 1:, ::-1]
    return lim


def to_local(theta: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(..., 16, 3) template-axis rotation vectors -> the same rotations in the joint frames."""
    return np.einsum("jki,...jk->...ji", np.asarray(frames, np.float64), np.asarray(theta, np.float64))


def from_local(local: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Inverse of ``to_local``."""
    return np.einsum("jik,...jk->...ji", np.asarray(frames, np.float64), np.asarray(local, np.float64))


def limit_violation(theta: np.ndarray, frames: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """How far (radians, >= 0) each local rotation component lies outside its limits.

    Args:
        theta: (..., 16, 3) MANO axis-angle rows (template axes).
        frames: (16, 3, 3) joint frames (columns = local axes).
        limits: (16, 3, 2) [min, max] per local component.

    Returns:
        (..., 16, 3) violation, 0 inside the box.
    """
    local = to_local(theta, frames)
    lim = np.asarray(limits, np.float64)
    return np.maximum(lim[..., 0] - local, 0.0) + np.maximum(local - lim[..., 1], 0.0)


def clamp_to_limits(theta: np.ndarray, frames: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Project each local rotation vector into its limit box (componentwise) and return template axes."""
    lim = np.asarray(limits, np.float64)
    local = np.clip(to_local(theta, frames), lim[..., 0], lim[..., 1])
    return from_local(local, frames)
