"""Two hands in one metric camera space (issue 16): focal length from the footage, one hand size for one
person, the joint two-hand stage (contact, non-interpenetration), the capture's record of its intrinsics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handcap.core.capture import CameraIntrinsics, Capture, HandTrack, read_capture, write_capture
from handcap.inference.camera import intrinsics_for_capture
from handcap.inference.fitting import fit as F
from handcap.inference.fitting import focal, synthetic, two_hands
from handcap.inference.handmodel import load_hand_model

SIZE = (1280, 720)


@pytest.fixture(scope="module")
def models():
    return [load_hand_model("builtin", s, dtype=torch.float64) for s in ("right", "left")]


@pytest.fixture(scope="module")
def clip(models):
    """One person's hands at 0.4 / 0.55 m, touching over the middle of 60 frames, 60 degree camera, noisy."""
    k = CameraIntrinsics.from_fov(*SIZE, 60.0).matrix
    right, left = synthetic.two_hand_clip(models, k, SIZE, 60, seed=60, noise_px=2.0, noise_mm=5.0, contact=(0.2, 0.8))
    return k, right, left


def test_segment_closest_points_match_a_dense_search():
    rng = np.random.default_rng(0)
    p1, q1, p2, q2 = (rng.normal(size=(50, 3)) for _ in range(4))
    c1, c2 = two_hands.segment_closest(p1, q1, p2, q2)
    u = np.linspace(0, 1, 201)
    a = p1[:, None] + u[None, :, None] * (q1 - p1)[:, None]
    b = p2[:, None] + u[None, :, None] * (q2 - p2)[:, None]
    dense = np.linalg.norm(a[:, :, None] - b[:, None], axis=-1).min((1, 2))
    got = np.linalg.norm(c1 - c2, axis=-1)
    assert np.all(got <= dense + 1e-12) and np.allclose(got, dense, atol=2e-2)


@pytest.mark.parametrize("t", [1, 2, 5, 40])
def test_pentadiagonal_solve_matches_dense(t):
    rng = np.random.default_rng(t)
    a = rng.normal(size=(t, 6, 6))
    hess = a @ a.transpose(0, 2, 1) + 6 * np.eye(6)
    k1, k2 = rng.uniform(-1, 0, max(t - 1, 0)), rng.uniform(0, 0.5, max(t - 2, 0))
    rhs = rng.normal(size=(t, 6))
    dense = np.zeros((6 * t, 6 * t))
    for i in range(t):
        dense[6 * i : 6 * i + 6, 6 * i : 6 * i + 6] = hess[i]
        for off, k in ((1, k1), (2, k2)):
            if i + off < t:
                blk = k[i] * np.eye(6)
                dense[6 * i : 6 * i + 6, 6 * (i + off) : 6 * (i + off) + 6] = blk
                dense[6 * (i + off) : 6 * (i + off) + 6, 6 * i : 6 * i + 6] = blk
    want = np.linalg.solve(dense, rhs.reshape(-1)).reshape(t, 6)
    np.testing.assert_allclose(two_hands.solve_pentadiagonal(hess, k1, k2, rhs), want, atol=1e-10)


def test_capsules_of_the_truth_touch_but_do_not_overlap(models, clip):
    """The synthetic hands meet as mirror images beside each other: capsules touching, not interpenetrating."""
    _, right, left = clip
    radii = two_hands.capsule_radii(models[0], right.beta, np.zeros((16, 3)))
    assert np.all((radii >= 0.004) & (radii <= 0.012))
    mean, worst = two_hands.penetration_mm(right.kp3d, left.kp3d, radii, radii, right.obs.valid & left.obs.valid)
    assert worst < 3.0 and mean < 0.5
    tips = np.linalg.norm(
        right.kp3d[:, [4, 8, 12, 16, 20]][:, :, None] - left.kp3d[:, [4, 8, 12, 16, 20]][:, None], axis=-1
    )
    assert tips.min() < 0.025  # some fingertip pair touches


def test_focal_length_from_a_clip(clip):
    k, right, left = clip
    est = focal.estimate_focal([right.obs, left.obs], SIZE)
    assert est is not None and est.frames > 60
    # measured 2026-12-03: +8.4 % (sigma 4.3 %); without the 3D landmarks' denoising over time +10.3 % (7.7 %)
    assert abs(est.focal_px / k[0, 0] - 1) < 0.10
    assert 0 < est.sigma_px < 0.3 * est.focal_px
    assert abs(est.focal_px - k[0, 0]) < 3 * est.sigma_px
    assert est.fov_deg == pytest.approx(focal.fov_of(est.focal_px, SIZE[0]))


def _shape_error_mm(world, truth, ok):
    """Mean keypoint error (mm) of 3D landmarks against the true keypoints, each frame rigidly aligned."""
    c = world - world.mean(1, keepdims=True)
    t = truth - truth.mean(1, keepdims=True)
    a = np.einsum("nij,npj->npi", focal._kabsch(c, t), c)
    return 1000 * float(np.linalg.norm(a - t, axis=-1)[ok].mean())


def test_denoising_the_3d_landmarks_brings_them_closer_to_the_hand(clip):
    """Averaging each frame's 3D landmarks with its turned neighbours' more than halves their 5 mm error on the
    moving clip (measured 7.7 -> 3.1 mm with the width chosen from the clip, 3.3 mm at 4 frames); exact
    landmarks a fixed 4 frames blur by about 2 mm (the fingers move), the chosen width leaves them exact."""
    _, right, _ = clip
    ok = right.obs.world_valid
    raw = _shape_error_mm(right.obs.world, right.kp3d, ok)
    for width in (4.0, None):
        assert _shape_error_mm(focal._denoise_world(right.obs.world, ok, width), right.kp3d, ok) < 0.5 * raw
    exact = right.kp3d - right.kp3d.mean(1, keepdims=True)
    assert _shape_error_mm(focal._denoise_world(exact, ok, 4.0), right.kp3d, ok) < 2.5  # measured 2.1 mm
    assert _shape_error_mm(focal._denoise_world(exact, ok, None), right.kp3d, ok) < 0.3  # measured 0.09 mm
    np.testing.assert_array_equal(focal._denoise_world(right.obs.world, ok, 0.0), right.obs.world)


def test_focal_needs_hands():
    empty = F.HandObservations(np.zeros((3, 21, 2)), np.zeros((3, 21)), np.zeros((3, 21, 3)), np.zeros(3, bool))
    assert focal.estimate_focal([empty], SIZE) is None


def test_same_person_gives_both_hands_one_size(models, clip):
    """With the coupling the two fitted skeletons have one size; without it they differ; the image fit holds."""
    k, right, left = clip
    obs = [right.obs, left.obs]
    apart, _ = F.fit_hands(models, obs, k, F.FitOptions(same_person=False, two_hands=False))
    joint, report = F.fit_hands(models, obs, k, F.FitOptions(two_hands=False))

    def size(fit):
        kp = models[0](torch.zeros(1, 16, 3, dtype=torch.float64), torch.as_tensor(fit.beta)[None]).keypoints[0]
        kp = kp.numpy()
        return float(np.sqrt(((kp - kp.mean(0)) ** 2).sum(-1).mean()))

    assert abs(size(joint[0]) / size(joint[1]) - 1) < 0.01
    assert len(report.two_hands["size_scale"]) == 2
    for a, b in zip(apart, joint, strict=True):
        assert np.nanmean(b.err2d_px) < np.nanmean(a.err2d_px) + 0.2
    # wrist-to-wrist vector in truth vs fit: no worse than the hands fitted apart (plus 1 mm)
    rel = [
        np.linalg.norm((f[1].kp3d[:, 0] - f[0].kp3d[:, 0]) - (left.kp3d[:, 0] - right.kp3d[:, 0]), axis=-1).mean()
        for f in (apart, joint)
    ]
    assert rel[1] < rel[0] + 1e-3


def _truth_fits(models, right, left):
    out = []
    for h in (right, left):
        out.append(
            F.HandFit(
                h.theta,
                h.beta,
                h.transl,
                h.kp3d.copy(),
                np.zeros((16, 3)),
                np.zeros((16, 3)),
                np.ones(len(h.kp3d), bool),
                np.zeros(len(h.kp3d)),
                np.zeros(len(h.kp3d)),
            )
        )
    return out


def test_joint_stage_pulls_touching_keypoints_to_one_depth_and_separates_overlaps(models, clip):
    k, right, left = clip
    fits = _truth_fits(models, right, left)
    # in frames 10-29 the left index tip is put 3 cm behind the right one, on the same viewing ray (the hands
    # then overlap elsewhere: the penetration term is off here, tested below)
    frames = np.zeros(len(right.kp3d), bool)
    frames[10:30] = True
    tip = right.kp3d[:, 8]
    target = tip * (1 + 0.03 / tip[:, 2:])
    moved = fits[1].kp3d.copy()
    moved[frames] += (target - moved[:, 8])[frames, None]
    fits[1] = F.HandFit(**{**fits[1].__dict__, "kp3d": moved})
    # noise-free observations of that
    obs = [
        F.HandObservations(two_hands._project(f.kp3d, k)[0], np.ones((60, 21)), h.obs.world, np.ones(60, bool))
        for f, h in zip(fits, (right, left), strict=True)
    ]
    options = F.FitOptions(w_two_hand_image=1.0, w_penetration=0.0)  # the contact term alone
    out, info = two_hands.joint_stage(models, fits, [F._clean(o) for o in obs], k, options)
    assert info.contact_frames >= 15

    def gap(fs):
        return np.abs(fs[0].kp3d[frames, 8, 2] - fs[1].kp3d[frames, 8, 2]).mean()

    assert gap(fits) == pytest.approx(0.03) and gap(out) < 0.5 * gap(fits)
    # theta and shape untouched, translation and keypoints moved together
    np.testing.assert_allclose(out[1].kp3d - fits[1].kp3d, (out[1].transl - fits[1].transl)[:, None].repeat(21, 1))
    # overlaps: where the hands touch in truth, the left hand moved 15 mm into the right one
    fits = _truth_fits(models, right, left)
    radii = [two_hands.capsule_radii(m, right.beta, np.zeros((16, 3))) for m in models]
    touching = two_hands.capsule_overlaps(right.kp3d, left.kp3d, *radii)[0].max((1, 2)) > -0.012  # about 5 mm apart
    kp = fits[1].kp3d.copy()
    kp[touching, :, 0] -= 0.015
    fits[1] = F.HandFit(**{**fits[1].__dict__, "kp3d": kp})
    deep_before = two_hands.penetration_mm(fits[0].kp3d, kp, *radii, touching)[0]
    obs = [
        F.HandObservations(two_hands._project(f.kp3d, k)[0], np.ones((60, 21)), h.obs.world, np.ones(60, bool))
        for f, h in zip(fits, (right, left), strict=True)
    ]
    out, info = two_hands.joint_stage(models, fits, [F._clean(o) for o in obs], k, F.FitOptions(w_two_hand_image=1.0))
    deep_after = two_hands.penetration_mm(out[0].kp3d, out[1].kp3d, *radii, touching)[0]
    assert touching.sum() > 5 and deep_before > 5.0 and deep_after < 0.5 * deep_before
    assert info.penetration_mm["before_max"] > info.penetration_mm["after_max"]


def test_fit_options_switch_the_two_hand_stages_off(models, clip):
    k, right, left = clip
    _, report = F.fit_hands(models, [right.obs, left.obs], k, F.FitOptions(same_person=False, two_hands=False))
    assert report.two_hands == {} and "joint_stage" not in report.seconds
    _, report = F.fit_hands(models, [right.obs, left.obs], k, F.FitOptions())
    assert "joint_stage" in report.seconds and "contact_frames" in report.two_hands
    with pytest.raises(F.FitError, match="w_contact"):
        F.FitOptions(w_contact=-1.0).validate()


def test_intrinsics_for_capture_given_estimated_default(clip):
    _, right, left = clip
    k, info = intrinsics_for_capture(*SIZE, [right.obs, left.obs], fov_deg=50.0)
    assert k.source == "given" and info["source"] == "given" and info["fov_deg"] == pytest.approx(50.0)
    k, info = intrinsics_for_capture(*SIZE, [right.obs, left.obs])
    assert k.source == "estimated" and info["sigma_px"] > 0 and k.fx == pytest.approx(info["focal_px"], abs=0.01)
    empty = F.HandObservations(np.zeros((2, 21, 2)), np.zeros((2, 21)), np.zeros((2, 21, 3)), np.zeros(2, bool))
    k, info = intrinsics_for_capture(*SIZE, [empty])
    assert k.source == "default" and k.fx == pytest.approx(CameraIntrinsics.default(*SIZE).fx)


def _tiny_capture(k: CameraIntrinsics) -> Capture:
    t = 2
    track = HandTrack(
        side="right",
        theta=np.zeros((t, 16, 3), np.float32),
        beta=np.zeros(10, np.float32),
        transl=np.tile(np.array([0.0, 0.0, 0.5], np.float32), (t, 1)),
        kp2d=np.full((t, 21, 2), 100.0, np.float32),
        kp3d=np.tile(np.array([0.0, 0.0, 0.5], np.float32), (t, 21, 1)),
        frame_conf=np.ones(t, np.float32),
        kp_conf=np.ones((t, 21), np.float32),
        valid=np.ones(t, bool),
        rest_joints=_rest_joints().astype(np.float32),
    )
    return Capture("x.mp4", np.arange(t), 30.0, (k.width, k.height), k, "builtin-v1", {"right": track})


def _rest_joints() -> np.ndarray:
    model = load_hand_model("builtin", "right", dtype=torch.float64)
    zero = torch.zeros(1, 16, 3, dtype=torch.float64)
    return model(zero, torch.zeros(1, 10, dtype=torch.float64), zero[:, 0], with_vertices=False).rest_joints[0].numpy()


@pytest.mark.parametrize("source", ["estimated", "given", "default", ""])
def test_capture_file_records_how_the_intrinsics_were_obtained(tmp_path, source):
    k = CameraIntrinsics(1100.0, 1100.0, 640.0, 360.0, 1280, 720, source)
    path = write_capture(tmp_path / "take.npz", _tiny_capture(k))
    back = read_capture(path).intrinsics
    assert back.source == source and back.fx == pytest.approx(1100.0)


def test_capture_job_estimates_the_camera_when_none_is_given(tmp_path):
    from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks

    from .test_capture_job import H, W, _synthetic_results

    results, clips = _synthetic_results(40, stride=1)
    out = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), CaptureOptions("synthetic.mp4", device="cpu"))
    cap = out.capture
    true_f = CameraIntrinsics.default(W, H).fx
    assert cap.intrinsics.source == "estimated"
    assert cap.info["camera"]["source"] == "estimated" and cap.info["camera"]["sigma_px"] > 0
    assert abs(cap.intrinsics.fx / true_f - 1) < 0.10  # noise-free landmarks
    assert "contact_frames" in cap.info["fit_report"]["two_hands"]
    back = read_capture(write_capture(tmp_path / "take.npz", cap))
    assert back.intrinsics.source == "estimated" and back.info["camera"] == cap.info["camera"]


@pytest.mark.parametrize("kind", list(synthetic.TOUCHES))
def test_synthetic_fingertip_contacts_touch_without_overlap(models, kind):
    """The touch phases of the synthetic clips: a left fingertip on the right hand, 1 mm off its skin (tip to
    tip a few mm between the keypoints, on a finger its radius), the capsules apart (0.5 mm slack), and the
    left hand brought there from its own depth."""
    k = CameraIntrinsics.from_fov(*SIZE, 60.0).matrix
    right, left = synthetic.two_hand_clip(models, k, SIZE, 90, seed=3, contact=None, touches=((kind, 0.62, 0.88),))
    assert set(right.phase) == {"", kind} and (right.phase == left.phase).all()
    full = np.zeros(90, bool)
    full[int(0.62 * 90) + 8 : int(0.88 * 90) - 8] = True  # blended fully in
    tips = [4, 8, 12, 16, 20]
    near = np.linalg.norm(left.kp3d[:, tips][:, :, None] - right.kp3d[:, None], axis=-1).min((1, 2))
    assert np.median(near[full]) < (0.007 if kind != "index-on-finger" else 0.011)
    radii = two_hands.capsule_radii(models[0], right.beta, np.zeros((16, 3)))
    assert two_hands.penetration_mm(right.kp3d, left.kp3d, radii, radii, full)[1] < 1.0
    apart = right.phase == ""
    assert (left.kp3d[apart, 0, 2] - right.kp3d[apart, 0, 2]).mean() > 0.05  # from its own depth, further


def test_joint_fit_keeps_fingertip_contacts_together(models):
    """A clip with a thumb tip touching an index tip (K given): the fitted contacts' 3D distance with the
    two-hand stages is no worse than with the hands fitted apart, and bounded. Measured 2026-12-03: 31.9 mm
    on this clip (the issue's 15 mm is met on the benchmark's mean, 11.4 mm, not on every clip)."""
    k = CameraIntrinsics.from_fov(*SIZE, 60.0).matrix
    right, left = synthetic.two_hand_clip(
        models, k, SIZE, 60, seed=5, noise_px=2.0, noise_mm=5.0, contact=None, touches=(("thumb-index", 0.3, 0.8),)
    )
    seen = right.obs.valid & left.obs.valid & (right.phase != "")
    tips = [4, 8, 12, 16, 20]
    truth = np.linalg.norm(left.kp3d[:, tips][:, :, None] - right.kp3d[:, None], axis=-1)
    touch = seen[:, None, None] & (truth < 0.012)
    assert touch.sum() >= 10
    dist = []
    for options in (F.FitOptions(same_person=False, two_hands=False), F.FitOptions()):
        fits, _ = F.fit_hands(models, [right.obs, left.obs], k, options)
        fitted = np.linalg.norm(fits[1].kp3d[:, tips][:, :, None] - fits[0].kp3d[:, None], axis=-1)
        dist.append(fitted[touch].mean())
    assert dist[1] <= dist[0] + 0.002 and dist[1] < 0.04, dist
