"""Issue 21: short gaps bridged from both sides (``inference.fitting.gaps``) and hand tracks paired into persons
(``inference.fitting.persons``), through the capture job to the capture file."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handcap.core.capture import CameraIntrinsics, read_capture, write_capture
from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks
from handcap.inference.fitting import gaps, persons, synthetic
from handcap.inference.handmodel import load_hand_model
from handcap.inference.landmarker import FrameResult, HandObservation

W, H = 1280, 720


@pytest.fixture(scope="module")
def models():
    return {s: load_hand_model("builtin", s, dtype=torch.float64) for s in ("right", "left")}


def test_steady_motion_is_bridged_exactly_and_long_gaps_are_left():
    """A hand turning at constant speed and moving in a straight line at constant speed: slerp and the Hermite
    curve with fitted end velocities give back the true frames; a gap longer than the limit, and frames before
    the first seen one, keep their values and are not flagged."""
    t = 40
    axis = np.random.default_rng(1).normal(size=(16, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = 0.05 * np.arange(t)[:, None, None] + 0.2
    theta = axis[None] * angle
    transl = np.array([0.01, -0.02, 0.5]) + np.arange(t)[:, None] * np.array([0.002, 0.001, -0.003])
    valid = np.ones(t, bool)
    valid[[0, 1]] = False  # before the first seen frame
    valid[10:14] = False  # 4 frames
    valid[20:29] = False  # 9 frames: longer than the limit
    noisy_theta, noisy_transl = theta.copy(), transl.copy()
    noisy_theta[~valid], noisy_transl[~valid] = 0.0, 0.0  # what a fit without evidence might hold
    got_theta, got_transl, bridged = gaps.bridge_values(noisy_theta, noisy_transl, valid, max_gap=8)
    assert np.flatnonzero(bridged).tolist() == [10, 11, 12, 13]
    np.testing.assert_allclose(got_transl[10:14], transl[10:14], atol=1e-12)
    rot_err = (
        Rotation.from_rotvec(got_theta[10:14].reshape(-1, 3)).inv() * Rotation.from_rotvec(theta[10:14].reshape(-1, 3))
    ).magnitude()
    assert rot_err.max() < 1e-9
    assert (got_theta[20:29] == 0).all() and (got_transl[:2] == 0).all()  # left as they were
    assert gaps.gap_runs(valid, 8) == [(10, 14)] and gaps.gap_runs(valid, 9) == [(10, 14), (20, 29)]


def _one_hand_results(clip, drop):
    o = clip.obs
    return [
        FrameResult(
            f,
            (W, H),
            []
            if f in drop
            else [HandObservation(0, o.kp2d[f], np.zeros(21), o.world[f], 0.95, "right", 0.9, np.zeros(4), 0.9)],
        )
        for f in range(len(o.kp2d))
    ]


def test_bridged_frames_are_near_the_truth_flagged_and_written(models, tmp_path):
    """A synthetic clip with a 4-frame and a 12-frame gap, --bridge-gaps 8: the 4 frames are bridged (flagged,
    still not seen) within 30 mm of the true keypoints (pose within 15 mm; the fit's own values there are
    about 50 mm off, bench_gaps.py) and the 12 are not; the mask survives the capture file."""
    k = CameraIntrinsics.default(W, H).matrix
    clip = synthetic.synthetic_clip(models["right"], k, (W, H), 50, seed=3, noise_px=2.0, noise_mm=5.0)
    short, long = set(range(15, 19)), set(range(30, 42))
    results = _one_hand_results(clip, short | long)
    opts = CaptureOptions(source="synthetic.mp4", device="cpu", fov_deg=55.0)
    cap = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), opts, models=models).capture
    off = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), replace(opts, bridge_gaps=0), models=models)
    off = off.capture
    track = cap.hands["right"]
    assert np.flatnonzero(track.bridged).tolist() == sorted(short)
    assert not track.valid[sorted(short | long)].any() and track.keyed.sum() == 50 - len(long)
    assert not off.hands["right"].bridged.any()
    rows = sorted(short)
    err = 1000 * np.linalg.norm(track.kp3d[rows] - clip.kp3d[rows], axis=-1).mean()
    rel = lambda a: a - a[:, :1]  # noqa: E731
    pose = 1000 * np.linalg.norm(rel(track.kp3d[rows]) - rel(clip.kp3d[rows]), axis=-1).mean()
    unbridged = 1000 * np.linalg.norm(off.hands["right"].kp3d[rows] - clip.kp3d[rows], axis=-1).mean()
    assert err < 30.0 and pose < 15.0 and err < 0.6 * unbridged, (err, pose, unbridged)
    assert cap.info["tracks"]["right"]["bridged_frames"] == rows
    assert any("4 frame(s) in gaps of up to 8 frames bridged" in w for w in cap.info["warnings"])
    # the bridged pose is the model's: keypoints agree with theta / transl there
    np.testing.assert_allclose(track.kp3d[rows, 0], track.rest_joints[0] + track.transl[rows], atol=1e-5)
    back = read_capture(write_capture(tmp_path / "bridged.npz", cap))
    assert (back.hands["right"].bridged == track.bridged).all()


def _people_results(models, t=12):
    """Two people: one near the camera on the left of the image, one farther away on the right."""
    k = CameraIntrinsics.default(W, H).matrix
    clips, results = {}, [FrameResult(f, (W, H), []) for f in range(t)]
    layout = {
        "right": ((0.05, 0.2), (0.4, 0.45)),
        "left": ((0.25, 0.4), (0.4, 0.45)),
        "right_2": ((0.6, 0.72), (0.9, 1.0)),
        "left_2": ((0.78, 0.9), (0.9, 1.0)),
    }
    for tid, (key, (xr, zr)) in enumerate(layout.items()):
        side = key.split("_")[0]
        clip = synthetic.synthetic_clip(models[side], k, (W, H), t, seed=10 + tid, x_range=xr, depth_range=zr)
        clips[key] = clip
        p_right = 0.9 if side == "right" else 0.1
        for f in range(t):
            o = clip.obs
            results[f].hands.append(
                HandObservation(tid, o.kp2d[f], np.zeros(21), o.world[f], 0.95, side, 0.9, np.zeros(4), p_right)
            )
    return results, clips


def test_four_hands_of_two_people_give_four_tracks_paired_per_person(models, tmp_path):
    results, clips = _people_results(models)
    opts = CaptureOptions(source="people.mp4", device="cpu", fov_deg=55.0, hands=4, fit={"iterations": (2, 2, 2)})
    out = capture_from_landmarks(results, "people.mp4", 30.0, (W, H), opts, models=models)
    cap = read_capture(write_capture(tmp_path / "people.npz", out.capture))
    assert sorted(cap.hands) == ["left", "left_2", "right", "right_2"]
    assert set(cap.info["fit"]) == set(cap.info["tracks"]) == set(cap.hands)
    # which synthetic hand each track holds (the keys of one side are ranked by confidence, here equal)
    held = {}
    for key, track in cap.hands.items():
        near = {k: np.abs(track.kp2d - c.obs.kp2d).mean() for k, c in clips.items()}
        held[key] = min(near, key=near.get)
        assert near[held[key]] < 1e-3 and held[key].split("_")[0] == track.side
    assert sorted(held.values()) == sorted(clips)
    # each pair is one person's two hands
    pairs = sorted(sorted(held[k] for k in p["tracks"]) for p in cap.info["persons"])
    assert pairs == [["left", "right"], ["left_2", "right_2"]]
    assert all(len(p["size_scale"]) == 2 for p in cap.info["persons"])
    # --hands 2 keeps two of them (before: a third hand overwrote one of the same side)
    two = capture_from_landmarks(results, "people.mp4", 30.0, (W, H), replace(opts, hands=2), models=models)
    assert len(two.capture.hands) == 2


def test_pairing_rules():
    """Nearest right/left tracks seen together pair up; a far or much smaller hand stays alone; two people's
    sizes are not coupled with same_person false."""
    from handcap.inference.fitting.fit import HandObservations

    def obs(x, size, seen=slice(None)):
        kp = np.random.default_rng(int(x)).normal(size=(1, 21, 2)) * size + np.array([x, 300.0])
        kp = np.repeat(kp, 5, 0)
        valid = np.zeros(5, bool)
        valid[seen] = True
        return HandObservations(kp, np.ones((5, 21)), np.zeros((5, 21, 3)), valid)

    tracks = [obs(100, 30), obs(1000, 10), obs(250, 30), obs(1100, 10), obs(600, 30, slice(0, 0))]
    sides = ["right", "right", "left", "left", "left"]
    p = persons.pair_hands(sides, tracks)
    assert sorted(p.pairs) == [(0, 2), (1, 3)]
    assert [r["tracks"] for r in p.records] == [[0, 2], [1, 3], [4]]  # never seen with a right hand: alone
    far = persons.pair_hands(["right", "left", "right"], [obs(100, 10), obs(1200, 10), obs(130, 40)])
    assert far.pairs == []  # 110 sizes apart, and 4x larger
    assert persons.pair_hands([None, None], tracks[:2]).pairs == [(0, 1)]  # two tracks: as the fit always did


def test_two_people_keep_their_own_sizes(models):
    results, _ = _people_results(models, t=6)
    opts = CaptureOptions(
        source="p.mp4", device="cpu", fov_deg=55.0, hands=4, fit={"iterations": (1, 1, 1), "same_person": False}
    )
    cap = capture_from_landmarks(results, "p.mp4", 30.0, (W, H), opts, models=models).capture
    assert len(cap.info["persons"]) == 2 and not any("size_scale" in p for p in cap.info["persons"])
    assert all("contact_frames" in p for p in cap.info["persons"])  # the joint stage still ran per pair
