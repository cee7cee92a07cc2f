"""Keypoint tables, naming and the deterministic tensor file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from handcap.core import keypoints as kp
from handcap.core import naming
from handcap.core.tensorfile import TensorFileError, load_tensors, save_tensors


def test_mano_to_keypoint_order_matches_the_documented_mapping():
    joints = np.arange(16)[:, None].astype(float)
    tips = (100 + np.arange(5))[:, None].astype(float)
    out = kp.mano_to_keypoints(joints, tips)[:, 0]
    # thumb = MANO 13,14,15 + thumb tip; index = 1,2,3 + index tip; ring uses MANO 10-12, pinky 7-9.
    assert out[kp.HandKeypoint.THUMB_CMC] == kp.ManoJoint.THUMB1
    assert out[kp.HandKeypoint.THUMB_TIP] == 100
    assert out[kp.HandKeypoint.INDEX_MCP] == kp.ManoJoint.INDEX1
    assert out[kp.HandKeypoint.RING_MCP] == kp.ManoJoint.RING1
    assert out[kp.HandKeypoint.PINKY_DIP] == kp.ManoJoint.PINKY3
    assert out[kp.HandKeypoint.PINKY_TIP] == 104
    assert sorted(out.tolist()) == list(range(16)) + list(range(100, 105))


def test_parent_tables_are_consistent():
    # Every MANO joint's parent maps to the keypoint parent of its keypoint.
    inv = {int(m): i for i, m in enumerate(kp.MANO_TO_KEYPOINTS) if m < 16}
    for j in range(1, 16):
        assert kp.KEYPOINT_PARENTS[inv[j]] == inv[int(kp.MANO_PARENTS[j])]
    assert len(kp.KEYPOINT_BONES) == 20


def test_bone_names_mirror_and_are_unique():
    right, left = naming.all_bones("right"), naming.all_bones("left")
    assert len(set(right)) == 21 and len(set(left)) == 21
    assert [n[:-2] for n in right] == [n[:-2] for n in left]
    assert naming.joint_bone(kp.ManoJoint.WRIST, "left") == "hand.L"
    assert naming.joint_bone(kp.ManoJoint.PINKY2, "right") == "pinky.02.R"
    assert naming.tip_bone("thumb", "right") == "thumb.tip.R"
    with pytest.raises(ValueError, match="side"):
        naming.joint_bone(0, "middle")
    assert naming.action_name("/x/My Clip.mp4", "left") == "HC_My Clip_L"


def test_tensor_file_is_deterministic_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"b.w": rng.normal(size=(3, 4)).astype(np.float16), "a": np.arange(5, dtype=np.int32)}
    p1, p2 = tmp_path / "1.st", tmp_path / "2.st"
    save_tensors(p1, tensors, {"source": "x"})
    save_tensors(p2, dict(reversed(list(tensors.items()))), {"source": "x"})
    assert hashlib.sha256(p1.read_bytes()).digest() == hashlib.sha256(p2.read_bytes()).digest()
    back, meta = load_tensors(p1)
    assert meta == {"source": "x"}
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)
    p1.write_bytes(p1.read_bytes()[:-4])
    with pytest.raises(TensorFileError, match="truncated"):
        load_tensors(p1)
