"""Hand-model fit: analytic IK, synthetic round trips with a known camera, gaps and NaNs, side decisions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handcap.core.capture import CameraIntrinsics
from handcap.inference.camera import CameraOptionsError, intrinsics_from_options
from handcap.inference.fitting import fit as F
from handcap.inference.fitting import ik, synthetic
from handcap.inference.fitting.tracks import NoHandError, build_tracks
from handcap.inference.handmodel import load_hand_model

CAM = CameraIntrinsics.default(1280, 720)
K = CAM.matrix


@pytest.fixture(scope="module")
def models():
    return {s: load_hand_model("builtin", s, dtype=torch.float64) for s in ("right", "left")}


def _root_rel_mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-keypoint distance (T, 21) in mm after moving both wrists to the origin."""
    return 1000 * np.linalg.norm((a - a[:, :1]) - (b - b[:, :1]), axis=-1)


def test_ik_reproduces_noiseless_keypoints(models):
    for side, model in models.items():
        clip = synthetic.synthetic_clip(model, K, (1280, 720), 40, seed=3)
        zero = torch.zeros(1, 16, 3, dtype=torch.float64)
        rest = model(zero, torch.as_tensor(clip.beta)[None], zero[:, 0], with_vertices=False).keypoints[0].numpy()
        world = clip.kp3d - clip.kp3d[:, :1]
        theta = ik.ik_from_world(world, rest, model.joint_frames.numpy(), model.parents.numpy())
        th = torch.as_tensor(theta)
        out = model(th, torch.as_tensor(np.tile(clip.beta, (40, 1))), th[:, 0] * 0, with_vertices=False)
        posed = (out.keypoints - out.joints[:, :1]).numpy()
        assert np.abs(posed - world).max() < 1e-5, side  # tips are skinned: micrometres from blending
        # translation from the 2D projections alone, exact without noise
        wrist = ik.solve_translation(posed, clip.obs.kp2d, np.ones((40, 21)), K)
        assert np.abs(wrist - clip.kp3d[:, 0]).max() < 1e-5


def test_shape_from_bone_lengths_recovers_beta(models):
    model = models["right"]
    betas = torch.cat([torch.zeros(1, 10), torch.eye(10)]).double()
    zero = torch.zeros(11, 16, 3, dtype=torch.float64)
    rest = model(zero, betas, zero[:, 0], with_vertices=False).keypoints.numpy()
    clip = synthetic.synthetic_clip(model, K, (1280, 720), 20, seed=5)
    beta = ik.fit_shape(rest[0], (rest[1:] - rest[:1]).transpose(1, 2, 0), clip.kp3d, sigma_m=1e-4)
    assert (
        np.abs(
            (rest[0] + (rest[1:] - rest[:1]).transpose(1, 2, 0) @ beta)
            - (rest[0] + (rest[1:] - rest[:1]).transpose(1, 2, 0) @ clip.beta)
        ).max()
        < 2e-4
    )  # rest keypoints within 0.2 mm (beta directions the keypoints cannot see are free)


# Noiseless: 0.79 mm before the final 2D polish, 1.6 mm after it (the polish follows the image with stage 3's
# skeleton, whose small errors it turns into pose; on real footage that buys the overlay, docs/fitting.md).
@pytest.mark.parametrize("noise_px, noise_mm, bound_mm", [(0.0, 0.0, 2.0), (2.0, 5.0, 5.0)])
def test_round_trip_two_hands(models, noise_px, noise_mm, bound_mm):
    clips = [
        synthetic.synthetic_clip(models[s], K, (1280, 720), 60, seed=10 + i, noise_px=noise_px, noise_mm=noise_mm)
        for i, s in enumerate(("right", "left"))
    ]
    # two random shapes, so not one person's hands: no size coupling (tests/test_two_hands.py tests it)
    options = F.FitOptions(same_person=False)
    fits, report = F.fit_hands([models["right"], models["left"]], [c.obs for c in clips], K, options)
    assert set(report.seconds) == {"init", "stage1", "stage2", "stage3", "polish", "joint_stage"}
    for clip, fit in zip(clips, fits, strict=True):
        err = _root_rel_mm(fit.kp3d, clip.kp3d)
        assert err.mean() < bound_mm, err.mean()
        # camera-frame placement: depth is only as good as the hand's size, but within a few percent here
        depth_err = np.abs(fit.kp3d[:, 0, 2] - clip.kp3d[:, 0, 2]) / clip.kp3d[:, 0, 2]
        assert depth_err.mean() < 0.05
        assert np.nanmean(fit.err2d_px) < 1.3 * noise_px + 1.0  # mean noise distance is 1.25 sigma
        assert fit.theta.shape == (60, 16, 3) and fit.transl.shape == (60, 3) and fit.beta.shape == (10,)
        # MANO convention: wrist = J0(beta) + transl
        assert np.allclose(fit.kp3d[:, 0], fit.rest_joints[0] + fit.transl, atol=1e-9)


def test_depth_prior_holds_depth_noise_and_depth_step_lowers_the_cost(models):
    """Hand at a constant depth with 2 px keypoint noise: the depth comes only from the hand's size in pixels, so
    per frame it flickers; the log-depth prior (solved over the whole clip by ``depth_step``) holds it."""
    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), 45, seed=7, noise_px=2.0, depth_range=(0.5, 0.5))
    flicker = {}
    for w in (0.0, 10.0):
        (fit,), _ = F.fit_hands([models["right"]], [clip.obs], K, F.FitOptions(w_depth_accel=w))
        depth = fit.kp3d[:, 0, 2]
        flicker[w] = 1000 * np.abs(np.diff(depth, 2)).mean()  # mm / frame^2
        assert np.abs(depth - clip.kp3d[:, 0, 2]).mean() < 0.03 * 0.5
    assert flicker[10.0] < 0.5 * flicker[0.0], flicker
    # one depth step from a fitted state never raises the track's objective
    s = F.make_solver(models["right"], F._clean(clip.obs), K, F.FitOptions())
    with torch.no_grad():
        before = s.total_cost()
        s.depth_step()
        assert s.total_cost() <= before


@pytest.mark.parametrize("w_polish_depth, depth_mm", [(0.0, 2.5), (0.2, 1.0)])
def test_polish_follows_the_image_where_3d_landmarks_disagree(models, w_polish_depth, depth_mm):
    """MediaPipe's 3D landmarks and its 2D keypoints disagree on proportions. Here the 3D landmarks' fingers are
    made 20 % shorter than the projected ones: the polish (no 3D term) brings the reprojection close to the 2D
    keypoints while the 3D pose (depth about the centroid) stays close, closer still with the optional prior
    holding the keypoints' depths."""
    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), 30, seed=2)
    obs = clip.obs
    world = obs.world.copy()
    for finger in range(5):  # scale each finger's keypoints towards its base
        base = 1 + 4 * finger
        chain = world[:, base + 1 : base + 4]
        world[:, base + 1 : base + 4] = world[:, base : base + 1] + 0.8 * (chain - world[:, base : base + 1])
    biased = F.HandObservations(obs.kp2d, obs.kp_conf, world, obs.world_valid)
    fits = {}
    for n in (0, 3):
        opts = F.FitOptions(polish_iterations=n, w_polish_depth=w_polish_depth)
        (fits[n],), report = F.fit_hands([models["right"]], [biased], K, opts)
        assert report.iterations["polish"] == n
    before, after = np.nanmean(fits[0].err2d_px), np.nanmean(fits[3].err2d_px)
    assert after < 0.7 * before, (before, after)
    depth = lambda f: f.kp3d[..., 2] - f.kp3d[..., 2].mean(1, keepdims=True)  # noqa: E731
    assert 1000 * np.abs(depth(fits[3]) - depth(fits[0])).mean() < depth_mm  # mm


def test_palm_joint_offsets_calibrate_a_skeleton_beta_cannot_make(models):
    """The true hand's knuckles and thumb CMC sit 3-5 mm off anything beta can make (as the detector's palm
    points do on real footage): the per-clip rest-joint offsets move the skeleton towards the true one, and
    the reprojection and the 3D keypoints improve; the capture's rest joints are J(beta) + offsets."""
    from handcap.core.handmodel import rest_joints
    from handcap.inference.fitting.identity import OFFSET_JOINTS

    true_off = np.zeros((16, 3))  # MANO order: index1, ring1, pinky1, thumb1
    true_off[[1, 10, 7, 13]] = [[0.003, 0.002, 0.003], [0, 0.003, 0], [-0.004, -0.002, -0.002], [0.002, 0.003, 0.0035]]
    model = models["right"]
    clip = synthetic.synthetic_clip(
        model, K, (1280, 720), 60, seed=21, noise_px=1.0, noise_mm=2.0, joint_offsets=true_off
    )
    true_rest = rest_joints(model.data, clip.beta) + true_off
    fits = {}
    for bound in (0.0, 0.008):
        (fits[bound],), _ = F.fit_hands([model], [clip.obs], K, F.FitOptions(max_joint_offset_m=bound))
    off, on = fits[0.0], fits[0.008]
    assert not off.joint_offsets.any()
    others = np.setdiff1d(np.arange(16), OFFSET_JOINTS)
    assert not on.joint_offsets[others].any() and np.abs(on.joint_offsets).max() <= 0.008 + 1e-12
    np.testing.assert_allclose(on.rest_joints, rest_joints(model.data, on.beta) + on.joint_offsets, atol=1e-9)
    assert np.nanmean(on.err2d_px) < 0.8 * np.nanmean(off.err2d_px), (off.err2d_px.mean(), on.err2d_px.mean())
    wrist_rel = lambda j: j - j[..., :1, :]  # noqa: E731
    kp_mm = lambda f: 1000 * np.linalg.norm(wrist_rel(f.kp3d) - wrist_rel(clip.kp3d), axis=-1).mean()  # noqa: E731
    assert kp_mm(on) < 0.8 * kp_mm(off), (kp_mm(off), kp_mm(on))
    palm = [1, 4, 7, 10, 13]  # rest joints about the wrist (the wrist's own offset is a translation)
    skel = lambda f: 1000 * np.linalg.norm(wrist_rel(f.rest_joints) - wrist_rel(true_rest), axis=-1)[palm].mean()  # noqa: E731
    assert skel(on) < 0.75 * skel(off), (skel(off), skel(on))


def test_fit_is_deterministic(models):
    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), 12, seed=1, noise_px=2, noise_mm=5)
    a, _ = F.fit_hands([models["right"]], [clip.obs], K)
    b, _ = F.fit_hands([models["right"]], [clip.obs], K)
    assert np.array_equal(a[0].theta, b[0].theta) and np.array_equal(a[0].transl, b[0].transl)


def test_photos_polish_less_than_clips(models):
    """A one-frame fit (a photo) takes ``photo_polish_iterations`` polish steps, a clip ``polish_iterations``."""
    photo = synthetic.synthetic_clip(models["left"], K, (1280, 720), 1, seed=7, noise_px=1.0, noise_mm=3.0).obs
    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), 8, seed=3, noise_px=1.0, noise_mm=3.0).obs
    opts = F.FitOptions(polish_iterations=6, photo_polish_iterations=2)
    (short,), report = F.fit_hands([models["left"]], [photo], K, opts)
    assert report.iterations["polish"] == 2
    _, report = F.fit_hands([models["right"]], [clip], K, opts)
    assert report.iterations["polish"] == 6
    (long,), _ = F.fit_hands([models["left"]], [photo], K, F.FitOptions(photo_polish_iterations=6))
    assert np.abs(long.theta - short.theta).max() > 1e-4  # the count is really used
    with pytest.raises(F.FitError, match="photo_polish_iterations"):
        F.FitOptions(photo_polish_iterations=-1).validate()


def test_single_photo(models):
    # one frame says little about the shape (the shape prior dominates): use the mean shape here
    for seed in range(7, 10):
        clip = synthetic.synthetic_clip(models["left"], K, (1280, 720), 1, seed=seed, beta_std=0.0)
        (fit,), _ = F.fit_hands([models["left"]], [clip.obs], K)
        assert _root_rel_mm(fit.kp3d, clip.kp3d).mean() < 1.0
        assert np.abs(fit.joint_offsets).max() < 2e-4  # one frame cannot calibrate the skeleton: the prior holds it
        assert abs(fit.kp3d[0, 0, 2] - clip.kp3d[0, 0, 2]) < 0.01 * clip.kp3d[0, 0, 2]


def test_gaps_and_nans_are_masked_and_filled(models):
    t = 45
    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), t, seed=4, key_every=20)
    obs = clip.obs
    gap = np.arange(15, 25)
    obs.world_valid[gap] = False
    obs.kp_conf[gap] = 0.0
    obs.kp2d[gap] = np.nan  # whatever a missing frame holds must not leak into the fit
    obs.world[gap] = np.nan
    obs.kp2d[5, [4, 8, 12]] = np.nan  # a few NaN keypoints in a seen frame
    obs.kp2d[30] = np.inf  # a seen frame whose 2D keypoints are all unusable
    (fit,), _ = F.fit_hands([models["right"]], [obs], K)
    assert np.isfinite(fit.kp3d).all() and np.isfinite(fit.theta).all() and np.isfinite(fit.transl).all()
    expected_valid = np.ones(t, bool)
    expected_valid[gap] = False
    expected_valid[30] = False
    assert np.array_equal(fit.valid, expected_valid)
    assert np.isnan(fit.err2d_px[gap]).all() and np.isfinite(fit.err2d_px[expected_valid]).all()
    err = _root_rel_mm(fit.kp3d, clip.kp3d)
    # Measured: 0.79 / 0.78 mm before the final 2D polish, 1.27 / 1.1 mm after it (the polish follows the image
    # with stage 3's skeleton, so on noiseless data it gives up a little 3D accuracy).
    assert err[expected_valid].mean() < 1.5
    assert err[5].mean() < 1.6  # NaN keypoints ignored, the rest still fit
    # the polish holds keypoints without 2D evidence where the 3D landmarks put them (measured <= 1.0 mm; they
    # folded 5-15 mm towards the flat hand when nothing held them)
    assert err[5, [4, 8, 12]].max() < 3.0
    # filled frames follow the motion: wrist inside the span of the frames around the gap
    lo = np.minimum(clip.kp3d[14, 0], clip.kp3d[25, 0]) - 0.03
    hi = np.maximum(clip.kp3d[14, 0], clip.kp3d[25, 0]) + 0.03
    assert ((fit.kp3d[gap, 0] > lo) & (fit.kp3d[gap, 0] < hi)).all()


def test_fit_rejects_bad_input(models):
    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), 5, seed=0)
    obs = clip.obs
    with pytest.raises(F.FitError, match="kp2d has shape"):
        F.fit_hands(
            [models["right"]], [F.HandObservations(obs.kp2d[:, :20], obs.kp_conf, obs.world, obs.world_valid)], K
        )
    empty = F.HandObservations(obs.kp2d, np.zeros_like(obs.kp_conf), obs.world, obs.world_valid)
    with pytest.raises(F.FitError, match="no frame with 3D landmarks"):
        F.fit_hands([models["right"]], [empty], K)
    with pytest.raises(F.FitError, match="camera matrix"):
        F.fit_hands([models["right"]], [obs], np.zeros((3, 3)))


# ----------------------------------------------------------------------------------------------- tracks


def _obs(track_id, p_right, presence=0.9, x=0.0):
    kp2d = np.stack([np.linspace(100, 200, 21) + x, np.linspace(300, 400, 21)], -1)
    side = "right" if p_right >= 0.5 else "left"
    return SimpleNamespace(
        track_id=track_id,
        kp2d=kp2d,
        world=np.random.default_rng(track_id).normal(0, 0.03, (21, 3)),
        presence=presence,
        side=side,
        side_score=max(p_right, 1 - p_right),
        p_right=p_right,
    )


def _frames(per_frame):
    return [SimpleNamespace(frame_index=i, image_size=(640, 480), hands=hands) for i, hands in enumerate(per_frame)]


def test_side_is_decided_per_track_by_weighted_majority():
    rng = np.random.default_rng(0)
    per_frame = []
    for f in range(40):
        # track 0 is the right hand but 30 % of its frames say left; track 1 the left hand, mostly
        p0 = 0.2 if rng.uniform() < 0.3 else 0.9
        p1 = 0.6 if f % 5 == 0 else 0.1
        per_frame.append([_obs(0, p0), _obs(1, p1, x=300)])
    ts = build_tracks(_frames(per_frame))
    sides = {h.side: h.track_ids for h in ts.hands}
    assert sides == {"right": [0], "left": [1]}
    assert all(h.valid.all() for h in ts.hands)


def test_simultaneous_hands_never_share_a_side():
    # both tracks vote right, one weakly: the weak one must become the left hand (they are seen together)
    per_frame = [[_obs(0, 0.95), _obs(1, 0.55, x=300)] for _ in range(10)]
    ts = build_tracks(_frames(per_frame))
    assert [(h.side, h.track_ids) for h in ts.hands] == [("right", [0]), ("left", [1])]
    assert any("ambiguous" in w for w in ts.warnings)


def test_frames_where_both_crops_read_as_one_side_are_down_weighted():
    # hands intertwined in frames 10-12: the right hand's crop reads as a left hand while the left hand is seen
    per_frame = [[_obs(0, 0.95), _obs(1, 0.05, x=300)] for _ in range(20)]
    for f, p in ((10, 0.1), (11, 0.2), (12, 0.45)):
        per_frame[f] = [_obs(0, p, presence=0.8), _obs(1, 0.05, x=300)]
    ts = build_tracks(_frames(per_frame))
    right, left = ts.hands
    assert right.side == "right" and np.flatnonzero(right.contested).tolist() == [10, 11, 12]
    # confidence = presence x this frame's probability of the track's side; the frames stay valid
    np.testing.assert_allclose(right.frame_conf[10:13], [0.8 * 0.1, 0.8 * 0.2, 0.8 * 0.45])
    np.testing.assert_allclose(right.kp_conf[10:13], np.array([[0.08], [0.16], [0.36]]) * np.ones(21))
    assert right.valid.all() and right.frame_conf[9] == pytest.approx(0.9)
    assert not left.contested.any() and np.allclose(left.frame_conf, 0.9)
    assert any("right hand: 3 frame(s) where its crop read as the left hand" in w for w in ts.warnings)
    # a single hand whose handedness wavers is not contested (nothing says its crop shows another hand)
    alone = build_tracks(_frames([[_obs(0, p)] for p in (0.9, 0.3, 0.9, 0.9)]))
    assert not alone.hands[0].contested.any() and np.allclose(alone.hands[0].frame_conf, 0.9)


def test_lost_hand_rejoins_its_track_and_gap_is_reported():
    per_frame = [[_obs(0, 0.9)] for _ in range(10)] + [[] for _ in range(5)] + [[_obs(2, 0.8)] for _ in range(10)]
    per_frame[3] = [_obs(0, 0.9), _obs(1, 0.2, x=300)]  # a left hand flashes by once
    ts = build_tracks(_frames(per_frame))
    right = next(h for h in ts.hands if h.side == "right")
    assert right.track_ids == [0, 2]
    assert not right.valid[10:15].any() and right.valid[:10].all() and right.valid[15:].all()
    assert any("right hand missing in frames 10-14 (5 frame(s))" in w for w in ts.warnings)
    one = build_tracks(_frames(per_frame), max_hands=1)
    assert [h.side for h in one.hands] == ["right"] and any("dropped the left hand" in w for w in one.warnings)


def test_nan_observations_and_empty_input():
    bad = _obs(0, 0.9)
    bad.kp2d = np.full((21, 2), np.nan)
    ts = build_tracks(_frames([[_obs(0, 0.9)], [bad], [_obs(0, 0.9)]]))
    assert ts.hands[0].valid.tolist() == [True, False, True]
    assert any("NaN" in w for w in ts.warnings)
    with pytest.raises(NoHandError, match="no hand found in any of the 3 frame"):
        build_tracks(_frames([[], [], []]))
    with pytest.raises(NoHandError):
        build_tracks(_frames([[bad]]))


# ----------------------------------------------------------------------------------------------- camera


def test_camera_options():
    assert intrinsics_from_options(1920, 1080).fx == pytest.approx(CameraIntrinsics.default(1920, 1080).fx)
    k = intrinsics_from_options(1920, 1080, focal_mm=50, sensor_mm=36)
    assert k.fx == pytest.approx(50 / 36 * 1920) and (k.cx, k.cy) == (960, 540)
    assert intrinsics_from_options(1920, 1080, focal_mm=24).fx == pytest.approx(24 / 36 * 1920)
    assert intrinsics_from_options(640, 480, focal_px=500.0, principal=(300, 250)).matrix[:2, 2].tolist() == [300, 250]
    assert intrinsics_from_options(1000, 500, fov_deg=90).fx == pytest.approx(500)
    with pytest.raises(CameraOptionsError, match="only one of"):
        intrinsics_from_options(640, 480, focal_px=500, fov_deg=60)
    with pytest.raises(CameraOptionsError, match="needs --focal-mm"):
        intrinsics_from_options(640, 480, sensor_mm=23.5)
    with pytest.raises(CameraOptionsError, match="outside 1..179"):
        intrinsics_from_options(640, 480, fov_deg=200)
    with pytest.raises(CameraOptionsError, match="positive"):
        intrinsics_from_options(640, 480, focal_px=-3)


def test_fitted_evaluation_scores(models):
    from handcap.inference.evaluation import GtHand, GtImage, Prediction
    from handcap.inference.fitting.evaluation import fit_scores

    clip = synthetic.synthetic_clip(models["right"], K, (1280, 720), 1, seed=2, beta_std=0.0)
    gt = GtHand("right", clip.obs.kp2d[0], np.ones(21, bool), clip.kp3d[0] * 1000)
    image = GtImage(None, (1280, 720), K, [gt])
    pred = Prediction(clip.obs.kp2d[0], clip.obs.world[0], "right", 1.0)
    s = fit_scores(image, pred, gt, models, F.FitOptions())
    assert s["pa_mpjpe_mm_fitted"] < 1.0 and s["mpjpe_cam_mm_fitted"] < 5.0 and s["reproj_err_px_fitted"] < 0.5
    assert s["root_depth_err_pct"] < 1.0 and s["root_depth_err_mm"] == pytest.approx(
        s["root_depth_err_pct"] * clip.kp3d[0, 0, 2] * 10
    )
    # without K only the 2D and the shape scores are defined
    image.K = None
    assert set(fit_scores(image, pred, gt, models, F.FitOptions())) == {"pa_mpjpe_mm_fitted", "reproj_err_px_fitted"}
