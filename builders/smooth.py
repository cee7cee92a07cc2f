"""Non-destructive smoothing of an imported hand: ``smooth_armature`` / ``reset_smoothing``.

The first time a hand is smoothed, its action is copied to a hidden raw action
(``.<action>_raw``) referenced from the armature's smoothing settings. Every smoothing
run re-bakes the pose channels of the CURRENT action from that raw copy and the
settings, so it can be repeated with other settings any number of times, and
``reset_smoothing`` puts the raw keys back. Only the 16 joint bones' ``rotation_quaternion``
and the wrist's ``location`` curves are rewritten; other curves (visibility, confidence,
anything the user added) are left alone. A re-import assigns a new action; the next
smoothing run then takes a fresh raw copy of it.

Positions for the readouts are the 21 bone heads in armature space (the capture's camera
frame, metres), from Blender's own pose chain (``convention.blender_pose_matrices``).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..core import naming
from ..core import rig_props as rp
from ..core.keypoints import MANO_TO_KEYPOINTS
from ..core.smoothing import (
    MANO_JOINT_GROUPS,
    Motion,
    SmoothingError,
    SmoothingReport,
    SmoothingSettings,
    smooth_motion,
)
from . import compat, convention, keys

#: Fewest keyed frames for which new hands get smoothed on import (a photo or a glimpse has no motion).
MIN_SMOOTH_FRAMES = 3
VISIBLE_PATH = f'["{rp.VISIBLE.key}"]'
CONFIDENCE_PATH = f'["{rp.CONFIDENCE.key}"]'


class SmoothMotionError(ValueError):
    """The object cannot be smoothed (not a HandCap hand, nothing captured, raw data lost)."""


@dataclass
class ArmatureMotion:
    """Pose channels of a HandCap armature sampled on its captured frames.

    Attributes:
        frames: (T,) float64 scene frames of the capture (every captured frame, hand or not).
        motion: rotations (T, 16, 4) = ``rotation_quaternion`` of the joint bones (bone axes),
            loc (T, 3) = wrist ``location`` (wrist bone axes, metres), valid = ``handcap_visible``,
            conf = ``handcap_confidence``.
        interpolation: the keyframe interpolation the pose curves had.
        keyed: (T,) bool, frames with pose keys (after smoothing also the bridged gaps, which stay
            not visible: ``motion.valid`` is what was captured).
    """

    frames: np.ndarray
    motion: Motion
    interpolation: str
    keyed: np.ndarray


def is_hand_armature(obj) -> bool:
    return obj is not None and obj.type == "ARMATURE" and rp.SIDE.read(obj) in naming.SIDE_SUFFIX


def hand_armature_of(obj):
    """The HandCap armature of ``obj``: itself, or the armature its hand mesh is parented to; else None."""
    for candidate in (obj, getattr(obj, "parent", None)):
        if is_hand_armature(candidate):
            return candidate
    return None


def hand_armatures(context) -> list:
    """HandCap armatures of the selected objects (a selected hand mesh counts), else of the active object."""
    found = []
    for obj in list(context.selected_objects) or [context.active_object]:
        arm = hand_armature_of(obj)
        if arm is not None and arm not in found:
            found.append(arm)
    return found


def _bag(action, obj):
    return compat.channelbag(action, compat.slot_in(action, obj))


def _keys(bag, path: str, index: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    fc = bag.fcurves.find(path, index=index) if bag is not None else None
    if fc is None or len(fc.keyframe_points) == 0:
        return None
    co = np.empty(2 * len(fc.keyframe_points), dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    co = co.reshape(-1, 2).astype(np.float64)
    return co[:, 0], co[:, 1]


def _bone_paths(side: str) -> tuple[list[str], str]:
    esc = bpy.utils.escape_identifier
    rot = [f'pose.bones["{esc(b)}"].rotation_quaternion' for b in naming.joint_bones(side)]
    return rot, f'pose.bones["{esc(naming.joint_bone(0, side))}"].location'


def read_motion(obj, action) -> ArmatureMotion:
    """Sample ``action``'s HandCap channels on the captured frames (see ``ArmatureMotion``)."""
    side = rp.SIDE.read(obj)
    bag = _bag(action, obj)
    rot_paths, loc_path = _bone_paths(side)
    visible = _keys(bag, VISIBLE_PATH)
    first = _keys(bag, rot_paths[0], 0)
    if first is None:
        raise SmoothMotionError(
            f"{obj.name}: nothing captured to smooth (the action '{action.name}' has no pose keys: "
            "the hand was never found in the footage)"
        )
    if visible is not None:
        frames, vis = visible
        valid = vis > 0.5
    else:  # an action without the visibility curve: every keyed frame counts
        frames = first[0]
        valid = np.ones(len(frames), bool)
    conf_keys = _keys(bag, CONFIDENCE_PATH)
    conf = np.interp(frames, *conf_keys) if conf_keys is not None else np.ones(len(frames))

    def sample(path, index, default):
        k = _keys(bag, path, index)
        return np.full(len(frames), default) if k is None else np.interp(frames, *k)

    rot = np.stack([np.stack([sample(p, i, float(i == 0)) for i in range(4)], -1) for p in rot_paths], 1)
    loc = np.stack([sample(loc_path, i, 0.0) for i in range(3)], -1)
    fc = bag.fcurves.find(rot_paths[0], index=0)
    keyed = np.isin(np.round(frames), np.round(first[0]))
    valid &= keyed  # a frame marked visible but never keyed is no data
    motion = Motion(rot=rot, loc=loc, valid=valid, conf=conf, groups=MANO_JOINT_GROUPS.copy())
    return ArmatureMotion(frames=frames, motion=motion, interpolation=fc.keyframe_points[0].interpolation, keyed=keyed)


def rest_pose(obj) -> tuple[np.ndarray, np.ndarray]:
    """(21, 4, 4) ``Bone.matrix_local`` in naming order (16 joints, 5 tips) and (21,) parent indices."""
    side = rp.SIDE.read(obj)
    names = naming.all_bones(side)
    bones = obj.data.bones
    missing = [n for n in names if n not in bones]
    if missing:
        raise SmoothMotionError(f"{obj.name}: not a HandCap hand rig (bones {missing[:3]} are missing)")
    rest = np.array([np.array(bones[n].matrix_local, dtype=np.float64) for n in names])
    index = {n: i for i, n in enumerate(names)}
    parents = np.array([index[bones[n].parent.name] if bones[n].parent else -1 for n in names], dtype=np.int64)
    return rest, parents


def positions_fn(rest: np.ndarray, parents: np.ndarray):
    """(rot (T, 16, 4), loc (T, 3)) -> (T, 21, 3) bone heads in HandKeypoint order, armature space."""

    def fn(rot, loc):
        t = len(rot)
        quats = np.zeros((t, len(rest), 4))
        quats[..., 0] = 1.0
        quats[:, :16] = rot
        locs = np.zeros((t, len(rest), 3))
        locs[:, 0] = loc
        pose = convention.blender_pose_matrices(rest, parents, convention.basis_matrices(quats, locs))
        return pose[:, :, :3, 3][:, MANO_TO_KEYPOINTS]

    return fn


def _write_pose(obj, action, frames, rot, loc, rot_keys, loc_keys, interpolation) -> None:
    side = rp.SIDE.read(obj)
    bag = _bag(action, obj)
    rot_paths, loc_path = _bone_paths(side)
    for fc in [fc for fc in bag.fcurves if fc.data_path in rot_paths or fc.data_path == loc_path]:
        bag.fcurves.remove(fc)
    names = naming.joint_bones(side)
    channels = []
    for j, bone in enumerate(names):
        k = rot_keys[:, j]
        channels += keys.bone_channels(bone, "rotation_quaternion", frames[k], rot[k, j], interpolation)
    channels += keys.bone_channels(names[0], "location", frames[loc_keys], loc[loc_keys], interpolation)
    keys.write_channels(action, compat.assigned_slot(obj), channels)


def raw_action(obj, create: bool = True):
    """The hidden copy of the captured keys, taken from the current action on first use.

    A new current action (re-import, user swap) gets a new raw copy: smoothing always
    re-bakes from the keys the current action had before it was first smoothed.
    """
    props = obj.handcap_smoothing
    action = obj.animation_data.action if obj.animation_data else None
    if action is None:
        raise SmoothMotionError(f"{obj.name}: no action; nothing captured to smooth")
    if props.raw_action is not None and props.raw_source == action:
        return props.raw_action
    if not create:
        return None
    raw = action.copy()
    raw.name = f".{action.name}_raw"  # a leading dot hides it from Blender's ID lists
    props.raw_action = raw  # the pointer property keeps it alive (a user)
    props.raw_source = action
    return raw


def settings_from_props(props) -> SmoothingSettings:
    defaults = SmoothingSettings()
    return SmoothingSettings.from_dict({k: getattr(props, k) for k in defaults.to_dict()})


def smooth_armature(obj, settings: SmoothingSettings | None = None) -> SmoothingReport:
    """Re-bake ``obj``'s pose keys from its raw capture with ``settings`` (default: the armature's own).

    Raises:
        SmoothMotionError / SmoothingError: not a HandCap hand, nothing captured, bad settings.
    """
    if not is_hand_armature(obj):
        raise SmoothMotionError(f"{getattr(obj, 'name', obj)!r} is not a HandCap hand armature")
    settings = settings or settings_from_props(obj.handcap_smoothing)
    settings.validate()
    raw = raw_action(obj, create=False)
    current = obj.animation_data.action if obj.animation_data else None
    if current is None:
        raise SmoothMotionError(f"{obj.name}: no action; nothing captured to smooth")
    data = read_motion(obj, raw if raw is not None else current)
    if not np.any(data.motion.valid):
        raise SmoothMotionError(f"{obj.name}: nothing captured to smooth (no frame has the hand)")
    rest, parents = rest_pose(obj)
    fps = rp.FPS.read(obj, 0.0)
    result = smooth_motion(data.motion, settings, fps, positions_fn(rest, parents))
    raw_action(obj)  # everything checked: keep the captured keys before overwriting them
    interp = "LINEAR" if settings.reduce_keys else data.interpolation
    m = result.motion
    rot, loc, rot_keys, loc_keys = _keep_unsmoothed_keys(data, m, result.rot_keys, result.loc_keys)
    _write_pose(obj, obj.animation_data.action, data.frames, rot, loc, rot_keys, loc_keys, interp)
    _store_report(obj.handcap_smoothing, result.report, smoothed=True)
    return result.report


def _keep_unsmoothed_keys(data: ArmatureMotion, smoothed: Motion, rot_keys, loc_keys):
    """Frames keyed in the raw action that smoothing left out (the capture's bridged gaps, not visible, when
    gap filling is off or the gap is longer than its max_gap) keep their raw keys: smoothing loses no key."""
    left_out = data.keyed & ~np.asarray(smoothed.valid, bool)
    rot, loc = np.array(smoothed.rot, dtype=np.float64), np.array(smoothed.loc, dtype=np.float64)
    rot[left_out], loc[left_out] = data.motion.rot[left_out], data.motion.loc[left_out]
    return rot, loc, rot_keys | left_out[:, None], loc_keys | left_out


def smooth_new_hands(armatures: dict[str, str], keyed_frames: dict[str, int]) -> dict[str, str]:
    """The armature's own (default) smoothing for hands an import just created (``ImportResult.armatures`` and
    ``keyed_frames``), each keyed on at least ``MIN_SMOOTH_FRAMES`` frames. The capture's fit leaves smoothing
    over time to this step. Returns armature name -> why it was not smoothed (its raw keys are left as they are)."""
    failed = {}
    for side, name in armatures.items():
        if keyed_frames.get(side, 0) < MIN_SMOOTH_FRAMES:
            continue
        try:
            smooth_armature(bpy.data.objects[name])
        except (SmoothMotionError, SmoothingError) as exc:
            failed[name] = str(exc)
    return failed


def reset_smoothing(obj) -> None:
    """Put the raw captured keys back (the settings are kept)."""
    if not is_hand_armature(obj):
        raise SmoothMotionError(f"{getattr(obj, 'name', obj)!r} is not a HandCap hand armature")
    raw = raw_action(obj, create=False)
    if raw is None:
        raise SmoothMotionError(f"{obj.name}: not smoothed, nothing to reset")
    data = read_motion(obj, raw)
    m = data.motion
    rot_keys = np.repeat(data.keyed[:, None], 16, axis=1)  # every raw key, bridged gaps included
    _write_pose(obj, obj.animation_data.action, data.frames, m.rot, m.loc, rot_keys, data.keyed, data.interpolation)
    obj.handcap_smoothing.is_smoothed = False


def _store_report(props, report: SmoothingReport, smoothed: bool) -> None:
    props.is_smoothed = smoothed
    props.jitter_before = report.jitter_before_mm
    props.jitter_after = report.jitter_after_mm
    props.deviation_mean = report.deviation_mean_mm
    props.deviation_max = report.deviation_max_mm
    props.filled_frames = report.filled_frames
    props.replaced_frames = report.outlier_frames + report.low_confidence_frames
    props.keys_before = report.keys_before
    props.keys_after = report.keys_after
