"""Two hands in one metric camera space: the joint two-hand fit and the focal length from the footage.

Run: .venv/bin/python benchmarks/bench_two_hands.py [--frames 90] [--seeds 2] [--no-ge2019]

Synthetic part: one person's two hands (built-in model, the same random shape), the right on the image's left,
each moving on its own at its depth (0.4 and 0.55 m at 55 degrees, further at narrower fields of view so the
hands fill the frame alike); over 10-30 % of the clip the left hand turned into the right one's mirror image
beside it, their bone capsules 5 mm apart, and over 62-88 % a fingertip of the left hand touching the right
hand (index tip to index tip, to thumb tip, or on the index finger's DIP joint, one kind per clip in turn;
``inference.fitting.synthetic.two_hand_clip``), seen
by a 1280x720 camera of 30, 45, 60, 75 and 90 degrees horizontal field of view, with 2 px / 5 mm observation
noise; keypoints outside the image are unseen. Each clip is fitted four ways, in the same run:

* before: today's fit without a camera (55 degree field of view), each hand on its own; and the same with
  the true camera;
* after (K estimated): the focal length estimated from the clip (``focal.estimate_focal``), sizes coupled
  and the joint two-hand stage (the focal estimate as it was before, without denoising the 3D landmarks
  over time, is printed beside it);
* after (K given): the same with the true camera.

Printed per way, averaged over the clips and the frames where both hands are seen: MRRPE (error of the
right-to-left wrist vector, mm), camera-frame MPJPE per hand (mm), focal length error (%, and the worst clip),
wrist depth error (% of the distance), interpenetration of the bone capsules (mean over frames of the deepest
overlap, and the max, mm; the truth's own in brackets), the 3D distance of the fingertip pairs (one tip of
each hand) under 25 mm apart in truth in the side-by-side phase (the truth's own in brackets: the tips lie on
the skin beside each other, some 20 mm apart), and that of the fingertip contacts: a left fingertip and a
right keypoint within 12 mm in truth in the touch phase (tip to tip 1-6 mm, a tip on the DIP joint 9-10 mm:
the finger's radius; the target: within 15 mm).

ge2019_dev part (needs ../shared/data): every hand fitted alone from one photo, with the image's K and with
K withheld (the focal length estimated from the photo); PA-MPJPE, camera-frame MPJPE, root depth error; and
what the truth says about the set (wrist depths, focal lengths, principal point offsets of the crops, the
fitted hand's size against the true one).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from handcap.core.capture import CameraIntrinsics
from handcap.inference.fitting import fit as F
from handcap.inference.fitting import focal, synthetic, two_hands
from handcap.inference.handmodel import load_hand_model

REPO = Path(__file__).resolve().parents[1]
GE2019 = REPO.parent / "shared" / "data" / "ge2019_dev"
SIZE = (1280, 720)
TOUCH_M = 0.025
CONTACT_M = 0.012  # a fingertip contact: tip keypoints (on the skin) a few mm apart, a tip on a finger its radius
TIPS = [4, 8, 12, 16, 20]


def scores(right, left, fits, k_true, k_used, models) -> dict[str, float]:
    """The figures of one fitted clip over the frames where both hands are seen (a hand may leave the frame)."""
    seen = right.obs.valid & left.obs.valid
    fr, fl = fits
    rel_fit = fl.kp3d[seen, 0] - fr.kp3d[seen, 0]
    rel_true = left.kp3d[seen, 0] - right.kp3d[seen, 0]
    out = {"mrrpe": 1000 * float(np.linalg.norm(rel_fit - rel_true, axis=-1).mean())}
    for name, truth, fit in (("right", right, fr), ("left", left, fl)):
        out[f"mpjpe_{name}"] = 1000 * float(np.linalg.norm(fit.kp3d[seen] - truth.kp3d[seen], axis=-1).mean())
        z_fit, z_true = fit.kp3d[seen, 0, 2], truth.kp3d[seen, 0, 2]
        out[f"depth_{name}"] = 100 * float(np.mean(np.abs(z_fit - z_true) / z_true))
    out["focal"] = 100 * abs(k_used[0, 0] / k_true[0, 0] - 1)
    radii = [two_hands.capsule_radii(m, f.beta, f.joint_offsets) for m, f in zip(models, fits, strict=True)]
    out["pen_mean"], out["pen_max"] = two_hands.penetration_mm(fr.kp3d, fl.kp3d, *radii, seen)
    true_radii = [two_hands.capsule_radii(m, right.beta, np.zeros((16, 3))) for m in models]
    out["pen_truth"] = two_hands.penetration_mm(right.kp3d, left.kp3d, *true_radii, seen)[0]
    # side by side (the mirror phase): fingertip pairs (one of each hand) under TOUCH_M apart in truth, their
    # capsules 5 mm apart, the tip keypoints (on the skin) some 20 mm apart: beside each other, not touching
    side = seen & (right.phase == "side")
    tr, tl = right.kp3d[:, TIPS][:, :, None], left.kp3d[:, TIPS][:, None]
    dist_true = np.linalg.norm(tr - tl, axis=-1)  # (T, 5, 5)
    touch = side[:, None, None] & (dist_true < TOUCH_M)
    dist_fit = np.linalg.norm(fr.kp3d[:, TIPS][:, :, None] - fl.kp3d[:, TIPS][:, None], axis=-1)
    out["tips"] = 1000 * float(dist_fit[touch].mean()) if touch.any() else float("nan")
    out["tips_truth"] = 1000 * float(dist_true[touch].mean()) if touch.any() else float("nan")
    # fingertip contacts (the touch phases): a fingertip of the left hand and a keypoint of the right one
    # within CONTACT_M in truth (tip to tip, or a tip on the other's finger, 1 mm off the skin)
    phases = seen & (right.phase != "side") & (right.phase != "")
    d_true = np.linalg.norm(left.kp3d[:, TIPS][:, :, None] - right.kp3d[:, None], axis=-1)  # (T, 5, 21)
    d_fit = np.linalg.norm(fl.kp3d[:, TIPS][:, :, None] - fr.kp3d[:, None], axis=-1)
    touch = phases[:, None, None] & (d_true < CONTACT_M)
    out["contact"] = 1000 * float(d_fit[touch].mean()) if touch.any() else float("nan")
    out["contact_truth"] = 1000 * float(d_true[touch].mean()) if touch.any() else float("nan")
    out["contact_n"] = float(touch.sum())
    return out


def synthetic_part(args, models) -> None:
    ordered = [models["right"], models["left"]]
    before_opts = F.FitOptions(same_person=False, two_hands=False)
    after_opts = F.FitOptions()
    rows: dict[str, list[dict]] = {
        "before (55 deg, hands apart)": [],
        "before (K given, apart)": [],
        "after (K estimated)": [],
        "after (K given)": [],
    }
    seconds, focal_before = [], []
    for fov in (30.0, 45.0, 60.0, 75.0, 90.0):
        k = CameraIntrinsics.from_fov(*SIZE, fov).matrix
        for seed in range(args.seeds):
            seed_ = 17 * seed + int(fov)
            # the hands fill the frame alike at every field of view: 0.4 / 0.55 m away at 55 degrees
            far = np.tan(np.radians(27.5)) / np.tan(np.radians(fov / 2))
            # side by side over 10-30 % of the clip, then a fingertip contact over 62-88 % (kinds in turn)
            kind = list(synthetic.TOUCHES)[(2 * int(fov) // 15 + seed) % len(synthetic.TOUCHES)]
            right, left = synthetic.two_hand_clip(
                ordered,
                k,
                SIZE,
                args.frames,
                seed_,
                noise_px=2.0,
                noise_mm=5.0,
                depths=(0.4 * far, 0.55 * far),
                contact=(0.1, 0.3),
                touches=((kind, 0.62, 0.88),),
            )
            obs = [right.obs, left.obs]
            k_default = CameraIntrinsics.from_fov(*SIZE, 55.0).matrix
            fits, _ = F.fit_hands(ordered, obs, k_default, before_opts)
            rows["before (55 deg, hands apart)"].append(scores(right, left, fits, k, k_default, ordered))
            fits, _ = F.fit_hands(ordered, obs, k, before_opts)
            rows["before (K given, apart)"].append(scores(right, left, fits, k, k, ordered))
            start = time.perf_counter()
            est = focal.estimate_focal(obs, SIZE)
            seconds.append(time.perf_counter() - start)
            # the estimate as it was before its 3D landmarks were denoised over time
            est0 = focal.estimate_focal(obs, SIZE, smooth_frames=0.0)
            focal_before.append(100 * abs(est0.focal_px / k[0, 0] - 1))
            k_est = CameraIntrinsics(est.focal_px, est.focal_px, SIZE[0] / 2, SIZE[1] / 2, *SIZE).matrix
            fits, _ = F.fit_hands(ordered, obs, k_est, after_opts)
            rows["after (K estimated)"].append(scores(right, left, fits, k, k_est, ordered))
            fits, _ = F.fit_hands(ordered, obs, k, after_opts)
            rows["after (K given)"].append(scores(right, left, fits, k, k, ordered))
            print(
                f"  fov {fov:.0f} deg seed {seed}: focal estimate {est.focal_px:.0f} +- {est.sigma_px:.0f} px "
                f"(true {k[0, 0]:.0f}, error {100 * (est.focal_px / k[0, 0] - 1):+.1f} %)"
            )
    print(
        f"synthetic interacting clips: {args.frames} frames x 2 hands, 5 fields of view x {args.seeds} seeds; "
        f"focal estimate {np.mean(seconds):.2f} s per clip"
    )
    fb = np.array(focal_before)
    print(
        f"focal estimate without the 3D landmarks' denoising over time (the estimate before): error "
        f"{fb.mean():.1f} % mean, {fb.max():.1f} % worst, {int((fb <= 10).sum())} of {len(fb)} clips within 10 %"
    )
    fa = np.array([r["focal"] for r in rows["after (K estimated)"]])
    print(f"focal estimate now: {int((fa <= 10).sum())} of {len(fa)} clips within 10 %")
    n_contact = int(sum(r["contact_n"] for r in rows["after (K given)"]))
    print(f"fingertip contacts: {n_contact} (frame, pair)s within {1000 * CONTACT_M:.0f} mm in truth")
    head = (
        "way                          MRRPE  MPJPE R/L mm  focal %  depth R/L %  interpen. mean/max mm  "
        "side-by-side tips mm  fingertip contacts mm"
    )
    print(head)
    for name, rs in rows.items():
        m = {key: float(np.nanmean([r[key] for r in rs])) for key in rs[0]}
        worst_focal = max(r["focal"] for r in rs)
        print(
            f"{name:28s} {m['mrrpe']:6.1f}  {m['mpjpe_right']:5.1f} / {m['mpjpe_left']:5.1f}  "
            f"{m['focal']:5.1f} (max {worst_focal:4.1f})  {m['depth_right']:4.1f} / {m['depth_left']:4.1f}  "
            f"{m['pen_mean']:5.2f} / {m['pen_max']:5.1f} (truth {m['pen_truth']:.2f})  {m['tips']:6.1f}"
            f" (truth {m['tips_truth']:.1f})  {m['contact']:6.1f} (truth {m['contact_truth']:.1f})"
        )


def _rms_size(kp: np.ndarray) -> float:
    return float(np.sqrt(((kp - kp.mean(0)) ** 2).sum(-1).mean()))


def ge2019_part(models) -> None:
    if not GE2019.exists():
        print(f"ge2019_dev: skipped, {GE2019} is absent")
        return
    from handcap.inference.evaluation import evaluate_set, landmarker_predictor, load_annotated_set, pa_mpjpe
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions

    data = load_annotated_set(GE2019)
    summary = evaluate_set(data, landmarker_predictor(HandLandmarker(LandmarkerOptions(max_hands=2, tracking=False))))
    options = F.FitOptions()
    res: dict[str, list] = {"K given": [], "K withheld, before": [], "K withheld": []}
    focal_err, focal_before, pp_err, truth, size_ratio, within = [], [], [], [], [], {"before": [], "now": []}
    for im in summary.per_image:
        for hs in im.hands:
            if hs.pred_index is None:
                continue
            pred, gt = im.predictions[hs.pred_index], im.image.hands[hs.gt_index]
            side = pred.side or "right"
            obs = F.HandObservations(
                np.asarray(pred.kp2d, np.float64)[None],
                np.full((1, 21), float(pred.presence or 1.0)),
                np.asarray(pred.world, np.float64)[None],
                np.ones(1, bool),
            )
            w, h = im.image.size
            kk = im.image.K
            # before: the principal point at the crop's centre; now solved with the focal length (one photo), the
            # fit at the centre still (the solved one is no estimate of the camera's, see below)
            est0 = focal.estimate_focal([obs], (w, h), solve_principal=False)
            k_est0 = CameraIntrinsics(est0.focal_px, est0.focal_px, w / 2, h / 2, w, h).matrix
            est = focal.estimate_focal([obs], (w, h))
            k_est = CameraIntrinsics(est.focal_px, est.focal_px, w / 2, h / 2, w, h).matrix
            focal_before.append(100 * (est0.focal_px / kk[0, 0] - 1))
            focal_err.append(100 * (est.focal_px / kk[0, 0] - 1))
            for key, e_ in (("before", est0), ("now", est)):  # is the reported uncertainty honest?
                within[key].append(abs(np.log(e_.focal_px / kk[0, 0])) <= 2 * np.log1p(e_.sigma_px / e_.focal_px))
            off = np.hypot(kk[0, 2] - w / 2, kk[1, 2] - h / 2)
            pp_err.append((np.hypot(*(np.array(est.principal) - kk[:2, 2])), off))
            truth.append((gt.kp3d_mm[0, 2], kk[0, 0], off))
            for name, k in (("K given", kk), ("K withheld, before", k_est0), ("K withheld", k_est)):
                (fit,), _ = F.fit_hands([models[side]], [obs], k, options)
                kp = fit.kp3d[0] * 1000.0
                gt_mm = gt.kp3d_mm
                if name == "K given":  # the fitted hand's size against the truth's (RMS about the centroid)
                    size_ratio.append(_rms_size(kp) / _rms_size(gt_mm))
                res[name].append(
                    (
                        pa_mpjpe(kp, gt_mm),
                        float(np.linalg.norm(kp - gt_mm, axis=-1).mean()),
                        100 * abs(kp[0, 2] - gt_mm[0, 2]) / gt_mm[0, 2],
                    )
                )
    ways = (("before (principal point at the centre)", focal_before), ("now (principal point solved)", focal_err))
    for label, e in ways:
        e = np.array(e)
        print(
            f"ge2019_dev: {len(e)} hands, one photo each; focal estimate {label}: error median {np.median(e):+.1f} %, "
            f"median |error| {np.median(np.abs(e)):.1f} %, mean |error| {np.mean(np.abs(e)):.1f} %"
        )
    pe = np.array(pp_err)
    print(
        f"  solved principal point: {np.median(pe[:, 0]):.0f} px from the truth (median; the crop's centre: "
        f"{np.median(pe[:, 1]):.0f} px); truth within 2 sigma of the estimate: before "
        f"{np.mean(within['before']):.0%}, now {np.mean(within['now']):.0%}"
    )
    z, fx, off = np.array(truth).T
    print(
        f"  truth: wrist depth {z.min():.0f}-{z.max():.0f} mm, fx {fx.min():.0f}-{fx.max():.0f} px, principal point "
        f"{np.median(off):.0f} px (max {off.max():.0f}) from the crop's centre; fitted hand size / true (K given) "
        f"median {np.median(size_ratio):.3f}"
    )
    for name, v in res.items():
        a = np.array(v)
        print(
            f"  {name:18s}: PA-MPJPE {a[:, 0].mean():.2f} mm, camera-frame MPJPE {a[:, 1].mean():.1f} mm, "
            f"root depth error {a[:, 2].mean():.1f} % of the distance"
        )


def focal_floor(models) -> None:
    """Issue 16 (a): what one photo's focal estimate can reach. The same estimator fed the TRUE root-relative
    3D joints and true 2D (perfect evidence) or the network's, the principal point at the crop's centre, the
    true one, or solved with the focal length; the mixes swap one of the network's inputs for the truth."""
    from handcap.inference.evaluation import evaluate_set, landmarker_predictor, load_annotated_set
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions

    data = load_annotated_set(GE2019)
    summary = evaluate_set(data, landmarker_predictor(HandLandmarker(LandmarkerOptions(max_hands=2, tracking=False))))
    pairs = (("true", "true"), ("net", "net"), ("true", "net"), ("net", "true"))
    cases = [(a, b, c) for a, b in pairs for c in ("centre", "true", "solved")]
    err: dict[tuple, list] = {c: [] for c in cases}
    relief, relief_err = [], {s: [] for s in RELIEF_SCALES}
    for im in summary.per_image:
        for hs in im.hands:
            if hs.pred_index is None:
                continue
            pred, gt = im.predictions[hs.pred_index], im.image.hands[hs.gt_index]
            w, h = im.image.size
            kk = im.image.K
            shapes = {"true": gt.kp3d_mm / 1000.0, "net": np.asarray(pred.world, np.float64)}
            points = {"true": gt.kp2d, "net": np.asarray(pred.kp2d, np.float64)}
            for s3, s2, pp in cases:
                obs = F.HandObservations(points[s2][None], np.ones((1, 21)), shapes[s3][None], np.ones(1, bool))
                principal = (kk[0, 2], kk[1, 2]) if pp == "true" else None
                est = focal.estimate_focal([obs], (w, h), principal, solve_principal=pp == "solved")
                err[(s3, s2, pp)].append(100 * (est.focal_px / kk[0, 0] - 1))
            relief.append(_relief(shapes["net"]) / _relief(shapes["true"]))
            for s in RELIEF_SCALES:  # the network's depths stretched about their mean, the principal point solved
                world = shapes["net"].copy()
                world[:, 2] = world[:, 2].mean() + s * (world[:, 2] - world[:, 2].mean())
                obs = F.HandObservations(points["net"][None], np.ones((1, 21)), world[None], np.ones(1, bool))
                est = focal.estimate_focal([obs], (w, h))
                relief_err[s].append(100 * (est.focal_px / kk[0, 0] - 1))
    print("focal floor on ge2019_dev (one photo each; 3D shape, 2D keypoints, principal point):")
    for c, e in err.items():
        e = np.array(e)
        print(
            f"  3D {c[0]:4s} 2D {c[1]:4s} principal {c[2]:6s}: error median {np.median(e):+6.1f} %, median |error| "
            f"{np.median(np.abs(e)):5.1f} %, mean |error| {np.mean(np.abs(e)):5.1f} %, "
            f"within 8 %: {np.mean(np.abs(e) <= 8):.0%}"
        )
    q = np.percentile(relief, [25, 50, 75])
    print(f"  the network's depth relief / the truth's: median {q[1]:.3f} (quartiles {q[0]:.3f}-{q[2]:.3f})")
    for s, e in relief_err.items():
        e = np.array(e)
        print(
            f"  3D net, depths x {s:.3f}, 2D net, principal solved: error median {np.median(e):+6.1f} %, "
            f"median |error| {np.median(np.abs(e)):5.1f} %, mean |error| {np.mean(np.abs(e)):5.1f} %"
        )


RELIEF_SCALES = (1.0, 1 / 0.9, 1 / 0.85)  # a global correction of the landmarks' depth compression, tried


def _relief(points: np.ndarray) -> float:
    """Spread of a hand's depths (camera z) over its spread in the image plane: how much perspective it shows."""
    c = points - points.mean(0)
    return float(np.std(c[:, 2]) / np.sqrt((c[:, :2] ** 2).sum(1).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--no-ge2019", action="store_true")
    ap.add_argument("--focal-floor", action="store_true", help="only the ge2019 focal diagnostic (issue 16 (a))")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {s: load_hand_model("builtin", s, dtype=torch.float64) for s in ("right", "left")}
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    if args.focal_floor:
        return focal_floor(models) if GE2019.exists() else print(f"focal floor: skipped, {GE2019} is absent")
    synthetic_part(args, models)
    if not args.no_ge2019:
        ge2019_part(models)


if __name__ == "__main__":
    main()
