"""How far the overlay and smoothing readouts can go on a clip: the default fit against the model's floor.

Run: .venv/bin/python benchmarks/fit_limits.py [VIDEO] [--fov 55]
(default VIDEO: ../shared/data/videos/two_hands_counting_720p.mp4)

Landmarks run once; then, per hand:

* overlay: mean reprojection error of the fitted keypoints to the detected 2D keypoints (what Blender's
  readout measures through the matched camera), over all valid frames and over the frames whose detection is
  not doubtful (``core.capture.DOUBTFUL_CONFIDENCE``), split into the six palm points (wrist, thumb CMC, the
  four finger MCPs: rigid in a MANO-style hand) and the fifteen finger points;
* floor: the same for an image-only fit (no 3D landmark term, no pose, temporal or depth priors, 25 steps),
  with the shape kept within the model's plausible range. No choice of weights can bring the default fit below
  it: what is left is the detector's palm points moving against each other, which a rigid palm cannot follow;
* smoothing: jitter reduction and mean deviation from raw (``SmoothingReport``) of the Gaussian smoother for a
  range of widths, and the largest reduction whose deviation stays under 3 mm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from handcap.core.capture import DOUBTFUL_CONFIDENCE, project_points
from handcap.core.capture_smoothing import smooth_track
from handcap.core.smoothing import SmoothingSettings
from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks
from handcap.inference.fitting.fit import FitOptions
from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
from handcap.inference.sources import open_source

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared/data/videos/two_hands_counting_720p.mp4"
PALM = [0, 1, 5, 9, 13, 17]  # HandKeypoint: wrist, thumb CMC, index / middle / ring / pinky MCP
IMAGE_ONLY = FitOptions(
    iterations=(3, 10, 12),
    w_3d=0.0,
    w_pose=1e-8,
    w_twist=1e-8,
    w_shape=1e-6,
    w_rot_velocity=1e-8,
    w_rot_accel=1e-8,
    w_transl_velocity=1e-8,
    w_transl_accel=1e-8,
    w_depth_accel=1e-6,
    polish_iterations=0,
    same_person=False,  # the floor of each hand's own image fit: no coupling between the hands
    two_hands=False,
)
SIGMAS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def overlay_rows(capture) -> dict[str, dict[str, float]]:
    """Per side: mean px over all valid frames, over the confident ones, and palm / finger means."""
    out = {}
    for side, h in capture.hands.items():
        uv = project_points(h.kp3d.astype(np.float64), capture.intrinsics.matrix)
        err = np.linalg.norm(uv - h.kp2d, axis=-1)  # (T, 21)
        v = h.valid
        sure = v & (h.frame_conf >= DOUBTFUL_CONFIDENCE)
        out[side] = {
            "all": float(err[v].mean()),
            "confident": float(err[sure].mean()),
            "doubtful_frames": int((v & ~sure).sum()),
            "palm": float(err[sure][:, PALM].mean()),
            "fingers": float(np.delete(err[sure], PALM, axis=1).mean()),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    ap.add_argument(
        "--fov",
        type=float,
        default=None,
        help="horizontal field of view, degrees (default: estimated from the footage)",
    )
    args = ap.parse_args(argv)
    if not Path(args.video).is_file():
        print(f"no video at {args.video} (the shared data folder is absent?)", file=sys.stderr)
        return 2
    source = open_source(args.video)
    results = HandLandmarker(LandmarkerOptions(max_hands=2, device="cpu")).process_source(source)
    fits = {}
    for name, fit in (("default", FitOptions()), ("image-only floor", IMAGE_ONLY)):
        opts = CaptureOptions(args.video, device="cpu", fov_deg=args.fov, fit=fit)
        fits[name] = capture_from_landmarks(results, args.video, source.fps, source.size, opts).capture
    print(f"{Path(args.video).name}: {len(results)} frames\n")
    print("overlay, px (fitted keypoints vs detected 2D)")
    print(f"{'fit':<18} {'hand':<6} {'all':>6} {'confident':>10} {'doubtful':>9} {'palm':>6} {'fingers':>8}")
    for name, cap in fits.items():
        for side, r in overlay_rows(cap).items():
            print(
                f"{name:<18} {side:<6} {r['all']:6.2f} {r['confident']:10.2f} {r['doubtful_frames']:9d} "
                f"{r['palm']:6.2f} {r['fingers']:8.2f}"
            )
    print("\nGaussian smoothing of the default fit: jitter reduction (x) / mean deviation from raw (mm)")
    cap = fits["default"]
    print(f"{'sigma':<7}" + "".join(f"{side:>18}" for side in cap.hands))
    best = {side: (0.0, None) for side in cap.hands}
    for sigma in SIGMAS:
        cells = []
        for side, h in cap.hands.items():
            rep = smooth_track(h, SmoothingSettings(sigma=sigma), cap.fps)[1].report
            cells.append(f"{rep.jitter_reduction:7.2f}x {rep.deviation_mean_mm:5.2f} mm")
            if rep.deviation_mean_mm < 3.0 and rep.jitter_reduction > best[side][0]:
                best[side] = (rep.jitter_reduction, sigma)
        print(f"{sigma:<7}" + "".join(f"{c:>18}" for c in cells))
    for side, (ratio, sigma) in best.items():
        print(f"{side}: largest reduction under 3 mm: {ratio:.2f}x (sigma {sigma})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
