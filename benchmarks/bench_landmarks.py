"""HandCap's landmark pipeline against MediaPipe Hands 0.10.21, same inputs, same run.

MediaPipe runs in its own venv (<repo>/.cache/mediapipe-venv, created on first use by
benchmarks/mediapipe_venv.sh; never a HandCap dependency), through the legacy ``mp.solutions.hands`` API
with model_complexity=1 and max 2 hands.

    python benchmarks/bench_landmarks.py speed [--video PATH] [--rounds 3] [--threads 2]
        Tracking mode on a clip. Frames are decoded once up front (decoding timed on its own); each round
        times our tracker and then MediaPipe's over the same in-memory frames. Prints frames/s of each
        (median over rounds), the ratio ours/MediaPipe, and the share of frames with two hands.
    python benchmarks/bench_landmarks.py accuracy [--set PATH] [--refine average|second|off]
        Still-image mode on an annotated set: our evaluate metrics and MediaPipe's, scored by the same code
        (handcap.inference.evaluation), and the deltas.

The machine may be shared: rounds alternate between the two pipelines so both see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see handcap/inference/__init__.py)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORKER = Path(__file__).with_name("mediapipe_worker.py")


def mediapipe_python() -> str:
    """Path of the MediaPipe venv's python (created on first use)."""
    out = subprocess.run(
        ["bash", str(Path(__file__).with_name("mediapipe_venv.sh"))], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def run_worker(py: str, *args: str, threads: int) -> dict:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": str(threads), "HOME": str(Path.home())}
    out = subprocess.run([py, str(WORKER), *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_speed(args) -> None:
    import torch

    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.sources import open_source

    torch.set_num_threads(args.threads)
    py = mediapipe_python()
    video = Path(args.video)
    t0 = time.perf_counter()
    frames = [f for _, f in open_source(video)]
    decode_s = time.perf_counter() - t0
    if args.frames:
        frames = frames[: args.frames]
    stack = np.stack(frames)
    n = len(frames)
    print(
        f"clip {video.name}: {n} frames {frames[0].shape[1]}x{frames[0].shape[0]}; "
        f"decoding (OpenCV, ours) {n / decode_s:.1f} frames/s; torch threads {args.threads}"
    )

    lm = HandLandmarker(LandmarkerOptions(device="cpu", max_hands=2, tracking=True, lanes=1))
    list(lm.iter_source(stack[: min(n, 10)]))  # warm-up
    ours_fps, mp_fps, ours_two, mp_two = [], [], 0.0, 0.0
    for r in range(args.rounds):
        t0 = time.perf_counter()
        results = list(lm.iter_source(stack))
        dt = time.perf_counter() - t0
        ours_fps.append(n / dt)
        ours_two = float(np.mean([len(res.hands) == 2 for res in results]))
        m = run_worker(py, "speed", str(video), "--frames", str(n), threads=args.threads)
        mp_fps.append(m["frames"] / m["process_s"])
        mp_two = float(np.mean([c == 2 for c in m["hands_per_frame"]]))
        print(
            f"  round {r + 1}: ours {ours_fps[-1]:.1f} fps, MediaPipe {mp_fps[-1]:.1f} fps "
            f"(MediaPipe's own decoding {m['frames'] / m['decode_s']:.1f} fps)",
            flush=True,
        )
    t0 = time.perf_counter()
    list(lm.iter_source(video))
    e2e = n / (time.perf_counter() - t0) if not args.frames else float("nan")
    o, m = statistics.median(ours_fps), statistics.median(mp_fps)
    print(
        f"ours      {o:.1f} frames/s (decoded frames in memory); {e2e:.1f} frames/s from the file "
        f"(background decoding); two hands in {100 * ours_two:.1f} % of frames"
    )
    print(f"MediaPipe {m:.1f} frames/s (decoded frames in memory); two hands in {100 * mp_two:.1f} % of frames")
    print(f"ratio ours/MediaPipe {o / m:.2f}")
    print_tracks(results)


def print_tracks(results) -> None:
    """Per track: frames, side, frames whose own handedness disagrees, largest wrist step between
    consecutive frames (fraction of the ROI size); and the frames with fewer than two hands."""
    tracks: dict[int, dict[int, object]] = {}
    for r in results:
        for h in r.hands:
            tracks.setdefault(h.track_id, {})[r.frame_index] = h
    for tid, obs in sorted(tracks.items()):
        steps = [np.linalg.norm(h.kp2d[0] - obs[f - 1].kp2d[0]) / h.roi[2] for f, h in obs.items() if f - 1 in obs]
        sides = sorted({h.side for h in obs.values()})
        disagree = sum(h.side_score < 0.5 for h in obs.values())
        print(
            f"  track {tid}: {len(obs)} frames, side {'/'.join(sides)}, {disagree} frames disagreeing, "
            f"largest wrist step {max(steps, default=0):.3f} ROI sizes"
        )
    print(f"  frames with fewer than two hands: {[r.frame_index for r in results if len(r.hands) < 2]}")


def bench_accuracy(args) -> None:
    import torch

    from handcap.inference.evaluation import (
        Prediction,
        evaluate_set,
        landmarker_predictor,
        load_annotated_set,
        score_image,
        summarize,
    )
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions

    torch.set_num_threads(args.threads)
    data = load_annotated_set(args.set)
    lm = HandLandmarker(LandmarkerOptions(device="cpu", max_hands=2, tracking=False, refine=args.refine))
    t0 = time.perf_counter()
    ours = evaluate_set(data, landmarker_predictor(lm))
    ours_s = time.perf_counter() - t0

    py = mediapipe_python()
    m = run_worker(py, "predict", *[str(im.path) for im in data.images], threads=args.threads)
    per_image = []
    for im, hands in zip(data.images, m["images"], strict=True):
        preds = [
            Prediction(np.asarray(h["kp2d"]), None if h["world"] is None else np.asarray(h["world"])) for h in hands
        ]
        per_image.append(score_image(im, preds))
    theirs = summarize(data.name, per_image)

    a, b = ours.to_json(), theirs.to_json()
    print(f"set {data.name}: {a['images']} images, {a['hands']} hands (our refine={args.refine})")
    print(f"{'metric':<18}{'HandCap':>12}{'MediaPipe':>12}{'delta':>12}")
    for key in ("detected_rate", "kp2d_err_px", "pck_0.1", "pa_mpjpe_mm_raw"):
        x, y = a[key], b[key]
        d = None if x is None or y is None else x - y
        print(f"{key:<18}{_f(x):>12}{_f(y):>12}{_f(d, signed=True):>12}")
    print(
        f"time per image: HandCap {1000 * ours_s / a['images']:.0f} ms (incl. decoding), "
        f"MediaPipe {1000 * m['process_s'] / b['images']:.0f} ms (excl. decoding)"
    )


def _f(v, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("speed", help="frames/s in tracking mode, ours vs MediaPipe")
    s.add_argument("--video", default=str(DATA / "videos" / "two_hands_counting_720p.mp4"))
    s.add_argument("--frames", type=int, default=0, help="use only the first N frames")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--threads", type=int, default=2)
    a = sub.add_parser("accuracy", help="evaluate metrics, ours vs MediaPipe (still images)")
    a.add_argument("--set", default=str(DATA / "ge2019_dev"))
    a.add_argument("--refine", choices=("average", "second", "off"), default="average")
    a.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not DATA.is_dir() and ("--video" not in sys.argv and "--set" not in sys.argv):
        sys.exit(f"no data at {DATA}; pass --video / --set")
    bench_speed(args) if args.mode == "speed" else bench_accuracy(args)


if __name__ == "__main__":
    main()
