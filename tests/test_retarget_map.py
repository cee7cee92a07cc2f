"""Bone mappings and presets without Blender: preset files, suggestions for common rig naming schemes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handcap.core import naming
from handcap.core import retarget_map as rm
from handcap.core.retarget_suggest import suggest_mapping

FINGER_WORDS = {"thumb": "Thumb", "index": "Index", "middle": "Middle", "ring": "Ring", "pinky": "Pinky"}


def test_source_keys_name_exactly_the_importers_joint_bones():
    for side in ("right", "left"):
        assert sorted(rm.source_bone(k, side) for k in rm.SOURCE_KEYS) == sorted(naming.joint_bones(side))
        for name in naming.joint_bones(side):
            key, s = rm.split_source_bone(name)
            assert s == side and rm.source_bone(key, s) == name
    with pytest.raises(rm.MappingError, match="not a HandCap joint bone"):
        rm.split_source_bone("index.tip.R")


def test_builtin_presets_load_and_cover_both_hands():
    presets = rm.builtin_presets()
    assert {"rigify", "rigify_metarig", "mixamo", "unreal", "handcap"} <= set(presets)
    for preset in presets.values():
        mapping = preset.mapping()
        assert len(mapping) == 32, preset.id
        mapping.check()
    assert presets["mixamo"].mapping().as_dict()["index.01.L"] == "mixamorig:LeftHandIndex1"
    assert presets["unreal"].mapping().as_dict()["hand.R"] == "hand_r"
    assert presets["rigify"].mapping().as_dict()["thumb.02.R"] == "thumb.02.R"
    assert presets["rigify_metarig"].mapping().as_dict()["middle.03.L"] == "f_middle.03.L"


def _rigify_generated_names():
    names = []
    for s in ("L", "R"):
        names += [f"hand_ik.{s}", f"hand_fk.{s}", f"ORG-hand.{s}", f"DEF-hand.{s}", f"MCH-hand_fk.{s}", f"palm.{s}"]
        for f in ("index", "middle", "ring", "pinky"):
            for k in (1, 2, 3):
                names += [f"f_{f}.0{k}.{s}", f"ORG-f_{f}.0{k}.{s}", f"DEF-f_{f}.0{k}.{s}", f"MCH-f_{f}.0{k}_drv.{s}"]
            names += [f"f_{f}.01_master.{s}", f"f_{f}.01.{s}.001"]
        for k in (1, 2, 3):
            names += [f"thumb.0{k}.{s}", f"ORG-thumb.0{k}.{s}", f"DEF-thumb.0{k}.{s}"]
    return names


@pytest.mark.parametrize(
    "names, preset, expect",
    [
        (_rigify_generated_names(), "rigify", {"hand.L": "hand_ik.L", "ring.02.R": "f_ring.02.R"}),
        (
            ["hand.L", "hand.R", "palm.01.L"]
            + [f"f_{f}.0{k}.{s}" for f in FINGER_WORDS if f != "thumb" for k in (1, 2, 3) for s in "LR"]
            + [f"thumb.0{k}.{s}" for k in (1, 2, 3) for s in "LR"],
            "rigify_metarig",
            {"hand.R": "hand.R", "index.01.L": "f_index.01.L"},
        ),
        (
            [f"mixamorig9:{side}Hand" for side in ("Left", "Right")]
            + [
                f"mixamorig9:{side}Hand{w}{k}"
                for side in ("Left", "Right")
                for w in FINGER_WORDS.values()
                for k in (1, 2, 3, 4)
            ],
            "mixamo",
            {"hand.L": "mixamorig9:LeftHand", "thumb.03.R": "mixamorig9:RightHandThumb3"},
        ),
        (
            ["hand_l", "hand_r"]
            + [f"{f}_0{k}_{s}" for f in FINGER_WORDS for k in (1, 2, 3) for s in "lr"]
            + [f"{f}_metacarpal_{s}" for f in FINGER_WORDS if f != "thumb" for s in "lr"],
            "unreal",
            {"pinky.01.L": "pinky_01_l", "hand.R": "hand_r"},
        ),
    ],
)
def test_suggestion_picks_the_rigs_preset(names, preset, expect):
    suggestion = suggest_mapping(names)
    assert suggestion.source == f"preset:{preset}" and not suggestion.missing
    d = suggestion.mapping.as_dict()
    for src, tgt in expect.items():
        assert d[src] == tgt


def test_one_handed_mixamo_rig_still_matches_its_preset():
    names = ["mixamorig:LeftHand"] + [f"mixamorig:LeftHand{w}{k}" for w in FINGER_WORDS.values() for k in (1, 2, 3)]
    suggestion = suggest_mapping(names)
    assert suggestion.source == "preset:mixamo" and len(suggestion.mapping) == 16
    assert len(suggestion.missing) == 16 and all(m.endswith(".R") for m in suggestion.missing)


def test_name_patterns_for_rigs_without_a_preset():
    # Daz-like: side prefix letter, camel case, metacarpals ("Carpal") that HandCap has no bone for.
    daz = {"lForearm": None, "lHand": "lForearm", "lCarpal1": "lHand", "lCarpal2": "lHand", "lThumb1": "lHand"}
    daz |= {"lThumb2": "lThumb1", "lThumb3": "lThumb2", "lIndex1": "lCarpal1", "lIndex2": "lIndex1"}
    daz |= {"lIndex3": "lIndex2", "lMid1": "lCarpal2", "lMid2": "lMid1", "lMid3": "lMid2"}
    s = suggest_mapping(daz, sides=["left"], presets={})
    assert s.source == "names"
    assert s.mapping.as_dict() == {
        "hand.L": "lHand",
        "thumb.01.L": "lThumb1",
        "thumb.02.L": "lThumb2",
        "thumb.03.L": "lThumb3",
        "index.01.L": "lIndex1",
        "index.02.L": "lIndex2",
        "index.03.L": "lIndex3",
        "middle.01.L": "lMid1",
        "middle.02.L": "lMid2",
        "middle.03.L": "lMid3",
    }
    assert set(s.missing) == {f"{f}.0{k}.L" for f in ("ring", "pinky") for k in (1, 2, 3)}
    # Unity-humanoid words, un-numbered phalanges ordered by the hierarchy; "DEF-" copies lose to controls.
    unity = {"Left Hand": None}
    for f in ("Index", "Little"):
        parent = "Left Hand"
        for seg in ("Proximal", "Intermediate", "Distal"):
            unity[f"Left {f} {seg}"] = parent
            unity[f"DEF-Left {f} {seg}"] = parent
            parent = f"Left {f} {seg}"
    s = suggest_mapping(unity, sides=["left"], presets={})
    d = s.mapping.as_dict()
    assert d["index.02.L"] == "Left Index Intermediate" and d["pinky.03.L"] == "Left Little Distal"
    assert d["hand.L"] == "Left Hand"
    # MakeHuman: fingers numbered 1 (thumb) .. 5.
    mh = ["wrist.R", "finger1-1.R", "finger1-2.R", "finger1-3.R", "finger3-1.R", "finger3-2.R", "finger3-3.R"]
    d = suggest_mapping(mh, sides=["right"], presets={}).mapping.as_dict()
    assert d["thumb.02.R"] == "finger1-2.R" and d["middle.03.R"] == "finger3-3.R" and d["hand.R"] == "wrist.R"


def test_rig_without_hands_is_refused():
    with pytest.raises(rm.MappingError, match="no hand or finger bones"):
        suggest_mapping(["Bone", "Bone.001", "spine", "head"])


def test_preset_save_load_round_trip_and_bad_files(tmp_path):
    mapping = rm.BoneMapping.from_pairs({"hand.R": "Wrist_R", "index.01.R": "IndexA_R", "index.02.L": "IdxB_L"})
    preset = rm.preset_from_mapping(mapping, "studio_rig", "Studio rig")
    path = rm.save_preset(tmp_path / "studio_rig.json", preset)
    back = rm.load_preset(path)
    assert back.mapping().as_dict() == mapping.as_dict() and back.name == "Studio rig"
    assert rm.presets_in(tmp_path)["studio_rig"].path == str(path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(rm.MappingError, match="not a readable JSON preset"):
        rm.load_preset(bad)
    bad.write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(rm.MappingError, match="not a HandCap retarget preset"):
        rm.load_preset(bad)
    bad.write_text(
        json.dumps({"format": rm.FORMAT_NAME, "version": 1, "sides": {"right": {}}, "bones": {"hand": "h_{x}"}})
    )
    with pytest.raises(rm.MappingError, match="undefined placeholder"):
        rm.load_preset(bad)
    bad.write_text(json.dumps({"format": rm.FORMAT_NAME, "version": 1, "pairs": [{"side": "right", "key": "hand"}]}))
    with pytest.raises(rm.MappingError, match="needs 'side', 'key' and 'target'"):
        rm.load_preset(bad)
    assert "bad" not in rm.presets_in(tmp_path)  # a broken file does not hide the good ones
    with pytest.raises(rm.MappingError, match="folder does not exist"):
        rm.save_preset(tmp_path / "missing" / "x.json", preset)
    with pytest.raises(rm.MappingError, match="preset id"):
        rm.preset_from_mapping(mapping, "bad name!")


def test_mapping_checks():
    with pytest.raises(rm.MappingError, match="mapped twice"):
        rm.BoneMapping([rm.BonePair("right", "hand", "a"), rm.BonePair("right", "hand", "b")]).check()
    with pytest.raises(rm.MappingError, match="driven by both"):
        rm.BoneMapping.from_pairs({"hand.R": "x", "hand.L": "x"})
    with pytest.raises(rm.MappingError, match="empty"):
        rm.BoneMapping().check()
    with pytest.raises(rm.MappingError, match="unknown source key"):
        rm.BoneMapping([rm.BonePair("right", "wrist", "x")]).check()


def _random_rotations(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def test_rest_offsets_make_target_bones_point_like_source_bones():
    from handcap.core.retarget_math import orthonormal, palm_frame, rest_offsets, swing

    rng = np.random.default_rng(3)
    src, tgt = _random_rotations(rng, 20), _random_rotations(rng, 20)
    align = _random_rotations(rng, 1)[0]
    offsets = rest_offsets(src, tgt, align)
    for world in _random_rotations(rng, 10):  # any captured pose of the source bone
        for c in offsets:
            np.testing.assert_allclose((world @ c)[:, 1], world[:, 1], atol=1e-12)
            np.testing.assert_allclose(c.T @ c, np.eye(3), atol=1e-12)
    # At rest the target bone keeps its own rest roll about the shared direction (no twist added by the swing)
    # when the two rigs are the same up to the hand alignment.
    same = rest_offsets(src, align @ src, align)
    np.testing.assert_allclose(same, np.broadcast_to(np.eye(3), same.shape), atol=1e-12)
    for a in (np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, -0.5])):
        for b in (a, -a, np.array([0.3, -1.0, 0.2])):
            r = swing(a, b)
            np.testing.assert_allclose(r @ (a / np.linalg.norm(a)), b / np.linalg.norm(b), atol=1e-12)
            assert abs(np.linalg.det(r) - 1.0) < 1e-12
    mirror = np.diag([-1.0, 2.0, 2.0])
    assert np.linalg.det(orthonormal(mirror)) == pytest.approx(1.0)
    knuckles = {"index": np.array([1.0, 8.0, 0.0]), "pinky": np.array([-1.0, 7.0, 0.0])}
    frame = palm_frame(np.zeros(3), knuckles)
    np.testing.assert_allclose(frame[:, 0], [1.0, 0.0, 0.0], atol=1e-12)
    assert palm_frame(np.zeros(3), {"index": knuckles["index"]}) is None
