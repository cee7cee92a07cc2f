"""FBX / BVH / glTF export through Blender's own exporters: round trips (export, re-import, compare keys
and rotations), file naming, and refusal of unwritable destinations without half-written files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .retarget_rigs import bone_key_counts, rotation_angle_deg, synthetic_capture, world_pose_rotations

pytestmark = pytest.mark.blender
FRAMES = list(range(1, 7))


def _hands(hc, with_mesh=False):
    bpy = hc.bpy
    imp = hc.mod("builders.importer")
    capture = synthetic_capture(n_frames=len(FRAMES), invalid_right=(), cap=hc.mod("core.capture"))
    res = imp.import_capture(bpy.context, capture, imp.ImportOptions(with_mesh=with_mesh))
    return [bpy.data.objects[res.armatures[s]] for s in ("right", "left")]


def _new_objects(bpy, before):
    return [bpy.data.objects[n] for n in sorted(set(bpy.data.objects.keys()) - before)]


def _assert_same_motion(bpy, original, imported, relative_to_rest=False):
    want = world_pose_rotations(bpy, original, FRAMES, relative_to_rest)
    got = world_pose_rotations(bpy, imported, FRAMES, relative_to_rest)
    keys_want, keys_got = bone_key_counts(original), bone_key_counts(imported)
    assert set(keys_want) <= set(keys_got)
    for bone, n in keys_want.items():
        assert keys_got[bone] == n == len(FRAMES), bone
        err = rotation_angle_deg(got[bone], want[bone])
        assert err.max() < 1.0, (bone, err.max())


def test_fbx_round_trip_keeps_keys_and_rotations(hc, tmp_path):
    bpy = hc.bpy
    ex = hc.mod("builders.export")
    arms = _hands(hc)
    result = ex.export_armatures(bpy.context, arms, tmp_path / "hands.fbx", ex.ExportOptions(format="fbx"))
    assert result.files == [str((tmp_path / "hands.fbx").resolve())] and result.frame_range == (1, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hands.fbx"]  # no temporary file left
    before = set(bpy.data.objects.keys())
    # anim_offset=0: Blender's FBX importer shifts keys by one frame by default.
    bpy.ops.import_scene.fbx(filepath=result.files[0], anim_offset=0.0)
    new = {o.name.rsplit(".", 1)[0]: o for o in _new_objects(bpy, before) if o.type == "ARMATURE"}
    assert set(new) == {a.name for a in arms}
    for arm in arms:
        _assert_same_motion(bpy, arm, new[arm.name])


def test_bvh_one_file_per_hand_round_trip(hc, tmp_path):
    bpy = hc.bpy
    ex = hc.mod("builders.export")
    arms = _hands(hc)
    result = ex.export_armatures(bpy.context, arms, tmp_path / "take", ex.ExportOptions(format="bvh"))
    assert [Path(f).name for f in result.files] == ["take.R.bvh", "take.L.bvh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.L.bvh", "take.R.bvh"]
    for arm, path in zip(arms, result.files, strict=True):
        before = set(bpy.data.objects.keys())
        # The BVH holds Blender world axes (Z up): import without axis conversion.
        bpy.ops.import_anim.bvh(filepath=path, axis_forward="Y", axis_up="Z", frame_start=FRAMES[0])
        (imported,) = _new_objects(bpy, before)
        assert {b.name for b in imported.data.bones} == {b.name for b in arm.data.bones}
        _assert_same_motion(bpy, arm, imported, relative_to_rest=True)


def test_gltf_binary_with_meshes_round_trip(hc, tmp_path):
    bpy = hc.bpy
    ex = hc.mod("builders.export")
    arms = _hands(hc, with_mesh=True)
    meshes = ex.deformed_meshes(arms)
    result = ex.export_armatures(bpy.context, arms, tmp_path / "hands.glb", ex.ExportOptions(format="glb"))
    assert set(result.objects) == {o.name for o in arms + meshes}
    with open(result.files[0], "rb") as f:
        assert f.read(4) == b"glTF"
    before = set(bpy.data.objects.keys())
    bpy.ops.import_scene.gltf(filepath=result.files[0])
    new = _new_objects(bpy, before)
    assert sum(o.type == "MESH" and len(o.data.vertices) > 100 for o in new) == len(meshes)
    for arm in arms:
        names = {b.name for b in arm.data.bones}
        (imported,) = [o for o in new if o.type == "ARMATURE" and {b.name for b in o.data.bones} == names]
        _assert_same_motion(bpy, arm, imported)


def test_unwritable_destinations_are_refused_cleanly(hc, tmp_path):
    bpy = hc.bpy
    ex = hc.mod("builders.export")
    arms = _hands(hc)
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    with pytest.raises(ex.ExportError, match="not a folder"):
        ex.export_armatures(bpy.context, arms, a_file / "hands.fbx")
    if sys.platform.startswith("linux"):  # even root cannot create folders in /proc
        with pytest.raises(ex.ExportError, match="cannot create the output folder"):
            ex.export_armatures(bpy.context, arms, "/proc/handcap-test/hands.fbx")
    with pytest.raises(ex.ExportError, match="unknown export format"):
        ex.export_armatures(bpy.context, arms, tmp_path / "hands.obj", ex.ExportOptions(format="obj"))
    with pytest.raises(ex.ExportError, match="not an armature"):
        ex.export_armatures(bpy.context, [bpy.data.objects[arms[0].parent.name]], tmp_path / "x.fbx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


def test_failure_half_way_leaves_no_file_and_keeps_existing_ones(hc, tmp_path, monkeypatch):
    bpy = hc.bpy
    ex = hc.mod("builders.export")
    arms = _hands(hc)
    old = tmp_path / "take.R.bvh"
    old.write_text("the user's earlier file")
    real = ex._export_bvh
    calls = []

    def second_fails(context, obj, tmp, frame_range):
        calls.append(obj.name)
        if len(calls) == 2:
            raise ex.ExportError("simulated exporter failure")
        real(context, obj, tmp, frame_range)

    monkeypatch.setattr(ex, "_export_bvh", second_fails)
    with pytest.raises(ex.ExportError, match="simulated"):
        ex.export_armatures(bpy.context, arms, tmp_path / "take.bvh", ex.ExportOptions(format="bvh"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.R.bvh"]
    assert old.read_text() == "the user's earlier file"
    assert len(bpy.data.objects) == len({o.name for o in bpy.data.objects})  # no temporary copy left
    assert not [o for o in bpy.data.objects if o.type == "ARMATURE" and o.parent is None]


def test_export_operator_writes_the_selected_hands(hc, tmp_path):
    bpy = hc.bpy
    arms = _hands(hc)
    for obj in bpy.context.selected_objects:
        obj.select_set(False)
    arms[1].select_set(True)
    bpy.context.view_layer.objects.active = arms[1]
    assert bpy.ops.handcap.export_motion(filepath=str(tmp_path / "left.bvh"), format="bvh") == {"FINISHED"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["left.bvh"]
    text = (tmp_path / "left.bvh").read_text()
    assert "ROOT hand.L" in text and f"Frames: {len(FRAMES)}" in text
    with pytest.raises(RuntimeError, match="not a folder"):
        bpy.ops.handcap.export_motion(filepath=str(tmp_path / "left.bvh" / "x.fbx"), format="fbx")
