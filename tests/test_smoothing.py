"""Smoothing and clean-up (numpy only): filters against scipy, and a synthetic clip with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

from handcap.core import anatomy, cleanup, filters, handmodel, quat
from handcap.core.capture import CameraIntrinsics, Capture, HandTrack, read_capture, write_capture
from handcap.core.capture_smoothing import (
    DISTAL,
    hand_positions,
    smooth_capture,
    smooth_track,
    track_motion,
    track_positions_fn,
)
from handcap.core.smoothing import Motion, SmoothingError, SmoothingSettings, smooth_motion

FPS = 30.0


def clip(t=180, seed=0, rot_noise_deg=1.5, loc_noise_mm=(1.5, 1.5, 6.0), side="right"):
    """(noisy track, true keypoints (T, 21, 3)): a hand moving smoothly inside its joint limits,
    observed with rotation noise on every joint and translation noise (larger in depth, as in
    monocular captures)."""
    rng = np.random.default_rng(seed)
    data = handmodel.load_builtin(side)
    beta = rng.normal(scale=0.5, size=10)
    lim = anatomy.default_joint_limits(side)
    lo, hi = np.maximum(lim[..., 0], -1.2), np.minimum(lim[..., 1], 1.2)
    time = np.arange(t) / FPS
    freq = rng.uniform(0.2, 0.8, size=(16, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(16, 3))
    local = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * freq * time[:, None, None] + phase))
    theta = anatomy.from_local(local, data.joint_frames)
    theta[:, 0] = np.array([0.3, 1.2, -0.4]) + 0.5 * np.sin(2 * np.pi * 0.4 * time)[:, None] * np.array([1, 0.5, 0.2])
    transl = np.stack(
        [0.05 * np.sin(2 * np.pi * 0.3 * time), 0.03 * np.cos(2 * np.pi * 0.5 * time), 0.5 + 0.05 * time / time[-1]], 1
    )
    # Keypoints by the skeleton's forward kinematics (fingertips rigid on their distal joint): the
    # model's exact joints without skinning its whole mesh for every frame.
    rest = handmodel.rest_joints(data, beta)
    tips = handmodel.rest_tips(data, beta) - rest[DISTAL]
    truth = hand_positions(quat.exp(theta), transl, rest, tips)
    noise = quat.exp(rng.normal(scale=np.radians(rot_noise_deg), size=theta.shape))
    noisy_theta = quat.log(quat.mul(quat.exp(theta), noise))
    noisy_transl = transl + rng.normal(size=transl.shape) * np.array(loc_noise_mm) / 1000.0
    noisy = hand_positions(quat.exp(noisy_theta), noisy_transl, rest, tips)
    track = HandTrack(
        side=side,
        theta=noisy_theta.astype(np.float32),
        beta=beta.astype(np.float32),
        transl=noisy_transl.astype(np.float32),
        kp2d=np.zeros((t, 21, 2), np.float32),
        kp3d=noisy.astype(np.float32),
        frame_conf=np.full(t, 0.9, np.float32),
        kp_conf=np.ones((t, 21), np.float32),
        valid=np.ones(t, bool),
        rest_joints=rest.astype(np.float32),
    )
    return track, truth


def mean_error_mm(a, b, mask=None):
    d = np.linalg.norm(a - b, axis=-1)
    return float((d if mask is None else d[mask]).mean() * 1000)


# --- filters -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_gaussian_equals_scipy_on_interior_samples(sigma):
    x = np.random.default_rng(1).normal(size=(150, 3)).cumsum(0)
    y = filters.apply_rows(filters.gaussian_rows(np.ones(150), sigma), x)
    r = filters.gaussian_radius(sigma)
    assert np.abs(y - gaussian_filter1d(x, sigma, axis=0))[r:-r].max() < 1e-9


@pytest.mark.parametrize("window,order", [(5, 2), (11, 3), (31, 3), (9, 0)])
def test_savgol_equals_scipy_everywhere(window, order):
    x = np.random.default_rng(2).normal(size=(120, 2)).cumsum(0)
    y = filters.apply_rows(filters.savgol_rows(np.ones(120), window, order), x)
    assert np.abs(y - savgol_filter(x, window, order, axis=0, mode="interp")).max() < 1e-9


def test_weighted_filter_ignores_invalid_samples_and_keeps_lines_exact():
    t = np.arange(60, dtype=float)
    x = np.stack([2.0 * t + 1.0, -0.5 * t], 1)
    w = np.ones(60)
    w[20:26] = 0.0
    x_bad = x.copy()
    x_bad[20:26] = 1e6  # garbage in frames without data must not leak
    for rows in (filters.gaussian_rows(w, 2.0), filters.savgol_rows(w, 9, 2)):
        assert rows.support.all()
        np.testing.assert_allclose(filters.apply_rows(rows, x_bad), x, atol=1e-6)  # local fits keep lines, ends too


def test_quaternion_filter_is_frame_invariant_and_sign_agnostic():
    rng = np.random.default_rng(3)
    base = quat.exp(np.cumsum(rng.normal(scale=0.05, size=(80, 3)), 0))
    rows = filters.gaussian_rows(np.ones(80), 2.0)
    out = filters.apply_rows_quat(rows, base)
    c = quat.exp(np.array([0.4, -1.1, 2.0]))
    left = filters.apply_rows_quat(rows, quat.mul(c, base))
    assert quat.angle_between(left, quat.mul(c, out)).max() < 1e-9
    flipped = base * np.where(rng.uniform(size=(80, 1)) < 0.5, -1.0, 1.0)
    assert quat.angle_between(filters.apply_rows_quat(rows, flipped), out).max() < 1e-9
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-12)


def test_one_euro_smooths_noise_and_follows_steps():
    rng = np.random.default_rng(4)
    x = np.zeros((300, 1, 3))
    x[150:] = 1.0
    noisy = x + rng.normal(scale=0.01, size=x.shape)
    y = filters.one_euro(noisy, np.ones(300), FPS, 1.0, 0.5, 1.0)
    assert np.std(y[100:150] - x[100:150]) < 0.4 * np.std(noisy[100:150] - x[100:150])
    assert np.abs(y[-1] - 1.0).max() < 0.02  # converged after the step
    held = filters.one_euro(noisy, np.r_[np.ones(100), np.zeros(200)], FPS, 1.0, 0.5, 1.0)
    np.testing.assert_array_equal(held[100:], np.broadcast_to(held[99], held[100:].shape))


# --- whole-hand smoothing against ground truth ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["gaussian", "savgol", "one_euro"])
def test_smoothing_lowers_error_and_jitter(method):
    track, truth = clip()
    settings = SmoothingSettings(method=method)
    new, result = smooth_track(track, settings, FPS)
    rep = result.report
    raw_err = mean_error_mm(result.positions_raw, truth)
    err = mean_error_mm(result.positions, truth)
    assert err < (0.8 if method == "one_euro" else 0.6) * raw_err, (raw_err, err)
    assert rep.jitter_after_mm < rep.jitter_before_mm / (2 if method == "one_euro" else 5), rep
    # the readout is the mean second difference of the joints, in mm
    expect = np.linalg.norm(np.diff(result.positions, 2, axis=0), axis=-1).mean() * 1000
    assert rep.jitter_after_mm == pytest.approx(expect, rel=1e-9)
    # the returned track holds the same pose as the result
    np.testing.assert_allclose(new.kp3d, result.positions, atol=1e-5)
    assert rep.deviation_mean_mm == pytest.approx(mean_error_mm(result.positions, result.positions_raw), rel=1e-9)


def test_strength_zero_leaves_a_group_raw_and_strengths_scale():
    track, truth = clip(seed=5)
    motion = track_motion(track)
    positions = track_positions_fn(track)
    zero = SmoothingSettings(strength_index=0.0, strength_thumb=2.0)
    res = smooth_motion(motion, zero, FPS, positions)
    rot_in = quat.make_continuous(motion.rot)
    index_joints = [1, 2, 3]
    assert quat.angle_between(res.motion.rot[:, index_joints], rot_in[:, index_joints]).max() < 1e-6
    assert quat.angle_between(res.motion.rot[:, 4], rot_in[:, 4]).mean() > 1e-3  # middle finger was smoothed
    base = smooth_motion(motion, SmoothingSettings(), FPS, positions)
    change = lambda r, j: quat.angle_between(r.motion.rot[:, j], rot_in[:, j]).mean()  # noqa: E731
    assert change(res, 13) > change(base, 13)  # thumb strength 2 smooths more than 1


def test_hemisphere_flips_do_not_change_the_result():
    track, _ = clip(seed=6)
    motion = track_motion(track)
    positions = track_positions_fn(track)
    flips = np.where(np.random.default_rng(7).uniform(size=(len(motion.rot), 16, 1)) < 0.5, -1.0, 1.0)
    flipped = Motion(motion.rot * flips, motion.loc, motion.valid, motion.conf, motion.groups)
    a = smooth_motion(motion, SmoothingSettings(), FPS, positions)
    b = smooth_motion(flipped, SmoothingSettings(), FPS, positions)
    assert quat.angle_between(a.motion.rot, b.motion.rot).max() < 1e-9
    # the output itself is hemisphere-continuous (safe for Blender's component-wise key interpolation)
    assert np.all(np.sum(b.motion.rot[1:] * b.motion.rot[:-1], axis=-1) > 0)
    assert b.report.jitter_after_mm < b.report.jitter_before_mm / 5


def test_short_gaps_are_filled_long_ones_left_alone():
    track, truth = clip(seed=8, rot_noise_deg=0.0, loc_noise_mm=(0, 0, 0))
    valid = np.ones(len(track.valid), bool)
    valid[40:45] = False  # 5 frames: bridged
    valid[100:120] = False  # 20 frames > max_gap: left invalid
    track.valid = valid
    track.theta[~valid] = 0.0  # what a capture holds where the hand was lost
    track.transl[~valid] = 0.0
    new, res = smooth_track(track, SmoothingSettings(method="none", max_gap=8), FPS)
    assert res.report.filled_frames == 5
    assert new.valid[40:45].all() and not new.valid[100:120].any()
    assert mean_error_mm(res.positions[40:45], truth[40:45]) < 3.0  # slerp across a short gap of smooth motion
    # with the default filter the gap is bridged too and stays close to the truth
    _, res = smooth_track(track, SmoothingSettings(), FPS)
    assert mean_error_mm(res.positions[40:45], truth[40:45]) < 3.0
    assert res.rot_keys[40:45].all() and not res.rot_keys[100:120].any()


def test_outliers_and_low_confidence_frames_are_replaced():
    track, truth = clip(seed=9, rot_noise_deg=0.3, loc_noise_mm=(0.5, 0.5, 1.0))
    track.transl[60] += np.array([0.0, 0.06, 0.0], np.float32)  # a 6 cm glitch
    track.theta[61, 4:7] += 0.8  # a broken middle finger one frame later
    track.frame_conf[130:132] = 0.05
    track.transl[130:132, 2] += 0.05
    _, res = smooth_track(track, SmoothingSettings(), FPS)
    assert res.outliers[60] and res.outliers[61]
    assert res.low_confidence[130:132].all() and res.report.low_confidence_frames == 2
    assert res.report.outlier_frames <= 4  # no false alarms beyond the glitches
    for frames in (slice(58, 64), slice(128, 134)):
        assert mean_error_mm(res.positions[frames], truth[frames]) < 4.0
    # down-weighting instead of replacing keeps part of the glitch
    _, soft = smooth_track(track, SmoothingSettings(outlier_weight=0.5), FPS)
    assert mean_error_mm(soft.positions[60:61], truth[60:61]) > mean_error_mm(res.positions[60:61], truth[60:61])


def test_key_reduction_keeps_the_motion_within_tolerance():
    track, _ = clip(seed=10, rot_noise_deg=0.0, loc_noise_mm=(0, 0, 0))
    settings = SmoothingSettings(reduce_keys=True, key_tolerance_deg=0.5, key_tolerance_mm=0.5)
    _, res = smooth_track(track, settings, FPS)
    assert res.report.keys_after < 0.5 * res.report.keys_before
    m = res.motion
    frames = np.arange(len(m.rot))
    for j in range(16):
        k = np.flatnonzero(res.rot_keys[:, j])
        rebuilt = np.stack([np.interp(frames, k, m.rot[k, j, c]) for c in range(4)], -1)
        assert quat.angle_between(rebuilt, m.rot[:, j]).max() <= np.radians(0.5) + 1e-9
    k = np.flatnonzero(res.loc_keys)
    rebuilt = np.stack([np.interp(frames, k, m.loc[k, c]) for c in range(3)], -1)
    assert np.linalg.norm(rebuilt - m.loc, axis=-1).max() <= 0.0005 + 1e-12


def test_readouts_and_runs_helpers():
    p = np.zeros((5, 2, 3))
    p[2, :, 0] = 0.001  # one 1 mm bump: accelerations 1, 2, 1 mm on frames 1..3
    assert cleanup.jitter_mm(p, np.ones(5, bool)) == pytest.approx(4.0 / 3.0)
    assert np.isnan(cleanup.jitter_mm(p, np.array([1, 0, 1, 0, 1], bool)))
    assert cleanup.runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert cleanup.bounded_gaps(np.array([0, 1, 0, 0, 1, 0], bool), 2).tolist() == [0, 0, 1, 1, 0, 0]


def test_bad_input_gets_clear_errors():
    track, _ = clip(t=20)
    with pytest.raises(SmoothingError, match="method"):
        smooth_track(track, SmoothingSettings(method="butterworth"), FPS)
    with pytest.raises(SmoothingError, match="window"):
        smooth_track(track, SmoothingSettings(method="savgol", window=8), FPS)
    with pytest.raises(SmoothingError, match="strength_ring"):
        smooth_track(track, SmoothingSettings(strength_ring=-1.0), FPS)
    with pytest.raises(SmoothingError, match="frame rate"):
        smooth_track(track, SmoothingSettings(method="one_euro"), 0.0)
    track.valid[:] = False
    with pytest.raises(SmoothingError, match="nothing captured"):
        smooth_track(track, SmoothingSettings(), FPS)


def test_smoothed_capture_round_trips_through_the_file(tmp_path):
    track, _ = clip(t=40, seed=11)
    empty, _ = clip(t=40, seed=12, side="left")
    empty.valid[:] = False
    cap = Capture(
        source="take.mp4",
        frames=np.arange(40, dtype=np.int64),
        fps=FPS,
        image_size=(640, 480),
        intrinsics=CameraIntrinsics.default(640, 480),
        hand_model="builtin-v1",
        hands={"right": track, "left": empty},
    )
    out, reports = smooth_capture(cap, SmoothingSettings(sigma=2.0))
    assert set(reports) == {"right"}  # the hand never found is left as it is
    assert out.info["smoothing"]["settings"]["sigma"] == 2.0
    back = read_capture(write_capture(tmp_path / "smooth.npz", out))
    np.testing.assert_allclose(back.hands["right"].theta, out.hands["right"].theta)
    assert not np.allclose(back.hands["right"].theta, cap.hands["right"].theta)
    assert SmoothingSettings.from_dict({**SmoothingSettings().to_dict(), "future": 1}) == SmoothingSettings()
