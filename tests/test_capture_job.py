"""Capture job: landmarker results -> tracks -> fit -> capture file, and the ``capture`` command end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from handcap.cli import main
from handcap.core.capture import CameraIntrinsics, read_capture, write_capture
from handcap.inference.capture_job import CaptureJobError, CaptureOptions, capture_from_landmarks, run_capture
from handcap.inference.fitting import synthetic
from handcap.inference.fitting.tracks import NoHandError
from handcap.inference.handmodel import load_hand_model
from handcap.inference.landmarker import FrameResult, HandObservation

from .conftest import shared_path

W, H = 1280, 720


def _synthetic_results(t: int, stride: int, drop_left: range = range(0)):
    """FrameResults of one person's two synthetic hands (one shape) seen by a 55 degree camera."""
    k = CameraIntrinsics.default(W, H).matrix
    clips = {}
    beta = np.random.default_rng(40).normal(0.0, 0.7, 10)
    for seed, side in enumerate(("right", "left")):
        model = load_hand_model("builtin", side, dtype=torch.float64)
        clips[side] = synthetic.synthetic_clip(model, k, (W, H), t, seed=40 + seed, key_every=30, beta=beta)
    results = []
    for f in range(t):
        hands = []
        for tid, side in enumerate(("right", "left")):
            if side == "left" and f in drop_left:
                continue
            o = clips[side].obs
            p_right = 0.9 if side == "right" else 0.1
            hands.append(
                HandObservation(tid, o.kp2d[f], np.zeros(21), o.world[f], 0.95, side, 0.9, np.zeros(4), p_right)
            )
        results.append(FrameResult(f * stride, (W, H), hands))
    return results, clips


def test_a_hand_seen_in_too_few_frames_is_dropped():
    """--min-frames: the left hand, seen in 4 of 12 frames, goes with a warning at 5 and stays at 4."""
    results, _ = _synthetic_results(12, stride=1, drop_left=range(4, 12))
    opts = CaptureOptions(source="synthetic.mp4", device="cpu", fov_deg=55.0, fit={"iterations": (1, 1, 1)})
    kept = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), replace(opts, min_frames=4))
    assert sorted(kept.capture.hands) == ["left", "right"]
    out = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), replace(opts, min_frames=5))
    assert sorted(out.capture.hands) == ["right"] and out.capture.info["options"]["min_frames"] == 5
    assert "left hand dropped: seen in 4 frame(s), fewer than the minimum 5 (--min-frames)" in out.warnings
    with pytest.raises(NoHandError, match="seen in at least 13 frames.*--min-frames"):
        capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), replace(opts, min_frames=13))


def test_capture_from_landmarks_round_trip(tmp_path):
    results, clips = _synthetic_results(40, stride=2, drop_left=range(10, 18))
    opts = CaptureOptions(source="synthetic.mp4", stride=2, device="cpu", fov_deg=55.0)
    out = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), opts)
    cap = out.capture
    assert cap.intrinsics.source == "given" and cap.info["camera"]["fov_deg"] == pytest.approx(55.0)
    assert cap.frames.tolist() == list(range(0, 80, 2)) and cap.fps == 30.0
    assert sorted(cap.hands) == ["left", "right"]
    assert any("left hand missing in frames 20-34 (8 frame(s))" in w for w in out.warnings)
    left = cap.hands["left"]
    assert not left.valid[10:18].any() and left.valid[:10].all() and left.valid[18:].all()
    assert (left.kp_conf[10:18] == 0).all() and (left.frame_conf[10:18] == 0).all()
    for side, track in cap.hands.items():
        truth = clips[side].kp3d
        ok = track.valid
        rel = lambda a: a - a[:, :1]  # noqa: E731
        err = 1000 * np.linalg.norm(rel(track.kp3d[ok]) - rel(truth[ok]), axis=-1)
        assert err.mean() < 1.5, (side, err.mean())
        assert np.abs(track.kp3d[ok, 0, 2] - truth[ok, 0, 2]).mean() < 0.01
        assert np.allclose(track.kp3d[:, 0], track.rest_joints[0] + track.transl, atol=1e-5)
        info = cap.info["fit"][side]
        assert info["err2d_px"]["mean"] < 1.0 and len(info["err2d_px"]["per_frame"]) == 40
        assert (info["err2d_px"]["per_frame"][12] is None) == (side == "left")
    assert cap.info["options"]["stride"] == 2 and cap.info["tracks"]["right"]["track_ids"] == [0]
    path = write_capture(tmp_path / "take.npz", cap)
    back = read_capture(path)
    assert np.allclose(back.hands["left"].theta, cap.hands["left"].theta)
    assert back.info["fit"]["right"]["err3d_mm"]["mean"] == cap.info["fit"]["right"]["err3d_mm"]["mean"]


def test_job_errors():
    with pytest.raises(NoHandError, match="no hand found"):
        capture_from_landmarks([FrameResult(0, (W, H), [])], "x.jpg", 0.0, (W, H), CaptureOptions("x.jpg"))
    with pytest.raises(CaptureJobError, match="--mano-dir"):
        CaptureOptions("x.mp4", model="mano").validate()
    CaptureOptions("x.mp4", hands=3).validate()  # several people's hands
    with pytest.raises(CaptureJobError, match=r"hands must be a whole number 1\.\.10"):
        CaptureOptions("x.mp4", hands=11).validate()


def test_the_palm_search_option_reaches_the_landmarker(monkeypatch, landmarker):
    """--detect sets the landmarker's palm search: tiles for photos by default, tiles around lost hands in
    videos only with tiled-video, the full view alone with full; anything else is refused up front."""
    from handcap.inference.capture_job import landmarker_for
    from handcap.inference.multiscale import FULL_VIEW_ONLY

    # Only the options are checked here: the four landmarkers share the module's loaded networks (same device)
    # instead of loading the weights four times.
    devices = []
    monkeypatch.setattr(
        "handcap.inference.landmarker.HandNets", lambda device, *a, **k: devices.append(device) or landmarker.nets
    )
    tiled = landmarker_for(CaptureOptions("x.mp4"), "cpu").options.detection
    assert tiled.still_tiles and not tiled.video_tiles
    assert landmarker_for(CaptureOptions("x.mp4", detect="tiled-video"), "cpu").options.detection.video_tiles
    assert landmarker_for(CaptureOptions("x.mp4", detect="full"), "cpu").options.detection == FULL_VIEW_ONLY
    search = landmarker_for(CaptureOptions("x.mp4", detect="search"), "cpu").options.detection
    assert search.landmark_search and search.still_tiles and not tiled.landmark_search
    assert devices == ["cpu"] * 4
    with pytest.raises(CaptureJobError, match="detect must be one of"):
        CaptureOptions("x.mp4", detect="tiles").validate()


def test_mano_folder_errors_are_reported_before_landmarks(tmp_path, capsys):
    empty = tmp_path / "mano"
    empty.mkdir()
    out = tmp_path / "take.npz"
    code = main(["capture", "missing.mp4", "-o", str(out), "--model", "mano", "--mano-dir", str(empty)])
    err = capsys.readouterr().err
    assert code == 2 and "MANO" in err and "Traceback" not in err and not out.exists()
    (empty / "MANO_RIGHT.pkl").write_bytes(b"not a pickle")
    code = main(["capture", "missing.mp4", "-o", str(out), "--model", "mano", "--mano-dir", str(empty)])
    assert code == 2 and "MANO" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------------- real footage


@pytest.fixture(scope="module")
def landmarker():
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions

    return HandLandmarker(LandmarkerOptions(max_hands=2, device="cpu"))


@pytest.mark.shared_data
def test_photo_capture_with_the_cli(tmp_path, monkeypatch, landmarker, capsys):
    photo = shared_path("photos", "two_hands_woman.jpg")
    # the command builds its own landmarker: hand it the module's (same options) to save the start-up time
    monkeypatch.setattr("handcap.inference.landmarker.HandLandmarker", lambda *a, **k: landmarker)
    out = tmp_path / "photo.npz"
    assert main(["capture", str(photo), "-o", str(out), "--device", "cpu", "--progress-json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [json.loads(line) for line in lines if line.startswith("{")]
    assert {p["stage"] for p in progress} == {"landmarks", "fit"} and progress[-1]["done"] == progress[-1]["total"]
    assert any(line.startswith("wrote ") for line in lines)
    cap = read_capture(out)
    assert cap.num_frames == 1 and cap.fps == 0.0 and sorted(cap.hands) == ["left", "right"]
    for track in cap.hands.values():
        assert track.valid.all()
        assert cap.info["fit"][track.side]["err2d_px"]["mean"] < 8.0  # landmarks agree with the fitted hand
        assert 0.2 < track.kp3d[0, 0, 2] < 1.5  # a hand held up in front of a camera, metres
    # both hands in front of the person: the fitted hands do not overlap in space
    assert np.linalg.norm(cap.hands["left"].kp3d[0, 9] - cap.hands["right"].kp3d[0, 9]) > 0.1


@pytest.mark.shared_data
def test_video_range_capture(landmarker):
    video = shared_path("videos", "two_hands_counting_720p.mp4")
    opts = CaptureOptions(source=str(video), frames=(30, 60), stride=2, device="cpu")
    result = run_capture(opts, landmarker=landmarker)
    cap = result.capture
    assert cap.frames.tolist() == list(range(30, 60, 2)) and cap.fps == pytest.approx(29.97, abs=0.01)
    assert sorted(cap.hands) == ["left", "right"]
    for track in cap.hands.values():
        assert track.valid.mean() > 0.8
        res = cap.info["fit"][track.side]
        assert res["err2d_px"]["median"] < 10.0 and res["err3d_mm"]["median"] < 20.0
        z = track.kp3d[track.valid, 0, 2]
        assert 0.2 < z.mean() < 2.0 and z.std() < 0.2 * z.mean()  # no depth jumps over one second
    # the person's right hand appears on the image's left side (camera facing the person)
    assert cap.hands["right"].kp2d[:, 0, 0].mean() < cap.hands["left"].kp2d[:, 0, 0].mean()


def test_fit_options_on_the_command_line(tmp_path, monkeypatch, landmarker, capsys):
    """``--fit NAME=VALUE`` reaches the fit (recorded in the capture's info, and used); a bad one is refused
    before anything runs, without a file."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "assets" / "sample" / "two_hands.mp4"
    monkeypatch.setattr("handcap.inference.landmarker.HandLandmarker", lambda *a, **k: landmarker)
    out = tmp_path / "take.npz"
    args = ["capture", str(sample), "-o", str(out), "--frames", "0:4", "--device", "cpu", "--quiet"]
    assert main(args + ["--fit", "polish_iterations=1", "--fit", "iterations=2,2,1"]) == 0
    info = read_capture(out).info
    assert info["options"]["fit"]["polish_iterations"] == 1 and info["options"]["fit"]["iterations"] == [2, 2, 1]
    assert info["fit_report"]["iterations"] == {"stage1": 2, "stage2": 2, "stage3": 1, "polish": 1}
    capsys.readouterr()
    bad = tmp_path / "bad.npz"
    for option, message in (("polish_iterations=x", "bad value"), ("nope=1", "NAME=VALUE"), ("w_3d=-1", "w_3d")):
        assert main(["capture", str(sample), "-o", str(bad), "--fit", option, "--quiet"]) == 2
        assert message in capsys.readouterr().err and not bad.exists()


def test_no_hand_in_input_fails_without_a_file(tmp_path, monkeypatch, landmarker, capsys):
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    monkeypatch.setattr("handcap.inference.landmarker.HandLandmarker", lambda *a, **k: landmarker)
    out = tmp_path / "none.npz"
    assert main(["capture", str(blank), "-o", str(out), "--device", "cpu", "--quiet"]) == 2
    assert "no hand found" in capsys.readouterr().err and not out.exists()


@pytest.mark.shared_data
@pytest.mark.slow
def test_fitted_model_accuracy_on_ge2019(landmarker):
    """The fit against real 3D ground truth with the set's camera: better 3D shape than the landmarks, the
    same 2D accuracy, and the hand placed at the right distance."""
    from handcap.inference.evaluation import evaluate_set, landmarker_predictor, load_annotated_set
    from handcap.inference.fitting.evaluation import add_fitted_metrics

    data = load_annotated_set(shared_path("ge2019_dev"))
    summary = evaluate_set(data, landmarker_predictor(landmarker))
    m = add_fitted_metrics(summary, device="cpu")
    assert summary.detected_rate > 0.95
    assert m["pa_mpjpe_mm_fitted"] <= summary.pa_mpjpe_mm_raw
    assert m["reproj_err_px_fitted"] <= summary.kp2d_err_px + 0.5
    assert m["root_depth_err_pct"] < 10.0 and m["mpjpe_cam_mm_fitted"] < 40.0
    assert summary.to_json()["root_depth_err_mm"] == pytest.approx(m["root_depth_err_mm"], abs=1e-3)


@pytest.mark.shared_data
def test_a_photo_of_several_people_gives_one_track_per_hand(tmp_path):
    """multi_hand_test1.jpg shows two people's right hands: --hands 10 keeps both (keys right, right_2; before,
    a capture held one track per side), each fitted to its own landmarks; --hands 1 keeps one."""
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions

    photo = shared_path("photos", "multi_hand_test1.jpg")
    lm = HandLandmarker(LandmarkerOptions(max_hands=10, device="cpu"))
    out = run_capture(CaptureOptions(source=str(photo), device="cpu", hands=10), landmarker=lm)
    cap = read_capture(write_capture(tmp_path / "people.npz", out.capture))
    assert sorted(cap.hands) == ["right", "right_2"] and {t.side for t in cap.hands.values()} == {"right"}
    assert set(cap.info["fit"]) == set(cap.info["tracks"]) == {"right", "right_2"}
    assert [p["tracks"] for p in cap.info["persons"]] == [["right"], ["right_2"]]  # two right hands: two people
    for key, track in cap.hands.items():
        assert track.valid.all() and cap.info["fit"][key]["err2d_px"]["mean"] < 8.0, key
    wrists = [t.kp2d[0, 0] for t in cap.hands.values()]
    assert np.linalg.norm(wrists[0] - wrists[1]) > 50  # two hands, not one found twice
    one = run_capture(CaptureOptions(source=str(photo), device="cpu", hands=1), landmarker=lm)
    assert list(one.capture.hands) == ["right"]
