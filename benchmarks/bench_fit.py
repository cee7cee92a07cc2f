"""Time and accuracy of the hand-model fit (target, issue 16: 210 frames x 2 hands in under 4 s on a 2-core CPU).

Run: .venv/bin/python benchmarks/bench_fit.py [--frames 210] [--repeat 3] [--device cpu] [--real]
     [--polish-iterations N]

Synthetic part: two smooth random hand clips (built-in model, random shapes, poses inside the joint
limits) seen by a 1280x720 camera with a 55 degree field of view, observed with 2D noise (--noise-px,
pixels) and 3D landmark noise (--noise-mm); fits them together as ``capture`` does and prints the wall and
CPU seconds of each run (the landmark networks are not part of it), then the accuracy against the truth:
root-relative keypoint error (mm), wrist depth error (%), 2D residual (px).
--real: also fits MediaPipe-style landmarks of the shared clip two_hands_counting_720p.mp4 (needs
../shared/data; the landmarks are computed first and not timed) and prints time and residuals.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from handcap.core.capture import CameraIntrinsics
from handcap.inference.fitting import fit as F
from handcap.inference.fitting import synthetic
from handcap.inference.handmodel import load_hand_model

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "videos" / "two_hands_counting_720p.mp4"


def timed_fit(models, observations, k, options, dt_scale=1.0):
    if options.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fits, report = F.fit_hands(models, observations, k, options, dt_scale=dt_scale)
    if options.device.startswith("cuda"):
        torch.cuda.synchronize()
    return fits, report, time.perf_counter() - wall, time.process_time() - cpu


def synthetic_part(args, models, options) -> None:
    k = CameraIntrinsics.default(1280, 720).matrix
    clips = [
        synthetic.synthetic_clip(
            models[s], k, (1280, 720), args.frames, seed=i, noise_px=args.noise_px, noise_mm=args.noise_mm
        )
        for i, s in enumerate(("right", "left"))
    ]
    observations = [c.obs for c in clips]
    ordered = [models["right"], models["left"]]
    F.fit_hands(ordered, observations, k, options)  # warm-up (first calls allocate)
    walls = []
    for r in range(args.repeat):
        fits, report, wall, cpu = timed_fit(ordered, observations, k, options)
        walls.append(wall)
        stages = ", ".join(f"{name} {sec:.2f}" for name, sec in report.seconds.items())
        print(f"run {r + 1}: fit {args.frames} frames x 2 hands: wall {wall:.2f} s, cpu {cpu:.2f} s ({stages})")
    print(
        f"median wall {statistics.median(walls):.2f} s on {options.device} "
        f"(torch threads outside the fit: {torch.get_num_threads()})"
    )
    for side, clip, fit in zip(("right", "left"), clips, fits, strict=True):
        rel = 1000 * np.linalg.norm((fit.kp3d - fit.kp3d[:, :1]) - (clip.kp3d - clip.kp3d[:, :1]), axis=-1)
        depth = 100 * np.abs(fit.kp3d[:, 0, 2] - clip.kp3d[:, 0, 2]) / clip.kp3d[:, 0, 2]
        print(
            f"  {side}: root-relative error mean {rel.mean():.2f} mm (p95 per frame "
            f"{np.percentile(rel.mean(1), 95):.2f}), wrist depth error {depth.mean():.2f} %, "
            f"2D residual {np.nanmean(fit.err2d_px):.2f} px, 3D residual {np.nanmean(fit.err3d_mm):.2f} mm"
        )


def real_part(args, models, options) -> None:
    if not VIDEO.exists():
        print(f"--real: skipped, {VIDEO} is absent")
        return
    from handcap.inference.fitting.tracks import build_tracks
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.sources import open_source

    src = open_source(str(VIDEO), frames=slice(0, args.frames))
    results = HandLandmarker(LandmarkerOptions(max_hands=2, device=options.device)).process_source(src)
    tracks = build_tracks(results, 2)
    k = CameraIntrinsics.default(*src.size).matrix
    hand_models = [models[t.side] for t in tracks.hands]
    obs = [t.observations() for t in tracks.hands]
    F.fit_hands(hand_models, obs, k, options, dt_scale=30.0 / src.fps)
    fits, report, wall, cpu = timed_fit(hand_models, obs, k, options, dt_scale=30.0 / src.fps)
    print(f"real clip {VIDEO.name}, {len(results)} frames: fit wall {wall:.2f} s, cpu {cpu:.2f} s")
    for t, fit in zip(tracks.hands, fits, strict=True):
        z = fit.kp3d[fit.valid, 0, 2]
        print(
            f"  {t.side}: seen {int(t.valid.sum())}/{len(results)} frames, 2D residual median "
            f"{np.nanmedian(fit.err2d_px):.2f} px, 3D residual median {np.nanmedian(fit.err3d_mm):.2f} mm, "
            f"wrist depth {z.mean():.3f} m (sd {z.std() * 1000:.1f} mm), beta {np.round(fit.beta, 1).tolist()}"
        )
    for note in tracks.warnings:
        print(f"  note: {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=210)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--noise-px", type=float, default=2.0)
    ap.add_argument("--noise-mm", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the fit itself uses 1 on CPU)")
    ap.add_argument("--real", action="store_true", help="also fit the real two-hand clip's landmarks")
    ap.add_argument(
        "--polish-iterations", type=int, default=F.FitOptions.polish_iterations, help="final 2D polish steps"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    options = F.FitOptions(device=args.device, polish_iterations=args.polish_iterations)
    models = {s: load_hand_model("builtin", s, device=args.device, dtype=torch.float64) for s in ("right", "left")}
    synthetic_part(args, models, options)
    if args.real:
        real_part(args, models, options)


if __name__ == "__main__":
    main()
