"""Every name HandCap gives to Blender data, in one place (no bpy here).

Bones follow Blender's mirroring convention (``.L`` / ``.R`` suffixes) and the
Rigify metarig's words (``hand``, ``thumb.01`` ...), so X-mirror and name-based
retargeting work. The bone of MANO joint j runs from joint j to its child (or to
the fingertip for the last segment); the ``.tip`` bones start at the fingertips.
"""

from __future__ import annotations

from pathlib import PurePath

from .keypoints import FINGERS, ManoJoint

SIDE_SUFFIX = {"left": "L", "right": "R"}

# MANO joints of each finger, proximal to distal.
FINGER_JOINTS = {
    "thumb": (ManoJoint.THUMB1, ManoJoint.THUMB2, ManoJoint.THUMB3),
    "index": (ManoJoint.INDEX1, ManoJoint.INDEX2, ManoJoint.INDEX3),
    "middle": (ManoJoint.MIDDLE1, ManoJoint.MIDDLE2, ManoJoint.MIDDLE3),
    "ring": (ManoJoint.RING1, ManoJoint.RING2, ManoJoint.RING3),
    "pinky": (ManoJoint.PINKY1, ManoJoint.PINKY2, ManoJoint.PINKY3),
}

PROP_PREFIX = "handcap_"  # custom properties on objects and pose bones


def suffix(side: str) -> str:
    try:
        return SIDE_SUFFIX[side]
    except KeyError:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}") from None


def joint_bone(joint: int, side: str) -> str:
    """Bone driven by MANO joint ``joint`` (0..15)."""
    j = ManoJoint(joint)
    if j == ManoJoint.WRIST:
        return f"hand.{suffix(side)}"
    for finger, joints in FINGER_JOINTS.items():
        if j in joints:
            return f"{finger}.{joints.index(j) + 1:02d}.{suffix(side)}"
    raise AssertionError(j)


def tip_bone(finger: str, side: str) -> str:
    if finger not in FINGERS:
        raise ValueError(f"unknown finger {finger!r}")
    return f"{finger}.tip.{suffix(side)}"


def joint_bones(side: str) -> list[str]:
    """The 16 joint bones in MANO joint order."""
    return [joint_bone(j, side) for j in range(16)]


def tip_bones(side: str) -> list[str]:
    """The 5 tip bones in FINGERS order (thumb, index, middle, ring, pinky)."""
    return [tip_bone(f, side) for f in FINGERS]


def all_bones(side: str) -> list[str]:
    return joint_bones(side) + tip_bones(side)


def clip_stem(source: str) -> str:
    stem = PurePath(source).stem or "capture"
    return stem.replace("%", "").replace("#", "")[:40] or "capture"


def armature_name(source: str, side: str) -> str:
    return f"HC_{clip_stem(source)}.{suffix(side)}"


def armature_data_name(source: str, side: str) -> str:
    return f"HC_{clip_stem(source)}_rig.{suffix(side)}"


def mesh_name(source: str, side: str) -> str:
    return f"HC_{clip_stem(source)}_mesh.{suffix(side)}"


def action_name(source: str, side: str) -> str:
    """Blender makes it unique (.001 ...) when it exists, so re-runs never overwrite."""
    return f"HC_{clip_stem(source)}_{suffix(side)}"


def collection_name(source: str) -> str:
    return f"HandCap {clip_stem(source)}"


def camera_name(source: str) -> str:
    return f"HC_{clip_stem(source)}_camera"


def camera_space_name(source: str) -> str:
    """Empty that maps the capture's OpenCV camera frame into the Blender world (armatures are its children)."""
    return f"HC_{clip_stem(source)}_camera_space"
