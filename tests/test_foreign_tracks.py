"""Several people's hands in another tool's results (inference/foreign/association.py): records linked into
tracks by the file's ids or by position, second detections and passing false hands dropped, the most seen
tracks kept; HaMeR / WiLoR / HandCap MANO files and MediaPipe landmarks with three hands read back as
three tracks with their own keypoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handcap.cli import main
from handcap.core.capture import Capture, HandTrack, project_points, read_capture
from handcap.core.handmodel import forward, load_builtin, rest_joints
from handcap.inference.foreign import ForeignOptions, ForeignResultsError, read_results, writers
from handcap.inference.foreign.association import HandRecord, link_records, record_track_id
from handcap.inference.foreign.keypoint_results import read_keypoints

from .retarget_rigs import synthetic_track
from .test_foreign_results import MM, make_capture


def _walk(n: int, start, step, size=80.0, side="right", skip=(), score=0.9, ident=None):
    """Records of one hand moving in a straight line (pixels per frame), missing in the frames ``skip``."""
    return [
        HandRecord(f, side, np.array(start, float) + f * np.array(step, float), size, score, ident)
        for f in range(n)
        if f not in skip
    ]


def _members(records, keys, key) -> set[int]:
    """The records (by identity) given track ``key``."""
    return {id(r) for r, k in zip(records, keys, strict=True) if k == key}


def test_two_people_right_hands_stay_apart_through_a_gap_and_a_near_pass():
    # hand A moves right, hand B left, both along y = 200 / 330: they pass 1.6 hand sizes apart at frame 15;
    # A is missing over frames 9-12 (re-found after 5 frames), B is seen in fewer frames (so ranks second)
    a = _walk(30, (100, 200), (20, 0), skip=(9, 10, 11, 12))
    b = _walk(30, (700, 330), (-20, 0), skip=(0, 1, 2, 3, 4, 5, 27))
    # interleaved: a file lists a frame's hands in any order
    records = [r for pair in zip(b, a, strict=False) for r in pair] + a[len(b) :]
    keys, warnings = link_records(records, keep=4)
    assert sorted(set(keys)) == ["right", "right_2"] and not warnings
    assert _members(records, keys, "right") == {id(r) for r in a}
    assert _members(records, keys, "right_2") == {id(r) for r in b}


def test_second_detections_and_passing_false_hands_are_dropped_with_a_warning():
    a = _walk(20, (100, 200), (10, 0))
    twin = HandRecord(5, "right", a[5].centre + 4.0, 80.0, 0.5)  # the same hand detected twice in frame 5
    ghost = [HandRecord(f, "right", np.array([600.0, 50.0]), 60.0, 0.4) for f in (8, 9)]  # far away, two frames
    keys, warnings = link_records([*a, twin, *ghost], keep=4)
    assert keys[: len(a)] == ["right"] * len(a) and keys[len(a) :] == [None, None, None]
    assert any("frame 5: the right hand twice" in w for w in warnings), warnings
    assert any("1 passing right hand(s)" in w and "frames 8, 9" in w for w in warnings), warnings


def test_the_most_seen_track_of_each_side_is_kept_first_and_the_rest_are_named():
    right = _walk(20, (100, 200), (5, 0))
    right2 = _walk(20, (100, 400), (5, 0), skip=range(0, 8))
    left = _walk(20, (500, 200), (-5, 0), side="left", skip=range(0, 12))
    records = right + right2 + left
    keys, warnings = link_records(records, keep=2)
    assert set(keys) == {"right", "left", None}
    assert keys.count("right") == 20 and keys.count("left") == 8 and keys.count(None) == 12
    assert any("3 hand tracks in the file; kept 2" in w and "a right hand in 12 frames" in w for w in warnings)
    keys, _ = link_records(records, keep=3)
    assert keys.count("right_2") == 12


def test_the_files_own_ids_win_over_positions():
    # two hands that swap places between frames 9 and 10 (a cut, or hands crossing behind each other)
    a = [HandRecord(f, "right", np.array([100.0 if f < 10 else 400.0, 200.0]), 80.0, 0.9, 7) for f in range(20)]
    b = [HandRecord(f, "right", np.array([400.0 if f < 10 else 100.0, 200.0]), 80.0, 0.9, 3) for f in range(20)]
    keys, _ = link_records(a + b, keep=4)
    assert len(set(keys[:20])) == 1 and len(set(keys[20:])) == 1 and keys[0] != keys[20]
    assert record_track_id({"track_id": np.array([2.0])}) == 2 and record_track_id({"score": 1}) is None
    with pytest.raises(ValueError, match="'track_id' must be one whole number or text"):
        record_track_id({"track_id": [1, 2]})
    plain = [HandRecord(r.frame, r.side, r.centre, r.size, r.score) for r in a + b]
    keys, _ = link_records(plain, keep=4)  # without ids the positions decide: each track keeps its place
    assert len(set(keys[:10] + keys[30:])) == 1


def three_hands(n: int = 14) -> Capture:
    """``make_capture``'s two hands plus a second person's right hand 12 cm to the right, lost in 3 frames."""
    cap = make_capture(n)
    st = synthetic_track("right", n, seed=2, invalid=(0, 1, 7))
    model = load_builtin("right")
    beta = np.random.default_rng(5).normal(0, 0.5, 10)
    transl = st.transl + np.array([0.12, 0.03, 0.05], np.float32)
    kp3d = forward(model, st.theta.astype(np.float64), beta, transl).keypoints
    cap.hands["right_2"] = HandTrack(
        "right",
        st.theta,
        beta.astype(np.float32),
        transl,
        project_points(kp3d, cap.intrinsics.matrix).astype(np.float32),
        kp3d.astype(np.float32),
        np.ones(n, np.float32),
        np.ones((n, 21), np.float32),
        st.valid,
        rest_joints(model, beta).astype(np.float32),
    )
    cap.validate()
    return cap


@pytest.mark.parametrize("layout", ["handcap", "hamer", "wilor"])
def test_mano_results_of_three_hands_read_back_as_three_tracks(tmp_path, layout):
    cap = three_hands()
    path = writers.write_mano_results(cap, tmp_path / f"{layout}.npz", layout=layout)
    got = read_results(path, ForeignOptions(hands=3)).capture
    assert sorted(got.hands) == ["left", "right", "right_2"]
    for key, h in cap.hands.items():
        g = got.hands[key]
        assert g.side == h.side
        np.testing.assert_array_equal(g.valid, h.valid)
        err = 1000 * np.linalg.norm(g.kp3d[h.valid] - h.kp3d[h.valid], axis=-1).max()
        assert err < MM, f"{key}: keypoints differ by {err:.4f} mm"
    default = read_results(path)  # the default keeps two hands: the most seen of each side
    assert sorted(default.capture.hands) == ["left", "right"]
    assert any("kept 2" in w and "ask for more hands" in w for w in default.warnings), default.warnings


def test_the_command_line_keeps_as_many_hands_as_asked(tmp_path, capsys):
    cap = three_hands()
    src = writers.write_mano_results(cap, tmp_path / "wilor.json", layout="wilor")
    out = tmp_path / "take.npz"
    assert main(["import-results", str(src), "-o", str(out), "--hands", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hands"] == {"right": 13, "right_2": 11, "left": 14}
    assert sorted(read_capture(out).hands) == ["left", "right", "right_2"]
    with pytest.raises(SystemExit):  # argparse's own error (exit 2) for a count out of range
        main(["import-results", str(src), "-o", str(tmp_path / "no.npz"), "--hands", "11"])
    assert "--hands" in capsys.readouterr().err and not (tmp_path / "no.npz").exists()


def test_mediapipe_landmarks_of_three_hands_keep_each_hand_and_fit_three_tracks(tmp_path):
    cap = three_hands()
    path = writers.write_mediapipe_json(cap, tmp_path / "landmarks.json")
    kp = read_keypoints(path, ForeignOptions(image_size=cap.image_size, hands=3))
    assert sorted(kp.hands) == ["left", "right", "right_2"]
    for key, h in cap.hands.items():
        np.testing.assert_array_equal(kp.hands[key].valid, h.valid)
        np.testing.assert_allclose(kp.hands[key].kp2d[h.valid], h.kp2d[h.valid], atol=1e-3)
    got = read_results(path, ForeignOptions(hands=3)).capture
    assert sorted(got.hands) == ["left", "right", "right_2"]
    for key, h in cap.hands.items():
        g, v = got.hands[key], h.valid
        assert g.side == h.side
        np.testing.assert_array_equal(g.valid, v)
        rel = lambda x: x - x[:, :1]  # noqa: E731
        err = 1000 * np.linalg.norm(rel(g.kp3d[v]) - rel(h.kp3d[v]), axis=-1).mean()
        assert err < 10.0, f"{key}: fitted keypoints {err:.1f} mm from the truth (wrist-relative)"


def test_a_bad_track_id_names_the_record(tmp_path):
    cap = three_hands()
    path = writers.write_mano_results(cap, tmp_path / "take.json")
    obj = json.loads(path.read_text())
    obj["hands"][0]["person_id"] = [1, 2]
    path.write_text(json.dumps(obj))
    with pytest.raises(ForeignResultsError, match=r"take.json: hand record 0: 'track_id' must be one whole number"):
        read_results(path)


@pytest.mark.parametrize("container", ["json", "npz"])
def test_ids_in_the_file_reach_the_tracks(tmp_path, container):
    """The right hand's records carry one id before frame 12 and another after: two tracks, as the file says
    (by position they would be one)."""
    cap = make_capture(20)
    path = writers.write_mano_results(cap, tmp_path / f"take.{container}")
    if container == "json":
        obj = json.loads(path.read_text())
        for rec in obj["hands"]:
            rec["person_id"] = f"{rec['side']}-{'early' if rec['frame'] < 12 else 'late'}"
        path.write_text(json.dumps(obj))
    else:
        data = dict(np.load(path))
        late = data["frame"] >= 12
        data["track_id"] = np.where(late, 2, 1) + 10 * (np.asarray(data["side"]) == "left")
        np.savez(path, **data)
    got = read_results(path, ForeignOptions(hands=4)).capture
    assert sorted(got.hands) == ["left", "left_2", "right", "right_2"]
    frames = {k: set(got.frames[h.valid].tolist()) for k, h in got.hands.items()}
    assert frames["right"] | frames["right_2"] == set(cap.frames[cap.hands["right"].valid].tolist())
    assert {min(frames["right"]), min(frames["right_2"])} == {5, 12}


@pytest.mark.blender
def test_the_operator_builds_one_rig_per_hand_where_its_track_is(hc, tmp_path):
    """File › Import › Hand Results with Hands 3 on a three-hand WiLoR file: three rigs, each marked with its
    track, each where its track is (wrist-to-wrist distances of the rigs = the capture's, every frame)."""
    bpy = hc.bpy
    cap = three_hands()
    src = writers.write_mano_results(cap, tmp_path / "wilor.json", layout="wilor")
    assert bpy.ops.handcap.import_results(filepath=str(src), hands=3, smooth=False) == {"FINISHED"}
    props = hc.mod("core.rig_props")
    joints = hc.mod("builders.camera").joints_world
    arms = {props.TRACK.read(o): o for o in bpy.data.objects if o.type == "ARMATURE"}
    assert sorted(arms) == ["left", "right", "right_2"]
    assert {k: props.SIDE.read(o) for k, o in arms.items()} == {"left": "left", "right": "right", "right_2": "right"}
    seen = cap.hands["right"].valid & cap.hands["right_2"].valid & cap.hands["left"].valid
    offset = props.FRAME_OFFSET.read(arms["right"])
    for row in np.flatnonzero(seen):
        bpy.context.scene.frame_set(int(offset + cap.frames[row]))
        wrists = {k: joints(o)[0] for k, o in arms.items()}
        for a, b in (("right", "right_2"), ("right", "left"), ("right_2", "left")):
            want = np.linalg.norm(cap.hands[a].kp3d[row, 0] - cap.hands[b].kp3d[row, 0])
            got = np.linalg.norm(wrists[a] - wrists[b])
            assert abs(got - want) < 1e-4, (row, a, b, got, want)


def test_a_hand_behind_the_camera_and_a_bad_hand_count_get_clear_messages(tmp_path):
    cap = three_hands()
    path = writers.write_mano_results(cap, tmp_path / "take.json")
    obj = json.loads(path.read_text())
    rec = next(r for r in obj["hands"] if r["frame"] == 9 and r["side"] == "left")
    rec["transl"] = [0.0, 0.0, -0.5]
    path.write_text(json.dumps(obj))
    with pytest.raises(ForeignResultsError, match=r"take.json: the left hand is behind the camera in frame 9"):
        read_results(path, ForeignOptions(hands=3))
    for bad in (0, 11, True, 2.5):
        with pytest.raises(ForeignResultsError, match=r"hands must be a whole number 1\.\.10"):
            read_results(path, ForeignOptions(hands=bad))
