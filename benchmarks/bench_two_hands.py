"""Two hands in one metric camera space: the joint two-hand fit and the focal length from the footage.

Run: .venv/bin/python benchmarks/bench_two_hands.py [--frames 90] [--seeds 2] [--no-ge2019]

Synthetic part: one person's two hands (built-in model, the same random shape), the right on the image's left,
each moving on its own at its depth (0.4 and 0.55 m at 55 degrees, further at narrower fields of view so the
hands fill the frame alike), and over the middle 30 % of the clip the left hand turned into the right one's
mirror image beside it, their bone capsules 5 mm apart (``inference.fitting.synthetic.two_hand_clip``), seen
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
overlap, and the max, mm; the truth's own in brackets), and the 3D distance of the fingertip pairs (one tip of
each hand) that touch in truth (under 25 mm; the truth's own distance in brackets: the tip keypoints lie on
the skin, so touching fingertips are some 20 mm apart).

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
    # fingertip pairs (one of each hand) touching in truth: their capsules meet, the tip keypoints (on the skin)
    # a few mm apart
    tr, tl = right.kp3d[:, TIPS][:, :, None], left.kp3d[:, TIPS][:, None]
    dist_true = np.linalg.norm(tr - tl, axis=-1)  # (T, 5, 5)
    touch = seen[:, None, None] & (dist_true < TOUCH_M)
    dist_fit = np.linalg.norm(fr.kp3d[:, TIPS][:, :, None] - fl.kp3d[:, TIPS][:, None], axis=-1)
    out["tips"] = 1000 * float(dist_fit[touch].mean()) if touch.any() else float("nan")
    out["tips_truth"] = 1000 * float(dist_true[touch].mean()) if touch.any() else float("nan")
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
            right, left = synthetic.two_hand_clip(
                ordered, k, SIZE, args.frames, seed_, noise_px=2.0, noise_mm=5.0, depths=(0.4 * far, 0.55 * far)
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
    head = "way                          MRRPE  MPJPE R/L mm  focal %  depth R/L %  interpen. mean/max mm  tips mm"
    print(head)
    for name, rs in rows.items():
        m = {key: float(np.nanmean([r[key] for r in rs])) for key in rs[0]}
        worst_focal = max(r["focal"] for r in rs)
        print(
            f"{name:28s} {m['mrrpe']:6.1f}  {m['mpjpe_right']:5.1f} / {m['mpjpe_left']:5.1f}  "
            f"{m['focal']:5.1f} (max {worst_focal:4.1f})  {m['depth_right']:4.1f} / {m['depth_left']:4.1f}  "
            f"{m['pen_mean']:5.2f} / {m['pen_max']:5.1f} (truth {m['pen_truth']:.2f})  {m['tips']:6.1f}"
            f" (truth {m['tips_truth']:.1f})"
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
    res: dict[str, list] = {"K given": [], "K withheld": []}
    focal_err, truth, size_ratio = [], [], []
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
            est = focal.estimate_focal([obs], (w, h))
            k_est = CameraIntrinsics(est.focal_px, est.focal_px, w / 2, h / 2, w, h).matrix
            focal_err.append(100 * (est.focal_px / im.image.K[0, 0] - 1))
            kk = im.image.K
            truth.append((gt.kp3d_mm[0, 2], kk[0, 0], np.hypot(kk[0, 2] - w / 2, kk[1, 2] - h / 2)))
            for name, k in (("K given", im.image.K), ("K withheld", k_est)):
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
    e = np.array(focal_err)
    print(
        f"ge2019_dev: {len(e)} hands, one photo each; focal estimate error median {np.median(e):+.1f} %, "
        f"median |error| {np.median(np.abs(e)):.1f} %"
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
            f"  {name:10s}: PA-MPJPE {a[:, 0].mean():.2f} mm, camera-frame MPJPE {a[:, 1].mean():.1f} mm, "
            f"root depth error {a[:, 2].mean():.1f} % of the distance"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--no-ge2019", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {s: load_hand_model("builtin", s, dtype=torch.float64) for s in ("right", "left")}
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    synthetic_part(args, models)
    if not args.no_ge2019:
        ge2019_part(models)


if __name__ == "__main__":
    main()
