"""Retarget captured hands onto another rig: WORLD-space rotation transfer, baked into a NEW action.

Frames and maths, per mapped bone b (3x3 rotations whose columns are the bone's X, Y, Z axes):

* ``S_b`` / ``T_b``: source / target rest frames in their armature spaces (``Bone.matrix_local``).
* ``H`` (per hand): the rotation taking the source's rest palm frame onto the target's (palm frame:
  Y from the wrist to the knuckles, X from the little finger's knuckle to the index finger's).
  It decides how the two rigs' hands correspond as a whole, so twist follows the capture.
* ``Sw_b``: the smallest rotation taking the Y axis of ``H S_b`` onto ``T_b``'s Y axis. It absorbs
  different rest poses (a flat capture hand vs. a rig's relaxed, curled rest fingers).
* ``C_b = (Sw_b H S_b)^T T_b``: a constant offset in bone-local terms.

The target bone's world rotation is ``W_t,b(t) = W_s,b(t) C_b``; its Y axis (the bone direction) is
then exactly the source bone's world Y, whatever the two rigs' rest poses, bone rolls, object
transforms and hierarchies. Without wrist rotation the captured hand is first turned onto the target
hand's current (animated) orientation, ``M(t) = W_t,hand(t) C_hand^T W_s,hand(t)^T``, so only the
fingers move relative to the hand.

Blender does the conversion to each bone's channels (``PoseBone.matrix`` setter) because target
bones often sit under constraint-driven helper bones (Rigify): bones are set parents first, one
hierarchy level at a time, with a depsgraph update between levels. The result is keyed into a new
action; the target's previous action is kept (fake user) and never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Euler, Matrix, Quaternion

from ..core.retarget_map import SIDES, BoneMapping, MappingError, split_source_bone
from ..core.retarget_math import orthonormal, palm_frame, rest_offsets
from . import compat, keys
from .rig import ensure_object_mode

LOCATION_MODES = ("NONE", "RELATIVE", "WORLD")


class RetargetError(ValueError):
    """Retargeting cannot run with these rigs / this mapping; nothing was changed (message says why)."""


@dataclass
class RetargetOptions:
    """How to retarget.

    Attributes:
        wrist_rotation: the target hand bones take the captured hands' world orientation; False keeps
            the target's own (animated) hand orientation and moves the fingers relative to it.
        wrist_location: "NONE"; "RELATIVE": the target hand follows the captured wrist's motion from
            the first baked frame, times ``location_scale``; "WORLD": the target hand's head goes to
            the captured wrist's world position.
        location_scale: factor on the captured wrist motion for "RELATIVE" (rig size / hand size).
        frame_range: (first, last) scene frames to bake, inclusive; None = the frames where the
            source actions have keys (valid captured frames; one frame for a photo).
        action_name: name of the new action ("" = ``HC_<target>_retarget``; Blender adds .001 ... if taken).
        keep_other_animation: start the new action as a copy of the target's current action (body
            animation is kept), replacing only the retargeted channels.
        interpolation: keyframe interpolation of the new keys.
    """

    wrist_rotation: bool = True
    wrist_location: str = "NONE"
    location_scale: float = 1.0
    frame_range: tuple[int, int] | None = None
    action_name: str = ""
    keep_other_animation: bool = True
    interpolation: str = "LINEAR"


@dataclass
class RetargetResult:
    """What ``retarget`` did (Blender names).

    Attributes:
        target: the target armature object.
        action: the new action, assigned to the target.
        previous_action: the target's action before ("" if none); untouched, kept with a fake user.
        frames: side -> scene frames keyed for that hand, ascending (a hand lost in some frames of the
            capture gets no keys there, like the source).
        bones: target bones that received keys.
        sides: hands retargeted ("right", "left").
        skipped: source bones of the mapping that were skipped (no source armature for that hand).
        warnings: things the user should know.
    """

    target: str
    action: str
    previous_action: str
    frames: dict[str, list[int]] = field(default_factory=dict)
    bones: list[str] = field(default_factory=list)
    sides: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the core function


@dataclass
class _Pair:
    side: str
    key: str
    src_obj: bpy.types.Object
    src_bone: str
    tgt_bone: str
    level: int = 0
    offset: np.ndarray | None = None  # C_b


def retarget(
    context,
    source_armature: bpy.types.Object | Sequence[bpy.types.Object],
    target_armature: bpy.types.Object,
    mapping: BoneMapping | dict[str, str],
    options: RetargetOptions | None = None,
) -> RetargetResult:
    """Bake the captured hands' motion onto ``target_armature`` into a new action.

    Args:
        context: Blender context (its scene's frames are used).
        source_armature: one HandCap armature or several (one per hand, e.g. both from one import).
        target_armature: the rig to animate (Rigify, Mixamo, Unreal ... any armature).
        mapping: ``BoneMapping`` or HandCap bone name -> target bone name.
        options: see ``RetargetOptions``.

    Raises:
        RetargetError: not armatures, target without the mapped bones, mapping naming missing bones,
            sources without keys; raised before anything in the file changes.
    """
    options = options or RetargetOptions()
    sources = [source_armature] if isinstance(source_armature, bpy.types.Object) else list(source_armature)
    target = target_armature
    pairs, skipped = _plan(sources, target, mapping, options)
    frames = _frames(context, pairs, options)
    ensure_object_mode(context)
    warnings: list[str] = []
    _compute_offsets(pairs, target, warnings)
    constrained = [p.tgt_bone for p in _keyed(pairs, options) if _has_constraints(target.pose.bones[p.tgt_bone])]
    if constrained:
        warnings.append(
            f"constraints on {_few(constrained)} act after the baked keys and may change the result; "
            "map their controls instead"
        )
    located = _located_hands(pairs, target, options, warnings)

    scene = context.scene
    frame_before = scene.frame_current
    saved = {p.tgt_bone: _channels_of(target.pose.bones[p.tgt_bone]) for p in pairs}
    try:
        samples = _bake_samples(context, pairs, target, frames, options, located)
    finally:
        for name, values in saved.items():
            _restore_channels(target.pose.bones[name], values)
        scene.frame_set(frame_before)
    action, previous = _write_action(target, [p for p in pairs if p.side in frames], located, frames, samples, options)
    return RetargetResult(
        target=target.name,
        action=action.name,
        previous_action=previous,
        frames={side: [int(f) for f in fr] for side, fr in frames.items()},
        bones=[p.tgt_bone for p in _keyed(pairs, options)],
        sides=[s for s in SIDES if any(p.side == s for p in pairs)],
        skipped=skipped,
        warnings=warnings,
    )


def _keyed(pairs: list[_Pair], options: RetargetOptions) -> list[_Pair]:
    """Pairs whose target bone gets keys (the hand only drives the fingers without wrist rotation)."""
    return [p for p in pairs if p.key != "hand" or options.wrist_rotation]


def _is_armature(obj) -> bool:
    return isinstance(obj, bpy.types.Object) and obj.type == "ARMATURE"


def _plan(sources, target, mapping, options) -> tuple[list[_Pair], list[str]]:
    if not _is_armature(target):
        raise RetargetError(f"the target {getattr(target, 'name', target)!r} is not an armature object")
    if not sources:
        raise RetargetError("no source armature given (import a capture first)")
    for s in sources:
        if not _is_armature(s):
            raise RetargetError(f"the source {getattr(s, 'name', s)!r} is not an armature object")
        if s == target:
            raise RetargetError(f"{target.name!r} is both source and target")
    if options.wrist_location not in LOCATION_MODES:
        raise RetargetError(f"wrist_location must be one of {LOCATION_MODES}, got {options.wrist_location!r}")
    try:
        if not isinstance(mapping, BoneMapping):  # a dict, or a mapping object from another copy of HandCap
            mapping = BoneMapping.from_pairs(mapping.as_dict() if hasattr(mapping, "as_dict") else mapping)
        mapping.check()
    except MappingError as exc:
        raise RetargetError(f"bad bone mapping: {exc}") from None

    owner: dict[str, bpy.types.Object] = {}
    side_objs: dict[str, list[str]] = {}
    for s in sources:
        for b in s.data.bones:
            owner.setdefault(b.name, s)
            try:
                side_objs.setdefault(split_source_bone(b.name)[1], []).append(s.name)
            except MappingError:
                pass
    tgt_names = set(target.data.bones.keys())
    missing_tgt = mapping.missing_targets(tgt_names)
    if len(missing_tgt) == len(mapping):
        raise RetargetError(
            f"target {target.name!r} has none of the mapped bones ({_few(missing_tgt)}); it does not look like a "
            "rig with these hand bones: pick the preset that fits it, use 'Suggest Mapping', or map bones by hand"
        )
    if missing_tgt:
        raise RetargetError(f"target {target.name!r} lacks mapped bones: {_few(missing_tgt)}; fix the mapping")
    pairs, skipped, missing_src = [], [], []
    for p in mapping.pairs:
        obj = owner.get(p.source)
        if obj is None:
            (missing_src if p.side in side_objs else skipped).append(p.source)
            continue
        pairs.append(_Pair(p.side, p.key, obj, p.source, p.target))
    if missing_src:
        raise RetargetError(f"the source armature lacks mapped bones: {_few(missing_src)}")
    if not pairs:
        have = ", ".join(s.name for s in sources)
        raise RetargetError(
            f"the mapping drives no bone of the source armature(s) {have}: it maps "
            f"{'/'.join(mapping.sides())} hand bones (hand.R, index.01.R ...), which they lack"
        )
    if not options.wrist_rotation:
        hands = {p.side for p in pairs if p.key == "hand"}
        lacking = sorted({p.side for p in pairs} - hands)
        if lacking:
            raise RetargetError(
                f"keeping the target's own wrist rotation needs the hand bone mapped ({', '.join(lacking)} hand)"
            )
    # Parents first. Rigs often link a finger to the hand control through constraints rather than
    # parenting (Rigify's IK hand), so the anatomical chain (hand 0, segment k: k) orders bones too;
    # the target hierarchy can only push a bone deeper.
    mapped = {p.tgt_bone for p in pairs}
    for p in pairs:
        depth, bone = 0, target.data.bones[p.tgt_bone].parent
        while bone is not None:
            depth += bone.name in mapped
            bone = bone.parent
        p.level = max(depth, 0 if p.key == "hand" else int(p.key[-2:]))
    pairs.sort(key=lambda p: p.level)
    return pairs, skipped


def _few(names: Sequence[str], n: int = 6) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _frames(context, pairs: list[_Pair], options: RetargetOptions) -> dict[str, np.ndarray]:
    """Scene frames to key per hand."""
    sides = sorted({p.side for p in pairs}, key=SIDES.index)
    if options.frame_range is not None:
        first, last = (int(v) for v in options.frame_range)
        if last < first:
            raise RetargetError(f"frame range {first}..{last} is empty")
        return {side: np.arange(first, last + 1) for side in sides}
    out: dict[str, np.ndarray] = {}
    any_action = False
    for side in sides:
        mine = [p for p in pairs if p.side == side]
        frames: set[int] = set()
        for obj in {id(p.src_obj): p.src_obj for p in mine}.values():
            bag = _channelbag(obj)
            if bag is None:
                continue
            any_action = True
            prefixes = tuple(f'pose.bones["{bpy.utils.escape_identifier(p.src_bone)}"].' for p in mine)
            for fc in bag.fcurves:
                if fc.data_path.startswith(prefixes):
                    co = np.empty(2 * len(fc.keyframe_points), np.float32)
                    fc.keyframe_points.foreach_get("co", co)
                    frames.update(int(round(f)) for f in co[0::2])
        if frames:
            out[side] = np.array(sorted(frames))
    if not out:
        if any_action:
            raise RetargetError("the source hands have no pose keys (no frame where a hand was found)")
        # A posed but unanimated source: the current frame.
        return {side: np.array([context.scene.frame_current]) for side in sides}
    return out


def _channelbag(obj):
    return compat.assigned_channelbag(obj)


def _rest_heads(obj, names: dict[str, str]) -> dict[str, np.ndarray]:
    return {k: np.array(obj.data.bones[n].head_local, np.float64) for k, n in names.items()}


def _compute_offsets(pairs: list[_Pair], target, warnings: list[str]) -> None:
    for side in SIDES:
        mine = [p for p in pairs if p.side == side]
        if not mine:
            continue
        src_obj = mine[0].src_obj
        by_key = {p.key: p for p in mine}
        align = np.eye(3)
        frames = []
        for obj, attr in ((src_obj, "src_bone"), (target, "tgt_bone")):
            names = {k: getattr(by_key[k], attr) for k in by_key}
            # Palm frame from the hand bone's head and the fingers' first bones (from the source rig when
            # the mapping lacks the hand: both heads then come from rigs that lack nothing the source has).
            heads = _rest_heads(obj, {k: v for k, v in names.items() if k == "hand" or k.endswith(".01")})
            wrist = heads.get("hand")
            knuckles = {k.split(".")[0]: v for k, v in heads.items() if k.endswith(".01") and k != "thumb.01"}
            frames.append(None if wrist is None else palm_frame(wrist, knuckles))
        if frames[0] is not None and frames[1] is not None:
            align = frames[1] @ frames[0].T
        else:
            warnings.append(
                f"{side} hand: the mapping lacks the hand bone or two knuckles, so the hand's twist is matched "
                "per bone only"
            )
        src_rest = np.array([orthonormal(src_obj.data.bones[p.src_bone].matrix_local) for p in mine])
        tgt_rest = np.array([orthonormal(target.data.bones[p.tgt_bone].matrix_local) for p in mine])
        for p, c in zip(mine, rest_offsets(src_rest, tgt_rest, align), strict=True):
            p.offset = c


def _has_constraints(pb) -> bool:
    return any(c.enabled and c.influence > 0.0 for c in pb.constraints)


def _located_hands(pairs: list[_Pair], target, options: RetargetOptions, warnings: list[str]) -> set[str]:
    """Target hand bones whose location is transferred too."""
    if options.wrist_location == "NONE" or not options.wrist_rotation:
        if options.wrist_location != "NONE":
            warnings.append("wrist location is only transferred together with wrist rotation")
        return set()
    out = set()
    for p in pairs:
        if p.key != "hand":
            continue
        if target.data.bones[p.tgt_bone].use_connect:
            warnings.append(f"{p.tgt_bone} is connected to its parent and cannot move; location not transferred")
        else:
            out.add(p.tgt_bone)
    return out


def _world_rot(obj, pose_bone) -> np.ndarray:
    return orthonormal(np.array(obj.matrix_world) @ np.array(pose_bone.matrix))


def _bake_samples(context, pairs, target, frames, options, located) -> dict[str, list]:
    """Pose the target frame by frame and read back its channels: bone -> one ``_channels_of`` per key."""
    scene = context.scene
    samples: dict[str, list] = {p.tgt_bone: [] for p in pairs}
    start: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # RELATIVE: (source wrist, target head) at frame 1
    all_pairs = pairs
    for t in sorted(set().union(*(set(f.tolist()) for f in frames.values()))):
        pairs = [p for p in all_pairs if p.side in frames and t in frames[p.side]]
        by_side_hand = {p.side: p for p in pairs if p.key == "hand"}
        scene.frame_set(int(t))
        tgt_world = np.array(target.matrix_world)
        tgt_rot_inv = orthonormal(tgt_world).T
        src_world = {p.tgt_bone: _world_rot(p.src_obj, p.src_obj.pose.bones[p.src_bone]) for p in pairs}
        turn = {}
        if not options.wrist_rotation:
            for side, hp in by_side_hand.items():
                cur = _world_rot(target, target.pose.bones[hp.tgt_bone])
                turn[side] = cur @ hp.offset.T @ src_world[hp.tgt_bone].T
        wrist_goal = {}
        for hp in (p for p in pairs if p.tgt_bone in located):
            name = hp.tgt_bone
            src_pb = hp.src_obj.pose.bones[hp.src_bone]
            src_head = np.array(hp.src_obj.matrix_world) @ np.append(np.array(src_pb.head), 1.0)
            if options.wrist_location == "WORLD":
                goal = src_head[:3]
            else:
                if name not in start:  # first frame, nothing set yet: the target's own hand position
                    head0 = tgt_world @ np.append(np.array(target.pose.bones[name].head), 1.0)
                    start[name] = (src_head[:3], head0[:3])
                src0, head0 = start[name]
                goal = head0 + options.location_scale * (src_head[:3] - src0)
            wrist_goal[name] = (np.linalg.inv(tgt_world) @ np.append(goal, 1.0))[:3]
        level = None
        for p in _keyed(pairs, options):
            if level is not None and p.level != level:
                context.view_layer.update()  # children must see their parents' new pose
            level = p.level
            world = turn.get(p.side, np.eye(3)) @ src_world[p.tgt_bone] @ p.offset
            _set_pose_rotation(target.pose.bones[p.tgt_bone], tgt_rot_inv @ world, wrist_goal.get(p.tgt_bone))
        for p in pairs:
            pb = target.pose.bones[p.tgt_bone]
            samples[p.tgt_bone].append(_channels_of(pb))
    return samples


def _set_pose_rotation(pb, rot: np.ndarray, head: np.ndarray | None) -> None:
    """Give a pose bone an armature-space rotation, keeping its current scale and (unless given) head."""
    cur = np.array(pb.matrix)
    scale = np.linalg.norm(cur[:3, :3], axis=0)
    m = np.eye(4)
    m[:3, :3] = rot * scale
    m[:3, 3] = cur[:3, 3] if head is None else head
    pb.matrix = Matrix(m.tolist())


def _channels_of(pb) -> tuple:
    return (
        pb.rotation_mode,
        tuple(pb.rotation_quaternion),
        tuple(pb.rotation_euler),
        tuple(pb.rotation_axis_angle),
        tuple(pb.location),
    )


def _restore_channels(pb, values: tuple) -> None:
    _, quat, euler, axis_angle, loc = values
    pb.rotation_quaternion = quat
    pb.rotation_euler = euler
    pb.rotation_axis_angle = axis_angle
    pb.location = loc


def _rotation_curves(mode: str, values: Sequence[tuple]) -> tuple[str, np.ndarray]:
    """Channel name and (T, k) continuous values for a bone's rotation mode."""
    if mode == "QUATERNION":
        q = np.array([tuple(Quaternion(v[1]).normalized()) for v in values])
        dots = np.sum(q[1:] * q[:-1], axis=1)  # same hemisphere as the previous key: no long-way spins
        sign = np.concatenate([[1.0], np.cumprod(np.where(dots < 0, -1.0, 1.0))])
        return "rotation_quaternion", q * sign[:, None]
    if mode == "AXIS_ANGLE":
        arr = np.array([v[3] for v in values])
        return "rotation_axis_angle", arr
    out, prev = [], None
    for v in values:
        e = Euler(v[2], mode)
        e = e.to_matrix().to_euler(mode, prev) if prev is not None else e
        out.append(tuple(e))
        prev = e
    return "rotation_euler", np.array(out)


def _write_action(target, pairs, located, frames, samples, options) -> tuple[bpy.types.Action, str]:
    anim = target.animation_data or target.animation_data_create()
    previous = anim.action
    name = options.action_name or f"HC_{target.name}_retarget"
    channels: list[keys.Channel] = []
    paths: set[str] = set()
    keyed = _keyed(pairs, options)
    for p in keyed:
        at = np.asarray(frames[p.side], np.float64)
        values = samples[p.tgt_bone]
        mode = values[0][0]
        prop, arr = _rotation_curves(mode, values)
        bone_ch = keys.bone_channels(p.tgt_bone, prop, at, arr, options.interpolation)
        if p.tgt_bone in located:
            bone_ch += keys.bone_channels(p.tgt_bone, "location", at, np.array([v[4] for v in values]))
        channels += bone_ch
        paths.update(c.data_path for c in bone_ch)
    if previous is not None and options.keep_other_animation:
        slot_id = compat.slot_identifier(target)
        action = previous.copy()
        action.name = name
        slot = compat.assign_action(target, action, slot_id)
        bag = compat.channelbag(action, slot)
        if bag is not None:
            # Every rotation channel of a retargeted bone goes: the new keys may use another rotation mode.
            stale = [fc for fc in bag.fcurves if fc.data_path in paths or _is_rotation_of(fc.data_path, keyed)]
            for fc in stale:
                bag.fcurves.remove(fc)
    else:
        action = keys.new_action(target, name)
        slot = compat.assigned_slot(target)
    if previous is not None:
        previous.use_fake_user = True  # the user's action survives saving even with no user left
    keys.write_channels(action, slot, channels)
    return action, previous.name if previous is not None else ""


def _is_rotation_of(path: str, pairs) -> bool:
    for p in pairs:
        prefix = f'pose.bones["{bpy.utils.escape_identifier(p.tgt_bone)}"].rotation_'
        if path.startswith(prefix):
            return True
    return False
