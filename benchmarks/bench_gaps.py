"""Bridging short gaps (issue 21, ``inference.fitting.gaps``): error of bridged frames, in mm, for gaps of 2, 4
and 8 frames.

* synthetic: clips of one hand (``fitting.synthetic``, 2D keypoints and 3D landmarks with noise) with the hand
  dropped over three gaps per clip; error against the true keypoints;
* real: two_hands_counting_720p.mp4 with the left hand painted out (``roi.mask_hands``, as bench_detection
  does) over three spans per run; error against the capture of the unpainted video. The painted frames are
  those the landmarker misses plus any it needs to pick the hand up again, so the gap may be longer than painted.

Each row gives the mean keypoint error (camera frame: position and pose) and the wrist-relative error (pose only)
of the gap's frames for: the fit's own values there (``--bridge-gaps 0``: unkeyed, the start's interpolation held
by the translation priors), the bridge with a straight translation, and the bridge as shipped (Hermite curve).
Seen frames' error is the reference. Usage: ``.venv/bin/python benchmarks/bench_gaps.py [--skip-real]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from handcap.core.capture import CameraIntrinsics  # noqa: E402
from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks  # noqa: E402
from handcap.inference.fitting import gaps, synthetic  # noqa: E402
from handcap.inference.handmodel import load_hand_model  # noqa: E402
from handcap.inference.landmarker import FrameResult, HandObservation  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
W, H = 1280, 720
GAPS = (2, 4, 8)
SEEDS = range(6)
STARTS = (12, 30, 46)  # three gaps per synthetic clip of 60 frames
REAL_STARTS = (40, 110, 170)  # the left hand painted out from these frames of the 210


def _errors(kp3d: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """(mean keypoint error, mean wrist-relative keypoint error) in mm over ``rows``."""
    a, b = kp3d[rows].astype(np.float64), truth[rows].astype(np.float64)
    full = 1000 * np.linalg.norm(a - b, axis=-1).mean()
    rel = 1000 * np.linalg.norm((a - a[:, :1]) - (b - b[:, :1]), axis=-1).mean()
    return float(full), float(rel)


def _variants(track, model, max_gap: int):
    """kp3d over the clip for: the fit's own gap values, the straight bridge, the Hermite bridge; and the mask."""
    out = {"fit (unkeyed)": track.kp3d}
    mask = None
    for curve in ("linear", "hermite"):
        bridged, mask = gaps.bridge_fit(track, model, max_gap, curve)
        out[f"bridge {curve}"] = bridged.kp3d
    return out, mask


def synthetic_rows(models, options) -> None:
    k = CameraIntrinsics.default(W, H).matrix
    print(f"synthetic: {len(SEEDS)} clips of 60 frames (noise 2 px, 5 mm), gaps at frames {STARTS}")
    for g in GAPS:
        sums: dict[str, list] = {}
        seen_err = []
        for seed in SEEDS:
            clip = synthetic.synthetic_clip(models["right"], k, (W, H), 60, seed=seed, noise_px=2.0, noise_mm=5.0)
            drop = {f for s in STARTS for f in range(s, s + g)}
            results = []
            for f in range(60):
                o = clip.obs
                hands = (
                    []
                    if f in drop
                    else [HandObservation(0, o.kp2d[f], np.zeros(21), o.world[f], 0.95, "right", 0.9, np.zeros(4), 0.9)]
                )
                results.append(FrameResult(f, (W, H), hands))
            cap = capture_from_landmarks(results, "synthetic.mp4", 30.0, (W, H), options, models=models).capture
            track = cap.hands["right"]
            variants, mask = _variants(track, models["right"], g)
            assert mask.sum() == len(drop), (mask.sum(), len(drop))
            for name, kp in variants.items():
                sums.setdefault(name, []).append(_errors(kp, clip.kp3d, mask))
            seen_err.append(_errors(track.kp3d, clip.kp3d, track.valid))
        _print_row(f"gap {g}", sums, np.mean(seen_err, 0))


def _print_row(label: str, sums: dict, seen) -> None:
    cells = [f"{name} {np.mean([e[0] for e in v]):.1f} / {np.mean([e[1] for e in v]):.1f}" for name, v in sums.items()]
    print(f"  {label}: " + "; ".join(cells) + f"; seen frames {seen[0]:.1f} / {seen[1]:.1f} mm (keypoint / pose)")


def real_rows(models, options) -> None:
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.roi import mask_hands
    from handcap.inference.sources import open_source

    path = DATA / "videos" / "two_hands_counting_720p.mp4"
    if not path.is_file():
        print(f"real: skipped, {path} is absent")
        return
    frames = np.stack([f for _, f in open_source(str(path))])
    lm = HandLandmarker(LandmarkerOptions(device="cpu", max_hands=2))
    clean = lm.process_source(frames)
    fps = 29.97
    options = replace(options, fov_deg=None)  # the focal length estimated from the hands, as a user's capture
    ref = capture_from_landmarks(clean, str(path), fps, (W, H), replace(options, bridge_gaps=0), models=models)
    ref_left = ref.capture.hands["left"]
    print(f"real: {path.name}, left hand painted out for G frames from frames {REAL_STARTS}; error vs the unpainted")
    for g in GAPS:
        hidden = frames.copy()
        for s in REAL_STARTS:
            for i in range(s, s + g):
                left = [h.kp2d for h in clean[i].hands if h.side == "left"]
                if left:
                    hidden[i] = mask_hands(frames[i], np.array(left))
        res = lm.process_source(hidden)
        # the unpainted capture's camera: a focal length estimated again from the painted clip moves every frame's
        # depth (seen frames 15-27 mm off with it), which is not the bridge's error
        k = ref.capture.intrinsics
        cap = capture_from_landmarks(res, str(path), fps, (W, H), options, models=models, intrinsics=k).capture
        track = cap.hands["left"]
        painted = {i for s in REAL_STARTS for i in range(s, s + g)}
        lengths = [b - a for a, b in gaps.gap_runs(track.valid, 10**6) if painted & set(range(a, b))]
        variants, mask = _variants(track, models["left"], max([8, *lengths]))
        sums = {name: [_errors(kp, ref_left.kp3d, mask & ref_left.valid)] for name, kp in variants.items()}
        seen = _errors(track.kp3d, ref_left.kp3d, track.valid & ref_left.valid)
        # the bridge limit is the longest gap a painted span became (the landmarker may take a frame more to pick
        # the hand up again), so every painted span is measured
        print(f"  painted {g}: gaps found {lengths}, {int(mask.sum())} frame(s) bridged")
        _print_row(f"gap {g}", sums, seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-real", action="store_true", help="synthetic clips only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    models = {s: load_hand_model("builtin", s, dtype=torch.float64) for s in ("right", "left")}
    options = CaptureOptions(source="bench", device="cpu", fov_deg=55.0, bridge_gaps=0)
    synthetic_rows(models, options)
    if not args.skip_real:
        real_rows(models, options)


if __name__ == "__main__":
    main()
