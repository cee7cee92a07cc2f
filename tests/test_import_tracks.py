"""Capture format version 3 in Blender: a capture with several tracks of one side (a photo of several
people) imports as one rig per track, each reproducing its own hand."""

from __future__ import annotations

import numpy as np
import pytest

from .test_blender_import import TOL, apply, fcurves, synthetic_capture, world

pytestmark = pytest.mark.blender


def test_one_rig_per_track(hc, tmp_path):
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    naming = hc.mod("core.naming")
    capmod = hc.mod("core.capture")
    cap = synthetic_capture(hc, sides=("right", "left"), frames=6)
    second = synthetic_capture(hc, sides=("right",), seed=5, frames=6).hands["right"]
    second.transl = second.transl + np.float32([0.0, 0.1, 0.3])  # another person's right hand, farther away
    cap.hands["right_2"] = second
    path = capmod.write_capture(tmp_path / "crowd.npz", cap)
    back = capmod.read_capture(path)
    result = importer.import_capture(bpy.context, path, importer.ImportOptions())
    assert set(result.armatures) == {"right", "left", "right_2"} == set(result.actions)
    assert len(set(result.armatures.values())) == 3
    assert result.armatures["right_2"] == result.armatures["right"] + "_2"
    space = world(bpy.data.objects[result.camera_space])
    for key in ("right", "right_2"):
        arm = bpy.data.objects[result.armatures[key]]
        assert result.keyed_frames[key] == int(back.hands[key].valid.sum())
        tr = back.hands[key]
        f64 = [np.asarray(a, np.float64) for a in (tr.theta, tr.beta, tr.transl, tr.joint_offsets)]
        ref = hc.mod("core.handmodel").forward(hc.mod("core.handmodel").load_builtin(tr.side), *f64)
        t = int(np.flatnonzero(back.hands[key].valid)[-1])
        bpy.context.scene.frame_set(result.frame_offset + int(back.frames[t]))
        heads = np.array([arm.pose.bones[n].head for n in naming.joint_bones("right")], dtype=np.float64)
        np.testing.assert_allclose(apply(world(arm), heads), apply(space, ref.joints[t]), atol=TOL, rtol=0)


def test_bridged_frames_are_keyed_but_not_visible_and_four_tracks_get_four_rigs(hc, tmp_path):
    """Frames 3-5 (a 3-frame gap) are bridged, frame 17 is not: the rigs key the bridged frames with the
    capture's pose and keep their visible property 0; four tracks of two people import as four rigs named by
    their track keys."""
    bpy = hc.bpy
    importer = hc.mod("builders.importer")
    naming = hc.mod("core.naming")
    capmod = hc.mod("core.capture")
    hm = hc.mod("core.handmodel")
    cap = synthetic_capture(hc, sides=("right", "left"), frames=20)
    for key in ("right", "left"):
        second = synthetic_capture(hc, sides=(key,), seed=7, frames=20).hands[key]
        second.transl = second.transl + np.float32([0.3, 0.0, 0.4])  # the second person, farther away
        cap.hands[f"{key}_2"] = second
    for track in cap.hands.values():
        track.bridged = np.zeros(20, bool)
        track.bridged[[3, 4, 5]] = True
    back = capmod.read_capture(capmod.write_capture(tmp_path / "bridged.npz", cap))
    assert all(t.bridged[[3, 4, 5]].all() and not t.bridged[17] for t in back.hands.values())
    result = importer.import_capture(bpy.context, tmp_path / "bridged.npz", importer.ImportOptions())
    assert set(result.armatures) == {"right", "left", "right_2", "left_2"}
    assert result.armatures["left_2"] == result.armatures["left"] + "_2"
    space = world(bpy.data.objects[result.camera_space])
    for key, tr in back.hands.items():
        assert result.keyed_frames[key] == int(tr.valid.sum()) + 3  # observed + bridged; frame 17 unkeyed
        wrist = naming.joint_bone(0, tr.side)
        keyed = [
            kp.co[0]
            for fc in fcurves(bpy.data.actions[result.actions[key]])
            for kp in fc.keyframe_points
            if fc.data_path == f'pose.bones["{wrist}"].location' and fc.array_index == 0
        ]
        assert (
            result.frame_offset + int(back.frames[4]) in keyed
            and result.frame_offset + int(back.frames[17]) not in keyed
        )
        arm = bpy.data.objects[result.armatures[key]]
        f64 = [np.asarray(a, np.float64) for a in (tr.theta, tr.beta, tr.transl, tr.joint_offsets)]
        ref = hm.forward(hm.load_builtin(tr.side), *f64)
        bpy.context.scene.frame_set(result.frame_offset + int(back.frames[4]))
        assert arm[naming.PROP_PREFIX + "visible"] == 0
        heads = np.array([arm.pose.bones[n].head for n in naming.joint_bones(tr.side)], dtype=np.float64)
        np.testing.assert_allclose(apply(world(arm), heads), apply(space, ref.joints[4]), atol=TOL, rtol=0)
