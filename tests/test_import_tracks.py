"""Capture format version 3 in Blender: a capture with several tracks of one side (a photo of several
people) imports as one rig per track, each reproducing its own hand."""

from __future__ import annotations

import numpy as np
import pytest

from .test_blender_import import TOL, apply, synthetic_capture, world

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
