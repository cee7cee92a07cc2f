"""Capture -> Blender import, run inside bpy with the installed extension.

The imported rig must reproduce the hand model exactly: bone heads and the
Armature-deformed mesh are compared with ``core.handmodel.forward`` mapped
through the camera-space Empty.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import installed

pytestmark = pytest.mark.blender

T = 30
TOL = 5e-4  # metres; the conversion is exact, float32 storage leaves ~1e-6


def synthetic_capture(
    hc, path=None, sides=("right", "left"), seed=0, hand_model="builtin-v1", frames=T, calibrated=False
):
    """A capture posed by the built-in model: plausible random poses, some frames without a hand; calibrated:
    the skeleton has palm rest-joint offsets beyond beta, as the fit gives them."""
    hm = hc.mod("core.handmodel")
    capmod = hc.mod("core.capture")
    anatomy = hc.mod("core.anatomy")
    rng = np.random.default_rng(seed)
    hands = {}
    for k, side in enumerate(sides):
        data = hm.load_builtin(side)
        beta = rng.normal(scale=0.8, size=10)
        lim = anatomy.default_joint_limits(side)
        # Local (joint-frame) rotations inside the anatomical limits, smooth over time, then template axes.
        lo, hi = np.maximum(lim[..., 0], -1.2), np.minimum(lim[..., 1], 1.2)
        phase = rng.uniform(0, 2 * np.pi, size=(16, 3))
        wave = 0.5 + 0.5 * np.sin(np.linspace(0, 3, frames)[:, None, None] + phase)
        local = lo + (hi - lo) * wave
        theta = anatomy.from_local(local, data.joint_frames)
        theta[:, 0] = rng.normal(scale=1.0, size=3) + np.linspace(0, 0.8, frames)[:, None]
        transl = np.stack(
            [np.full(frames, 0.12 * (1 - 2 * k)), np.linspace(-0.05, 0.05, frames), np.full(frames, 0.5)], 1
        )
        offsets = np.zeros((16, 3))
        if calibrated:
            offsets[[0, 1, 4, 7, 10, 13]] = rng.normal(scale=0.004, size=(6, 3))
        out = hm.forward(data, theta, beta, transl, joint_offsets=offsets)
        valid = np.ones(frames, bool)
        valid[[i for i in (3, 4, 5, 17) if i < frames]] = False  # a gap and a single missing frame
        hands[side] = capmod.HandTrack(
            side=side,
            theta=theta.astype(np.float32),
            beta=beta.astype(np.float32),
            transl=transl.astype(np.float32),
            kp2d=np.zeros((frames, 21, 2), np.float32),
            kp3d=out.keypoints.astype(np.float32),
            frame_conf=np.where(valid, 0.9, 0.1).astype(np.float32),
            kp_conf=np.ones((frames, 21), np.float32),
            valid=valid,
            rest_joints=out.rest_joints[0].astype(np.float32),
            joint_offsets=offsets.astype(np.float32),
        )
    cap = capmod.Capture(
        source="/footage/take_07.mp4",
        frames=np.arange(frames, dtype=np.int64) + 2,
        fps=29.97,
        image_size=(1280, 720),
        intrinsics=capmod.CameraIntrinsics.default(1280, 720),
        hand_model=hand_model,
        hands=hands,
    )
    if path is not None:
        capmod.write_capture(path, cap)
        cap = capmod.read_capture(path)  # test what the file holds (float32)
    return cap


def model_output(hc, cap, side):
    hm = hc.mod("core.handmodel")
    tr = cap.hands[side]
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    return hm.forward(hm.load_builtin(side), f64(tr.theta), f64(tr.beta), f64(tr.transl), f64(tr.joint_offsets))


def world(obj):
    return np.array(obj.matrix_world, dtype=np.float64)


def apply(m, pts):
    return pts @ m[:3, :3].T + m[:3, 3]


def fcurves(action):
    """F-curves of a single-slot HandCap action (in Blender 4.4+ layer 0, strip 0, channelbag 0)."""
    return installed("builders.compat").all_fcurves(action)


def datablock_counts(bpy):
    return {k: len(getattr(bpy.data, k)) for k in ("objects", "armatures", "meshes", "actions", "collections")}


@pytest.mark.parametrize("calibrated", [False, True], ids=["beta-skeleton", "calibrated-skeleton"])
def test_bones_and_mesh_reproduce_the_hand_model(hc, tmp_path, calibrated):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    naming = hc.mod("core.naming")
    path = tmp_path / "take_07.npz"
    cap = synthetic_capture(hc, path, calibrated=calibrated)
    assert bool(np.abs(cap.hands["right"].joint_offsets).max() > 1e-3) == calibrated
    result = importer.import_capture(bpy.context, path, importer.ImportOptions())
    assert result.warnings == []  # the mesh's skeleton is the capture's: J(beta) + joint_offsets
    assert set(result.armatures) == {"right", "left"} == set(result.meshes)
    space = world(bpy.data.objects[result.camera_space])
    scene = bpy.context.scene
    for side in ("right", "left"):
        arm = bpy.data.objects[result.armatures[side]]
        mesh = bpy.data.objects[result.meshes[side]]
        assert mesh.parent == arm and arm.parent.name == result.camera_space
        assert [g.name for g in mesh.vertex_groups] == naming.joint_bones(side)
        (mod,) = mesh.modifiers
        assert mod.type == "ARMATURE" and mod.object == arm and not mod.use_deform_preserve_volume
        faces = hc.mod("core.handmodel").load_builtin(side).faces
        assert len(mesh.data.polygons) == len(faces) and all(p.use_smooth for p in mesh.data.polygons)
        assert mesh.data.materials[0].name == "HC_skin"
        ref = model_output(hc, cap, side)
        valid = np.flatnonzero(cap.hands[side].valid)
        for t in valid[[0, len(valid) // 2, -1]]:
            scene.frame_set(result.frame_offset + int(cap.frames[t]))
            heads = np.array([arm.pose.bones[n].head for n in naming.joint_bones(side)], dtype=np.float64)
            np.testing.assert_allclose(apply(world(arm), heads), apply(space, ref.joints[t]), atol=TOL, rtol=0)
            # Tip bones ride on the distal segments; the model's fingertip vertices are (almost) rigid there.
            tips = np.array([arm.pose.bones[n].head for n in naming.tip_bones(side)], dtype=np.float64)
            ref_tips = ref.keypoints[t][[4, 8, 12, 16, 20]]
            np.testing.assert_allclose(apply(world(arm), tips), apply(space, ref_tips), atol=TOL, rtol=0)
            evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
            co = np.empty(len(evaluated.vertices) * 3, np.float32)
            evaluated.vertices.foreach_get("co", co)
            verts = apply(world(mesh), co.reshape(-1, 3).astype(np.float64))
            err = np.abs(verts - apply(space, ref.vertices[t])).max()
            assert err < TOL, f"{side} frame {t}: mesh off by {err * 1000:.3f} mm"


def test_camera_space_maps_opencv_axes_into_blender(hc, tmp_path):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    cap = synthetic_capture(hc, sides=("right",), frames=3)
    result = importer.import_capture(bpy.context, cap)
    bpy.context.view_layer.update()
    m = world(bpy.data.objects[result.camera_space])
    # OpenCV x right, y down, z forward -> Blender +X, -Z, +Y (camera at the origin looking along +Y).
    np.testing.assert_allclose(m[:3, :3] @ np.eye(3), [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-7)
    np.testing.assert_allclose(m[:3, 3], 0, atol=1e-9)


def test_keys_only_on_valid_frames_and_visibility_marks_gaps(hc, tmp_path):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    naming = hc.mod("core.naming")
    cap = synthetic_capture(hc, sides=("right",))
    result = importer.import_capture(bpy.context, cap, importer.ImportOptions(frame_offset=100))
    arm = bpy.data.objects[result.armatures["right"]]
    action = bpy.data.actions[result.actions["right"]]
    assert arm.animation_data.action == action
    compat = hc.mod("builders.compat")
    bag = compat.channelbag(action, compat.assigned_slot(arm))
    curves = {(fc.data_path, fc.array_index): fc for fc in bag.fcurves}
    valid = cap.hands["right"].valid
    expected = 100 + cap.frames[valid]
    assert result.keyed_frames["right"] == int(valid.sum()) and result.scene_frames == (102, 131)
    wrist = naming.joint_bone(0, "right")
    pose_curves = [fc for (p, _), fc in curves.items() if p.startswith("pose.bones")]
    assert len(pose_curves) == 16 * 4 + 3
    for fc in pose_curves:
        frames = np.array([kp.co[0] for kp in fc.keyframe_points])
        np.testing.assert_array_equal(frames, expected)
    assert (f'pose.bones["{wrist}"].location', 2) in curves
    # Hemisphere-continuous quaternions: consecutive keys never point to opposite hemispheres.
    for bone in naming.joint_bones("right"):
        q = np.array(
            [
                [kp.co[1] for kp in curves[(f'pose.bones["{bone}"].rotation_quaternion', i)].keyframe_points]
                for i in range(4)
            ]
        ).T
        assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0), bone
    visible = curves[(f'["{naming.PROP_PREFIX}visible"]', 0)]
    np.testing.assert_array_equal([kp.co[0] for kp in visible.keyframe_points], 100 + cap.frames)
    np.testing.assert_array_equal([kp.co[1] for kp in visible.keyframe_points], valid.astype(float))
    assert {kp.interpolation for kp in visible.keyframe_points} == {"CONSTANT"}
    bpy.context.scene.frame_set(100 + int(cap.frames[4]))
    assert arm[naming.PROP_PREFIX + "visible"] == 0
    assert arm[naming.PROP_PREFIX + "confidence"] == pytest.approx(0.0)
    bpy.context.scene.frame_set(100 + int(cap.frames[6]))
    assert arm[naming.PROP_PREFIX + "visible"] == 1
    assert arm[naming.PROP_PREFIX + "confidence"] == pytest.approx(0.9)
    # The frame mapping and provenance are recorded on the armature.
    assert arm[naming.PROP_PREFIX + "frame_offset"] == 100
    assert list(arm[naming.PROP_PREFIX + "source_frames"]) == [2, 31]
    assert arm[naming.PROP_PREFIX + "side"] == "right"
    assert arm[naming.PROP_PREFIX + "hand_model"] == "builtin-v1"


def test_reimport_makes_a_new_action_and_keeps_the_old_one(hc, tmp_path):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    path = tmp_path / "take_07.npz"
    synthetic_capture(hc, path, sides=("left",), frames=8)
    first = importer.import_capture(bpy.context, path)
    old = bpy.data.actions[first.actions["left"]]
    old_keys = [(fc.data_path, fc.array_index, len(fc.keyframe_points)) for fc in fcurves(old)]
    second = importer.import_capture(bpy.context, path, importer.ImportOptions(frame_offset=50))
    assert second.actions["left"] != first.actions["left"]
    assert second.armatures["left"] != first.armatures["left"]
    arm1 = bpy.data.objects[first.armatures["left"]]
    assert arm1.animation_data.action == old
    again = [(fc.data_path, fc.array_index, len(fc.keyframe_points)) for fc in fcurves(old)]
    assert again == old_keys
    new_frames = [kp.co[0] for kp in fcurves(bpy.data.actions[second.actions["left"]])[0].keyframe_points]
    assert min(new_frames) == 52


def test_scene_timing_option(hc, tmp_path):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end = 24, 1.0, 1, 250
    cap = synthetic_capture(hc, sides=("right",), frames=6)
    importer.import_capture(bpy.context, cap)
    assert (scene.render.fps, scene.frame_start, scene.frame_end) == (24, 1, 250)  # off by default
    importer.import_capture(bpy.context, cap, importer.ImportOptions(set_scene_timing=True))
    assert scene.render.fps / scene.render.fps_base == pytest.approx(29.97, abs=1e-4)
    assert (scene.frame_start, scene.frame_end) == (3, 8)


def test_operator_imports_and_reports(hc, tmp_path):
    bpy = hc.bpy
    path = tmp_path / "take_07.npz"
    synthetic_capture(hc, path, sides=("right", "left"), frames=5)
    assert "UNDO" in bpy.types.HANDCAP_OT_import_capture.bl_options
    result = bpy.ops.handcap.import_capture(filepath=str(path), import_left=False, with_mesh=False)
    assert result == {"FINISHED"}
    result = bpy.ops.handcap.import_capture(filepath=str(path), import_right=False)
    assert result == {"FINISHED"}
    arms = sorted((o for o in bpy.data.objects if o.type == "ARMATURE"), key=lambda o: o.name)
    assert [o.name for o in arms] == ["HC_take_07.L", "HC_take_07.R"]
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    assert [o.parent.name for o in meshes] == ["HC_take_07.L"]  # the right hand was imported without one
    assert arms[0]["handcap_capture_path"] == str(path)
    # File > Import lists the operator; the sidebar panel finds the hand from the armature or its mesh.
    op_module = hc.mod("operators.import_capture")
    assert op_module.menu_import in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    panels = hc.mod("panels.main")
    assert panels.handcap_armature(arms[0]) == arms[0]
    assert panels.handcap_armature(meshes[0]) == meshes[0].parent
    assert panels.handcap_armature(arms[0].parent) is None  # the camera-space Empty is no hand


def test_bad_input_reports_an_error_and_creates_nothing(hc, tmp_path):
    bpy = hc.bpy
    capmod = hc.mod("core.capture")
    before = datablock_counts(bpy)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    no_hands = tmp_path / "empty.npz"
    cap = synthetic_capture(hc, sides=("right",), frames=4)
    cap.hands = {}
    capmod.write_capture(no_hands, cap)
    truncated = tmp_path / "truncated.npz"
    capmod.write_capture(truncated, synthetic_capture(hc, sides=("right",), frames=4))
    truncated.write_bytes(truncated.read_bytes()[:-200])
    for path, message in (
        (tmp_path / "missing.npz", "no such capture file"),
        (corrupt, "corrupt"),
        (truncated, "corrupt"),
        (no_hands, "no hands"),
    ):
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.handcap.import_capture(filepath=str(path))
        assert datablock_counts(bpy) == before


def test_failure_while_building_removes_what_was_created(hc, monkeypatch):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    skin = hc.mod("builders.skin")
    cap = synthetic_capture(hc, frames=4)
    before = datablock_counts(bpy)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while building the mesh")

    monkeypatch.setattr(skin, "create_skinned_mesh", broken)
    with pytest.raises(RuntimeError, match="simulated failure"):
        importer.import_capture(bpy.context, cap)
    assert datablock_counts(bpy) == before
    assert bpy.context.mode == "OBJECT"


def test_unknown_hand_model_imports_armature_only_with_a_warning(hc):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    cap = synthetic_capture(hc, sides=("right",), frames=4, hand_model="mano")
    result = importer.import_capture(bpy.context, cap)
    assert result.meshes == {} and "right" in result.armatures
    assert any("without a mesh" in w for w in result.warnings)
    # Without the model's mesh the fingertips come from the fitted keypoints: the tip bones still land on them.
    naming = hc.mod("core.naming")
    arm = bpy.data.objects[result.armatures["right"]]
    bpy.context.scene.frame_set(result.frame_offset + int(cap.frames[0]))
    tips = np.array([arm.pose.bones[n].head for n in naming.tip_bones("right")], dtype=np.float64)
    kp = cap.hands["right"].kp3d[0][[4, 8, 12, 16, 20]]
    assert np.abs(tips - kp).max() < 0.01


def test_mano_capture_uses_the_model_passed_in(hc):
    import dataclasses

    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    hm = hc.mod("core.handmodel")
    cap = synthetic_capture(hc, sides=("left",), frames=4, hand_model="mano")
    model = dataclasses.replace(hm.load_builtin("left"), model_id="mano")
    result = importer.import_capture(bpy.context, cap, models={"left": model})
    assert result.warnings == [] and "left" in result.meshes
    mesh = bpy.data.objects[result.meshes["left"]]
    assert len(mesh.data.vertices) == model.num_vertices
    # A single side is mirrored for the other hand.
    cap = synthetic_capture(hc, sides=("right",), frames=4, hand_model="mano")
    result = importer.import_capture(bpy.context, cap, models={"left": model})
    assert result.warnings == [] and "right" in result.meshes
