"""Skeleton and body primitives of the built-in hand, as functions of 10 shape parameters.

Right hand, template axes (MANO's): fingers along -x, thumb toward +z, palm
normal -y (so +y is dorsal), metres. All anthropometric numbers and their sources
are listed in docs/hand-model.md. ``params`` is the beta vector: each unit is one
population standard deviation of the measure named in ``SHAPE_NAMES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Mean adult hand length (distal wrist crease to the middle fingertip), pooled sexes.
HAND_LENGTH = 0.186

SHAPE_NAMES = (
    "size",
    "palm_width",
    "palm_length",
    "finger_length",
    "thumb_length",
    "thickness",
    "finger_girth",
    "index_ring_ratio",
    "little_length",
    "phalanx_proportion",
)
#: Relative change of the named measure for one unit of beta (one standard deviation).
SHAPE_SD = np.array([0.060, 0.040, 0.030, 0.040, 0.050, 0.070, 0.060, 0.035, 0.050, 0.040])

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
#: MANO joints of each finger (proximal to distal).
CHAIN = {"thumb": (13, 14, 15), "index": (1, 2, 3), "middle": (4, 5, 6), "ring": (10, 11, 12), "pinky": (7, 8, 9)}

# Segment lengths as fractions of hand length (Buchholz, Armstrong & Goldstein 1992):
# proximal, middle, distal (joint centre to fingertip). Thumb: metacarpal, proximal, distal.
_SEGMENTS = {
    "thumb": (0.251, 0.196, 0.158),
    "index": (0.265, 0.143, 0.097),
    "middle": (0.277, 0.170, 0.108),
    "ring": (0.259, 0.165, 0.107),
    "pinky": (0.206, 0.117, 0.093),
}
# MCP joint centres relative to the wrist joint: distance along -x, lateral z, dorsal y.
_MCP = {
    "index": (0.0800, 0.0205, -0.0010),
    "middle": (0.0830, 0.0000, 0.0000),
    "ring": (0.0790, -0.0185, -0.0015),
    "pinky": (0.0710, -0.0350, -0.0040),
}
# Rest splay of each finger in the palm plane, degrees toward the thumb.
_SPLAY = {"index": 8.0, "middle": 1.0, "ring": -7.0, "pinky": -15.0}
# Thumb: CMC joint relative to the wrist, then per-segment (radial angle, palmar angle) in degrees.
_THUMB_CMC = (-0.0200, -0.0110, 0.0220)
_THUMB_DIRS = ((38.0, 10.0), (28.0, 3.0), (22.0, 0.0))
# Soft-tissue radii (metres) at MCP, PIP, DIP and near the tip (thumb: MCP, IP, tip).
_RADII = {
    "thumb": (0.0112, 0.0102, 0.0089),
    "index": (0.0100, 0.0092, 0.0082, 0.0074),
    "middle": (0.0102, 0.0094, 0.0084, 0.0076),
    "ring": (0.0097, 0.0088, 0.0079, 0.0071),
    "pinky": (0.0088, 0.0079, 0.0071, 0.0064),
}
#: Wrist joint position of the mean hand in template coordinates (so J0 is not the origin, like MANO).
WRIST = np.array([0.083, 0.004, 0.004])


@dataclass
class Skeleton:
    """Rest skeleton for one parameter vector (right hand, template axes, metres).

    Attributes:
        joints: (16, 3) MANO-order joints.
        tips: (5, 3) fingertip ends, thumb..pinky (the finger surface ends exactly here).
        radii: finger -> tuple of soft-tissue radii at the chain joints and near the tip.
        scale: overall size factor.
        thickness: dorsal-palmar thickness factor of the palm and wrist.
        palm_width: lateral factor of the palm and wrist soft tissue.
    """

    joints: np.ndarray
    tips: np.ndarray
    radii: dict[str, tuple[float, ...]]
    scale: float
    thickness: float
    palm_width: float


def _dir(radial_deg: float, palmar_deg: float) -> np.ndarray:
    a, t = np.radians(radial_deg), np.radians(palmar_deg)
    return np.array([-np.cos(a) * np.cos(t), -np.sin(t), np.sin(a) * np.cos(t)])


def skeleton(params: np.ndarray | None = None) -> Skeleton:
    """Joints, tips and radii of the hand for ``params`` (10,) in standard-deviation units."""
    p = np.zeros(10) if params is None else np.asarray(params, np.float64)
    m = 1.0 + SHAPE_SD * p  # multiplier per named measure
    size, palm_w, palm_l, finger_l, thumb_l, thick, girth = m[:7]
    ir = SHAPE_SD[7] * p[7]
    little = m[8]
    prop = SHAPE_SD[9] * p[9]
    length = HAND_LENGTH
    joints = np.zeros((16, 3))
    tips = np.zeros((5, 3))
    radii: dict[str, tuple[float, ...]] = {}
    for i, finger in enumerate(FINGERS):
        seg = np.array(_SEGMENTS[finger]) * length
        if finger == "thumb":
            seg = seg * thumb_l
            pos = np.array(_THUMB_CMC) * np.array([palm_l, 1.0, palm_w])
            dirs = [_dir(*d) for d in _THUMB_DIRS]
        else:
            seg = seg * finger_l * {"index": 1 + ir / 2, "ring": 1 - ir / 2, "pinky": little}.get(finger, 1.0)
            # Longer proximal phalanges at the expense of the two distal ones (total unchanged).
            grow = prop * seg[0]
            seg = seg + np.array([grow, -grow / 2, -grow / 2])
            dist, lat, dors = _MCP[finger]
            pos = np.array([-dist * palm_l, dors, lat * palm_w])
            dirs = [_dir(_SPLAY[finger], 0.0)] * 3
        chain = CHAIN[finger]
        for k, joint in enumerate(chain):
            joints[joint] = pos
            pos = pos + seg[k] * dirs[k]
        tips[i] = pos
        radii[finger] = tuple(float(r * size * girth) for r in _RADII[finger])
    # Scale about the template origin so the wrist J0 itself moves with size (as MANO's does).
    joints = (joints + WRIST) * size
    tips = (tips + WRIST) * size
    return Skeleton(
        joints=joints, tips=tips, radii=radii, scale=float(size), thickness=float(thick), palm_width=float(palm_w)
    )
