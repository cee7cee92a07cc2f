"""Retargeting captured hands onto real rigs inside bpy: a Rigify rig generated here by bpy's own Rigify,
and a Mixamo-named character with its own rest pose, bone rolls and rotation modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from .retarget_rigs import (
    build_mixamo_rig,
    direction_errors_deg,
    generate_rigify_rig,
    synthetic_capture,
    world_direction,
)

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def rigify_blend(blender, tmp_path_factory):
    """A .blend holding a generated Rigify rig (generated once per module, opened by each test)."""
    import addon_utils

    bpy = blender.bpy
    bpy.ops.wm.read_homefile(use_empty=True)
    name = generate_rigify_rig(bpy)
    path = tmp_path_factory.mktemp("rigify") / "rigify_rig.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    yield path, name
    addon_utils.disable("rigify", default_set=True)


def _import(hc, **kw):
    bpy = hc.bpy
    imp = hc.mod("builders.importer")
    capture = synthetic_capture(cap=hc.mod("core.capture"), **kw)
    res = imp.import_capture(bpy.context, capture, imp.ImportOptions(with_mesh=False))
    return [bpy.data.objects[res.armatures[s]] for s in ("right", "left") if s in res.armatures], res


def _rigify(hc, rigify_blend):
    path, name = rigify_blend
    hc.bpy.ops.wm.open_mainfile(filepath=str(path))
    return hc.bpy.data.objects[name]


def _suggest(hc, target):
    bones = {b.name: b.parent.name if b.parent else None for b in target.data.bones}
    return hc.mod("core.retarget_suggest").suggest_mapping(bones)


def _fcurves(hc, obj):
    bag = hc.mod("builders.compat").assigned_channelbag(obj)
    return list(bag.fcurves) if bag is not None else []


def test_rigify_rig_follows_every_finger_segment(hc, rigify_blend):
    rig = _rigify(hc, rigify_blend)
    sources, imported = _import(hc, n_frames=8)
    suggestion = _suggest(hc, rig)
    assert suggestion.source == "preset:rigify" and not suggestion.missing
    assert suggestion.mapping.as_dict()["index.01.L"] == "f_index.01.L"
    assert suggestion.mapping.as_dict()["hand.R"] == "hand_ik.R"

    rt = hc.mod("builders.retarget")
    n_actions = len(hc.bpy.data.actions)
    result = rt.retarget(hc.bpy.context, sources, rig, suggestion.mapping)
    assert len(hc.bpy.data.actions) == n_actions + 1 and result.previous_action == ""
    assert rig.animation_data.action.name == result.action
    # The right hand was lost on capture frame 3: no keys there, like the source.
    assert len(result.frames["right"]) == imported.keyed_frames["right"] == 7
    assert len(result.frames["left"]) == 8
    for side in ("right", "left"):
        # Measured on the DEF- bones (what the character's mesh follows), not on the keyed controls.
        err = direction_errors_deg(hc.bpy, sources, rig, suggestion.mapping, result.frames[side])
        mine = [i for i, p in enumerate(p for p in suggestion.mapping.pairs if p.key != "hand") if p.side == side]
        err = err[:, mine]
        assert err.shape == (len(result.frames[side]), 15)
        assert err.max() < 10.0 and err.mean() < 5.0, (side, err.max(), err.mean())
    # The source poses really vary (a test on a still hand would prove little).
    d1 = _source_dirs(hc, sources[1], [1, 5])
    assert max(math.degrees(math.acos(np.clip(a @ b, -1, 1))) for a, b in zip(*d1, strict=True)) > 30.0


def _source_dirs(hc, obj, frames):
    out = []
    for f in frames:
        hc.bpy.context.scene.frame_set(f)
        out.append([world_direction(obj, b.name) for b in obj.data.bones if ".0" in b.name])
    return out


def test_mixamo_rig_with_other_rest_pose_and_rolls_keeps_users_action(hc):
    bpy = hc.bpy
    rig = bpy.data.objects[build_mixamo_rig(bpy)]
    # The user's own animation on the rig: must survive untouched, and stay in the new action too.
    compat = hc.mod("builders.compat")  # Blender 4.2 has no action slots
    user = compat.new_action(rig, "user_walk")
    slot_id = compat.slot_identifier(rig)
    spine = rig.pose.bones["mixamorig:Spine"]
    spine.rotation_mode = "XYZ"
    for f, angle in ((1, 0.0), (8, 0.3)):
        spine.rotation_euler = (angle, 0.0, 0.0)
        spine.keyframe_insert("rotation_euler", frame=f)
    finger = rig.pose.bones["mixamorig:LeftHandIndex1"]
    finger.keyframe_insert("rotation_quaternion" if finger.rotation_mode == "QUATERNION" else "rotation_euler", frame=1)
    user_curves = sorted((fc.data_path, fc.array_index) for fc in _fcurves(hc, rig))

    sources, _ = _import(hc, n_frames=8)
    suggestion = _suggest(hc, rig)
    assert suggestion.source == "preset:mixamo" and not suggestion.missing
    rt = hc.mod("builders.retarget")
    result = rt.retarget(bpy.context, sources, rig, suggestion.mapping)

    assert result.previous_action == "user_walk" and user.use_fake_user
    compat.assign_action(rig, user, slot_id)
    assert sorted((fc.data_path, fc.array_index) for fc in _fcurves(hc, rig)) == user_curves
    compat.assign_action(rig, bpy.data.actions[result.action])
    paths = {fc.data_path for fc in _fcurves(hc, rig)}
    assert 'pose.bones["mixamorig:Spine"].rotation_euler' in paths  # body animation kept
    for pb in rig.pose.bones:
        if "Hand" in pb.name and not pb.name.endswith("4"):
            prop = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(
                pb.rotation_mode, "rotation_euler"
            )
            assert f'pose.bones["{pb.name}"].{prop}' in paths, pb.name
    for side in ("right", "left"):
        err = direction_errors_deg(bpy, sources, rig, suggestion.mapping, result.frames[side])
        assert err.max() < 10.0 and err.mean() < 5.0, (side, err.max(), err.mean())
    # The hands too (world rotation transfer includes the wrist).
    err = direction_errors_deg(bpy, sources, rig, suggestion.mapping, result.frames["left"], keys=("hand",))
    assert err.max() < 1.0


def test_single_photo_pose_and_fingers_relative_to_the_rigs_own_hand(hc):
    bpy = hc.bpy
    rig = bpy.data.objects[build_mixamo_rig(bpy)]
    sources, imported = _import(hc, n_frames=1, invalid_right=())
    mapping = _suggest(hc, rig).mapping
    rt = hc.mod("builders.retarget")
    hand = rig.pose.bones["mixamorig:LeftHand"]
    before = np.array(rig.matrix_world @ hand.matrix)
    result = rt.retarget(bpy.context, sources, rig, mapping, rt.RetargetOptions(wrist_rotation=False))
    assert result.frames == {"right": [1], "left": [1]}
    assert "mixamorig:LeftHand" not in result.bones and "mixamorig:LeftHandIndex1" in result.bones
    bpy.context.scene.frame_set(1)
    np.testing.assert_allclose(np.array(rig.matrix_world @ hand.matrix), before, atol=1e-5)
    # Fingers relative to the hand: angles between consecutive segments equal the capture's.
    by_side = {"right": sources[0], "left": sources[1]}
    d = mapping.as_dict()
    for side in ("right", "left"):
        s = side[0].upper()
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            for a, b in ((f"{finger}.01.{s}", f"{finger}.02.{s}"), (f"{finger}.02.{s}", f"{finger}.03.{s}")):
                src = np.dot(world_direction(by_side[side], a), world_direction(by_side[side], b))
                tgt = np.dot(world_direction(rig, d[a]), world_direction(rig, d[b]))
                assert abs(math.degrees(math.acos(np.clip(src, -1, 1)) - math.acos(np.clip(tgt, -1, 1)))) < 1.0


def test_wrist_location_moves_rigify_ik_hand_onto_the_captured_wrist(hc, rigify_blend):
    bpy = hc.bpy
    rig = _rigify(hc, rigify_blend)
    sources, _ = _import(hc, n_frames=4, invalid_right=())
    rt = hc.mod("builders.retarget")
    mapping = _suggest(hc, rig).mapping
    result = rt.retarget(bpy.context, sources, rig, mapping, rt.RetargetOptions(wrist_location="WORLD"))
    assert not result.warnings
    for f in result.frames["left"]:
        bpy.context.scene.frame_set(f)
        src = sources[1]
        wrist = np.array(src.matrix_world @ src.pose.bones["hand.L"].head)
        got = np.array(rig.matrix_world @ rig.pose.bones["hand_ik.L"].head)
        np.testing.assert_allclose(got, wrist, atol=1e-4)


def test_bad_rigs_and_mappings_are_refused_before_anything_changes(hc):
    bpy = hc.bpy
    rm = hc.mod("core.retarget_map")
    rt = hc.mod("builders.retarget")
    sources, _ = _import(hc, n_frames=3)
    # A rig without hand bones.
    arm = bpy.data.armatures.new("plain")
    plain = bpy.data.objects.new("Plain", arm)
    bpy.context.scene.collection.objects.link(plain)
    bpy.context.view_layer.objects.active = plain
    bpy.ops.object.mode_set(mode="EDIT")
    for n in ("Spine", "Head", "Bone.001"):
        b = arm.edit_bones.new(n)
        b.tail = (0, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    with pytest.raises(rm.MappingError, match="no hand or finger bones"):
        hc.mod("core.retarget_suggest").suggest_mapping(list(arm.bones.keys()))
    n_actions = len(bpy.data.actions)
    with pytest.raises(rt.RetargetError, match="none of the mapped bones"):
        rt.retarget(bpy.context, sources, plain, rm.builtin_presets()["mixamo"].mapping())
    # A mapping naming bones the rig does not have.
    rig = bpy.data.objects[build_mixamo_rig(bpy)]
    mapping = rm.builtin_presets()["mixamo"].mapping()
    mapping.pairs[3].target = "mixamorig:RightHandIndex9"
    with pytest.raises(rt.RetargetError, match="lacks mapped bones: mixamorig:RightHandIndex9"):
        rt.retarget(bpy.context, sources, rig, mapping)
    # Two source bones onto one target bone.
    mapping = rm.builtin_presets()["mixamo"].mapping()
    mapping.pairs[2].target = mapping.pairs[1].target
    with pytest.raises(rt.RetargetError, match="driven by both"):
        rt.retarget(bpy.context, sources, rig, mapping)
    # Not an armature; source = target.
    with pytest.raises(rt.RetargetError, match="not an armature"):
        rt.retarget(bpy.context, sources, bpy.data.objects[_import(hc)[1].camera_space], mapping)
    with pytest.raises(rt.RetargetError, match="both source and target"):
        rt.retarget(bpy.context, sources, sources[0], rm.builtin_presets()["handcap"].mapping())
    assert len(bpy.data.actions) == n_actions + 2  # only the second import's two hand actions
    assert plain.animation_data is None and rig.animation_data is None


def test_mapping_for_a_hand_that_was_not_captured_is_skipped(hc):
    bpy = hc.bpy
    rig = bpy.data.objects[build_mixamo_rig(bpy)]
    sources, _ = _import(hc, n_frames=3, sides=("left",))
    rt = hc.mod("builders.retarget")
    result = rt.retarget(bpy.context, sources, rig, _suggest(hc, rig).mapping)
    assert result.sides == ["left"] and len(result.skipped) == 16 and "index.01.R" in result.skipped
    assert all("Left" in b for b in result.bones)
    again = rt.retarget(bpy.context, sources, rig, _suggest(hc, rig).mapping, rt.RetargetOptions(frame_range=(2, 9)))
    assert again.frames == {"left": list(range(2, 10))} and again.action != result.action
    assert again.previous_action == result.action  # the first bake is kept, not overwritten
    assert bpy.data.actions[result.action].use_fake_user


def test_sidebar_operators_suggest_edit_save_load_and_bake(hc):
    bpy = hc.bpy
    rig = bpy.data.objects[build_mixamo_rig(bpy)]
    sources, _ = _import(hc, n_frames=4)
    props = bpy.context.scene.handcap_retarget
    props.target = rig
    assert bpy.ops.handcap.suggest_mapping() == {"FINISHED"}
    assert props.source_right == sources[0] and props.source_left == sources[1]  # found by their side
    rows = {p.source: p for p in props.pairs}
    assert len(rows) == 32 and rows["index.01.L"].target == "mixamorig:LeftHandIndex1"
    rows["pinky.03.L"].target = ""  # the user unmaps a bone
    bpy.ops.handcap.save_mapping_preset(name="my_char", overwrite=True)
    saved = hc.mod("operators.retarget").user_preset_dir() / "my_char.json"
    assert saved.is_file()
    for p in props.pairs:
        p.target = ""
    props.preset = "my_char"
    assert bpy.ops.handcap.load_mapping_preset() == {"FINISHED"}
    rows = {p.source: p.target for p in props.pairs}
    assert rows["pinky.03.L"] == "" and rows["pinky.02.L"] == "mixamorig:LeftHandPinky2"
    assert bpy.ops.handcap.retarget_motion() == {"FINISHED"}
    action = rig.animation_data.action
    assert action.name.startswith("HC_MixamoChar_retarget")
    assert "mixamorig:LeftHandPinky3" not in {fc.data_path.split('"')[1] for fc in _fcurves(hc, rig)}
    # A row naming a missing bone: the operator refuses with the reason, nothing new is made.
    props.pairs[1].target = "no_such_bone"
    n = len(bpy.data.actions)
    with pytest.raises(RuntimeError, match="lacks mapped bones: no_such_bone"):
        bpy.ops.handcap.retarget_motion()
    assert len(bpy.data.actions) == n
