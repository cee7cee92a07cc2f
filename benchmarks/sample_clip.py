"""How well HandCap recovers its own sample clip (assets/sample, rendered by tools/render_sample.py).

    .venv/bin/python benchmarks/sample_clip.py landmarks      # detection rate, 2D error, sides
    .venv/bin/python benchmarks/sample_clip.py capture [--capture take.npz] [--smoothed]
        # runs `python -m handcap capture` on the clip (unless --capture is given) and compares the fit
        # with the known animation: joint angles, flexion, global orientation, 3D keypoints; --smoothed
        # also compares the capture after the default smoothing (``core.smoothing.SmoothingSettings()``).

The comparison (``compare``) is also what tests/test_capture_operators.py asserts on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"
TRUTH = REPO / "assets" / "sample" / "two_hands_truth.npz"
SAMPLE_FOV = 50.0


def write_reversed(out_path: Path, start: int = 0, stop: int | None = None) -> Path:
    """The sample clip's frames start..stop-1 written backwards to out_path (mp4, 30 fps): a second clip with
    the same hands for farm runs, which the project's own assets allow without any shared data."""
    import cv2

    cap = cv2.VideoCapture(str(SAMPLE))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for frame in frames[start:stop][::-1]:
        out.write(frame)
    out.release()
    return out_path


def _angle_deg(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotation matrices (..., 3, 3), degrees."""
    rel = np.swapaxes(ra, -1, -2) @ rb
    cos = np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def _procrustes(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """pred (N, 3) aligned to true by the best similarity transform."""
    mp, mt = pred.mean(0), true.mean(0)
    p, t = pred - mp, true - mt
    u, s, vt = np.linalg.svd(p.T @ t)
    d = np.sign(np.linalg.det(u @ vt))
    s[-1] *= d
    u[:, -1] *= d
    rot = u @ vt
    scale = s.sum() / (p**2).sum()
    return scale * p @ rot + mt


def compare(capture, truth) -> dict[str, dict[str, float]]:
    """Per side: frames found, joint-angle errors (degrees) and keypoint errors (mm) against the truth.

    Keys: found (share of frames with a valid fit), angle_deg (mean geodesic error of the 15 finger joints'
    local rotations), flex_deg (mean absolute error of their flexion, the local x component), global_deg
    (mean error of the global orientation), mpjpe_mm (3D keypoints, camera frame), rel_mpjpe_mm (wrist
    aligned), pa_mpjpe_mm (Procrustes aligned), px (mean 2D keypoint error of the fit's reprojection).
    """
    from handcap.core import anatomy, handmodel
    from handcap.core.lbs import rodrigues

    out = {}
    index = {int(f): i for i, f in enumerate(truth.frames)}
    for side, true in truth.hands.items():
        track = capture.hands.get(side)
        if track is None:
            out[side] = {"found": 0.0}
            continue
        rows = np.array([index[int(f)] for f in capture.frames])
        valid = np.asarray(track.valid, bool)
        if not valid.any():
            out[side] = {"found": 0.0}
            continue
        tr = rows[valid]
        model = handmodel.load_builtin(side)
        frames = anatomy.joint_frames_from_rest(
            handmodel.rest_joints(model, true.beta), side, handmodel.rest_tips(model, true.beta)
        )
        rp, rt = rodrigues(track.theta[valid]), rodrigues(true.theta[tr])
        lp, lt = anatomy.to_local(track.theta[valid], frames), anatomy.to_local(true.theta[tr], frames)
        kp, kt = np.asarray(track.kp3d[valid], np.float64), np.asarray(true.kp3d[tr], np.float64)
        k = capture.intrinsics
        proj = kp[..., :2] / kp[..., 2:] * [k.fx, k.fy] + [k.cx, k.cy]
        out[side] = {
            "found": float(valid.mean()),
            "angle_deg": float(_angle_deg(rp[:, 1:], rt[:, 1:]).mean()),
            "flex_deg": float(np.degrees(np.abs(lp[:, 1:, 0] - lt[:, 1:, 0])).mean()),
            "global_deg": float(_angle_deg(rp[:, 0], rt[:, 0]).mean()),
            "mpjpe_mm": float(1000 * np.linalg.norm(kp - kt, axis=-1).mean()),
            "rel_mpjpe_mm": float(1000 * np.linalg.norm((kp - kp[:, :1]) - (kt - kt[:, :1]), axis=-1).mean()),
            "pa_mpjpe_mm": float(
                1000
                * np.mean([np.linalg.norm(_procrustes(p, t) - t, axis=-1).mean() for p, t in zip(kp, kt, strict=True)])
            ),
            "px": float(np.linalg.norm(proj - true.kp2d[tr], axis=-1).mean()),
        }
    return out


def landmarks() -> int:
    import torch

    from handcap.core.capture import read_capture
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions

    torch.set_num_threads(2)
    truth = read_capture(TRUTH)
    results = HandLandmarker(LandmarkerOptions(max_hands=2, device="cpu")).process_source(str(SAMPLE))
    print(f"{SAMPLE.name}: {len(results)} frames")
    for side, true in truth.hands.items():
        errs, found, wrong_side = [], 0, 0
        for r in results:
            # Match by position: the observation nearest to this hand's true keypoints.
            best = min(r.hands, key=lambda h: np.abs(h.kp2d - true.kp2d[r.frame_index]).mean(), default=None)
            if best is None:
                continue
            err = np.linalg.norm(best.kp2d - true.kp2d[r.frame_index], axis=-1).mean()
            if err > 40:  # nothing near this hand
                continue
            found += 1
            errs.append(err)
            wrong_side += best.side != side
        n = len(results)
        print(
            f"  {side:5s}: found in {found}/{n} frames, 2D error mean {np.mean(errs):.1f} px "
            f"(median {np.median(errs):.1f}), side wrong in {wrong_side} of them"
        )
    return 0


def capture(path: str | None, smoothed: bool = False) -> int:
    from handcap.core.capture import read_capture
    from handcap.core.capture_smoothing import smooth_capture
    from handcap.core.smoothing import SmoothingSettings

    truth = read_capture(TRUTH)
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            path = str(Path(tmp) / "sample.npz")
            cmd = [sys.executable, "-m", "handcap", "capture", str(SAMPLE), "-o", path, "--fov", str(SAMPLE_FOV)]
            cmd += ["--hands", "2", "--device", "cpu"]
            print("$", " ".join(cmd))
            subprocess.run(cmd, check=True)
        raw = read_capture(path)
        results = {"raw capture": compare(raw, truth)}
        if smoothed:
            results["default smoothing"] = compare(smooth_capture(raw, SmoothingSettings())[0], truth)
    heads = ("found", "angle", "flex", "global", "MPJPE", "rel", "PA", "2D px")
    for name, result in results.items():
        print(f"{name}:\n{'side':6s} " + " ".join(f"{h:>7s}" for h in heads))
        for side, r in result.items():
            if len(r) == 1:
                print(f"{side:6s} {r['found']:6.2f}  (no fit)")
                continue
            print(
                f"{side:6s} {r['found']:6.2f} {r['angle_deg']:6.1f}° {r['flex_deg']:6.1f}° {r['global_deg']:6.1f}° "
                f"{r['mpjpe_mm']:5.1f}mm {r['rel_mpjpe_mm']:5.1f}mm {r['pa_mpjpe_mm']:5.1f}mm {r['px']:6.1f}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("landmarks")
    p = sub.add_parser("capture")
    p.add_argument("--capture", default=None, help="an existing capture of the sample instead of running one")
    p.add_argument("--smoothed", action="store_true", help="also compare after the default smoothing")
    args = parser.parse_args(argv)
    return landmarks() if args.what == "landmarks" else capture(args.capture, args.smoothed)


if __name__ == "__main__":
    raise SystemExit(main())
