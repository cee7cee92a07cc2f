"""Smoothing on synthetic hands with known truth: error against the truth, jitter, deviation, speed.

Run: .venv/bin/python benchmarks/bench_smoothing.py [--frames 600] [--clips 4]

Each clip: a hand of the built-in model moving smoothly inside its joint limits (0.2-0.8 Hz per
joint, wrist swinging, slow drift in depth), 30 fps, observed with per-frame noise like a
monocular capture (1.5 deg on every joint rotation, 1.5 mm across and 6 mm in depth on the
translation), 2 % of frames dropped in short gaps and 1 % glitched by 3-6 cm. Keypoints come
from the skeleton's forward kinematics. Prints, per method with its default settings, the mean
keypoint error against the truth (all frames; glitches included in the raw row), the jitter
(mean joint acceleration, mm/frame^2, truth given for reference), the deviation from the raw
capture and the time per 1000 frames of one hand.

--capture TAKE.npz: instead, readouts on a real capture file (``python -m handcap capture``): per hand, the
fit's reprojection error (kp3d projected with the capture's intrinsics vs the detected kp2d, mean over the
keypoints of the valid frames, px), the default smoothing's jitter reduction and deviation, and the smoothed
motion's reprojection error over the frames the smoothing keeps as data (not replaced as outliers or doubtful).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from handcap.core import anatomy, handmodel, quat
from handcap.core.capture import HandTrack, project_points, read_capture
from handcap.core.capture_smoothing import DISTAL, hand_positions, smooth_track
from handcap.core.cleanup import jitter_mm
from handcap.core.smoothing import SmoothingSettings

FPS = 30.0


def clip(frames: int, seed: int):
    rng = np.random.default_rng(seed)
    data = handmodel.load_builtin("right")
    beta = rng.normal(scale=0.5, size=10)
    lim = anatomy.default_joint_limits("right")
    lo, hi = np.maximum(lim[..., 0], -1.2), np.minimum(lim[..., 1], 1.2)
    t = np.arange(frames) / FPS
    freq = rng.uniform(0.2, 0.8, size=(16, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(16, 3))
    theta = anatomy.from_local(
        lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * freq * t[:, None, None] + phase)), data.joint_frames
    )
    theta[:, 0] = np.array([0.3, 1.2, -0.4]) + 0.5 * np.sin(2 * np.pi * 0.4 * t)[:, None] * np.array([1, 0.5, 0.2])
    transl = np.stack(
        [0.05 * np.sin(2 * np.pi * 0.3 * t), 0.03 * np.cos(2 * np.pi * 0.5 * t), 0.5 + 0.1 * np.sin(0.5 * t)], 1
    )
    rest = handmodel.rest_joints(data, beta)
    tips = handmodel.rest_tips(data, beta) - rest[DISTAL]
    truth = hand_positions(quat.exp(theta), transl, rest, tips)
    noisy_theta = quat.log(quat.mul(quat.exp(theta), quat.exp(rng.normal(scale=np.radians(1.5), size=theta.shape))))
    noisy_transl = transl + rng.normal(size=transl.shape) * np.array([0.0015, 0.0015, 0.006])
    glitch = rng.choice(frames, size=max(1, frames // 100), replace=False)
    noisy_transl[glitch] += (
        rng.uniform(0.03, 0.06, size=(len(glitch), 1)) * rng.normal(size=(len(glitch), 3)) / np.sqrt(3)
    )
    valid = np.ones(frames, bool)
    for start in rng.choice(frames - 6, size=max(1, frames // 150), replace=False):
        valid[start : start + rng.integers(1, 5)] = False
    kp3d = hand_positions(quat.exp(noisy_theta), noisy_transl, rest, tips)
    track = HandTrack(
        side="right",
        theta=noisy_theta.astype(np.float32),
        beta=beta.astype(np.float32),
        transl=noisy_transl.astype(np.float32),
        kp2d=np.zeros((frames, 21, 2), np.float32),
        kp3d=kp3d.astype(np.float32),
        frame_conf=np.full(frames, 0.9, np.float32),
        kp_conf=np.ones((frames, 21), np.float32),
        valid=valid,
        rest_joints=rest.astype(np.float32),
    )
    return track, truth


def real_capture(path: str) -> None:
    cap = read_capture(path)
    settings = SmoothingSettings()
    print(
        f"{path}: {len(cap.frames)} frames at {cap.fps:.2f} fps, "
        f"default smoothing ({settings.method}, sigma {settings.sigma})"
    )
    k = cap.intrinsics.matrix
    for side, track in cap.hands.items():
        err = np.linalg.norm(project_points(track.kp3d.astype(np.float64), k) - track.kp2d, axis=-1)
        smoothed, res = smooth_track(track, settings, cap.fps)
        r = res.report
        kept = track.valid & ~res.outliers & ~res.low_confidence
        err_s = np.linalg.norm(project_points(smoothed.kp3d.astype(np.float64), k) - track.kp2d, axis=-1)
        print(
            f"{side:5s}: reprojection {err[track.valid].mean():.2f} px over {int(track.valid.sum())} frames; "
            f"jitter {r.jitter_before_mm:.2f} -> {r.jitter_after_mm:.2f} mm/frame^2 ({r.jitter_reduction:.2f}x), "
            f"deviation {r.deviation_mean_mm:.2f} mm mean; smoothed reprojection {err_s[kept].mean():.2f} px over "
            f"{int(kept.sum())} kept frames; |beta| max {np.abs(track.beta).max():.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--capture", metavar="TAKE.npz", help="readouts on a real capture file instead")
    args = ap.parse_args()
    if args.capture:
        real_capture(args.capture)
        return
    clips = [clip(args.frames, seed) for seed in range(args.clips)]
    rows = {}
    for method in ("raw", "gaussian", "savgol", "one_euro", "none"):
        err, jit, dev, secs, filled = [], [], [], [], 0
        for track, truth in clips:
            if method == "raw":
                pos, valid = track.kp3d, track.valid
                jit.append(jitter_mm(pos, valid))
                err.append(np.linalg.norm(pos - truth, axis=-1)[valid].mean() * 1000)
                continue
            t0 = time.perf_counter()
            _, res = smooth_track(track, SmoothingSettings(method=method), FPS)
            secs.append(time.perf_counter() - t0)
            valid = res.motion.valid
            err.append(np.linalg.norm(res.positions - truth, axis=-1)[valid].mean() * 1000)
            jit.append(res.report.jitter_after_mm)
            dev.append(res.report.deviation_mean_mm)
            filled += res.report.filled_frames
        rows[method] = (
            np.mean(err),
            np.mean(jit),
            np.mean(dev) if dev else 0.0,
            np.mean(secs) if secs else 0.0,
            filled,
        )
    truth_jitter = np.mean([jitter_mm(truth, np.ones(len(truth), bool)) for _, truth in clips])
    print(f"{args.clips} clips x {args.frames} frames at {FPS:.0f} fps; truth jitter {truth_jitter:.2f} mm/frame^2")
    print(f"{'method':10s} {'error mm':>9s} {'jitter':>8s} {'dev mm':>7s} {'ms/1000 fr':>11s} {'filled':>7s}")
    for method, (e, j, d, s, f) in rows.items():
        print(f"{method:10s} {e:9.2f} {j:8.2f} {d:7.2f} {1000 * s * 1000 / args.frames:11.1f} {f:7d}")


if __name__ == "__main__":
    main()
