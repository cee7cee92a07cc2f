"""HandCap's landmark pipeline against MediaPipe Hands 0.10.21, same inputs, same run.

MediaPipe runs in its own venv (<repo>/.cache/mediapipe-venv, created on first use by
benchmarks/mediapipe_venv.sh; never a HandCap dependency), through the legacy ``mp.solutions.hands`` API
with model_complexity=1 and max 2 hands.

    python benchmarks/bench_landmarks.py speed [--video PATH] [--rounds 3] [--threads 2] [--profile]
        Tracking mode on a clip. Frames are decoded once up front (decoding timed on its own); each round
        times our tracker and then MediaPipe's over the same in-memory frames. Prints frames/s of each
        (median over rounds), the ratio ours/MediaPipe, and the share of frames with two hands.
        --profile adds one more pass of ours with a wall-time breakdown per frame (landmark net, palm
        net, crops, the rest) and the landmark crops and palm passes per frame. --ab also times, in each
        round right after ours, ours with the TorchScript landmark net (the CPU form before the fused one).
    python benchmarks/bench_landmarks.py nets [--batches 1 2 4] [--rounds 9] [--threads 2] [--cpu-time]
        Per-crop (per-image) latency of the landmark (palm) network's CPU forms: eager reference,
        TorchScript optimize_for_inference, fused oneDNN; TFLite/XNNPACK batch 1 for reference when
        tflite-runtime and the cached wheel are there. Interleaved A, B, C, A, B, C ... in one process on
        real crops; medians in ms per crop and each form's largest deviation from the eager net.
        --cpu-time times the calling thread's CPU time instead of wall time (steadier on a busy machine;
        meaningful with --threads 1).
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
    lm_ts = torchscript_landmarker(lm, stack[: min(n, 10)]) if args.ab else None
    ours_fps, mp_fps, ts_fps, ours_two, mp_two = [], [], [], 0.0, 0.0
    for r in range(args.rounds):
        t0 = time.perf_counter()
        results = list(lm.iter_source(stack))
        dt = time.perf_counter() - t0
        ours_fps.append(n / dt)
        if lm_ts is not None:
            t0 = time.perf_counter()
            list(lm_ts.iter_source(stack))
            ts_fps.append(n / (time.perf_counter() - t0))
            print(f"  round {r + 1}: ours with the TorchScript landmark net {ts_fps[-1]:.1f} fps", flush=True)
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
    if ts_fps:
        t = statistics.median(ts_fps)
        print(f"ours with the TorchScript landmark net {t:.1f} frames/s; ratio ours/that {o / t:.2f}")
    print_tracks(results)
    if args.profile:
        print_profile(lm, stack)


def torchscript_landmarker(lm, warmup: np.ndarray):
    """A second landmarker like ``lm`` whose landmark net is the TorchScript form (optimize_for_cpu)."""
    import copy

    from handcap.inference.batching import LANDMARK_INPUT_SIZE, optimize_for_cpu
    from handcap.inference.landmarker import HandLandmarker
    from handcap.inference.nets import load_landmark_net

    nets = copy.copy(lm.nets)
    nets.landmark_net = optimize_for_cpu(load_landmark_net(), LANDMARK_INPUT_SIZE)
    other = HandLandmarker(copy.deepcopy(lm.options), nets=nets)
    list(other.iter_source(warmup))
    return other


class _Timed:
    """Wraps a callable; adds its wall time and the length of its argument ``count_arg`` (the batch size)
    to a tally."""

    def __init__(self, fn, tally: dict, key: str, count_arg: int = 0):
        self.fn, self.tally, self.key, self.count_arg = fn, tally, key, count_arg

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        t = self.tally.setdefault(self.key, [0.0, 0, 0])
        t[0] += time.perf_counter() - t0
        t[1] += 1
        t[2] += len(args[self.count_arg])
        return out


def print_profile(lm, stack: np.ndarray) -> None:
    """One tracked pass over ``stack`` with the networks and the crop function timed (wall ms per frame)."""
    from handcap.inference import batching

    tally: dict = {}
    nets, crop = lm.nets, batching.crop_rois
    nets.landmark_net = _Timed(nets.landmark_net, tally, "landmark net")
    nets.palm_net = _Timed(nets.palm_net, tally, "palm net")
    batching.crop_rois = _Timed(crop, tally, "crops", count_arg=1)
    try:
        t0 = time.perf_counter()
        list(lm.iter_source(stack))
        total = time.perf_counter() - t0
    finally:
        nets.landmark_net, nets.palm_net, batching.crop_rois = nets.landmark_net.fn, nets.palm_net.fn, crop
    n = len(stack)
    parts = []
    for key in ("landmark net", "palm net", "crops"):
        s, calls, items = tally.get(key, [0.0, 0, 0])
        per = f"{1000 * s / items:.2f} ms/item" if items else "-"
        parts.append(f"{key} {1000 * s / n:.2f} ({calls / n:.2f} calls, {items / n:.2f} items/frame, {per})")
    rest = total - sum(v[0] for v in tally.values())
    print(f"profile, wall ms/frame: {'; '.join(parts)}; rest {1000 * rest / n:.2f}; total {1000 * total / n:.2f}")


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


def bench_nets(args) -> None:
    import cv2
    import torch

    from handcap.inference.batching import fuse_for_cpu, optimize_for_cpu
    from handcap.inference.nets import load_landmark_net, load_palm_net

    torch.set_num_threads(args.threads)
    files = sorted((DATA / "freihand_2d" / "images").glob("*.jpg"))
    if not files:
        sys.exit(f"no crops at {DATA / 'freihand_2d' / 'images'}")
    images = [cv2.imread(str(f))[..., ::-1] for f in files]
    clock = time.thread_time if args.cpu_time else time.perf_counter
    print(
        f"per crop / image, {'thread CPU' if args.cpu_time else 'wall'} ms, median of {args.rounds} interleaved "
        f"rounds; torch threads {args.threads}; dev: largest deviation of the first output from the eager net"
    )
    for name, net, size in (("landmark net", load_landmark_net(), 224), ("palm net", load_palm_net(), 192)):
        forms = {"eager": net, "torchscript": optimize_for_cpu(net, size), "fused": fuse_for_cpu(net)}
        print(f" {name} (fused form: {type(forms['fused']).__name__})")
        crops = np.stack([cv2.resize(im, (size, size)) for im in images])
        for bs in args.batches:
            x = torch.from_numpy(crops[np.arange(bs) % len(crops)]).permute(0, 3, 1, 2).float().div(255.0)
            _time_forms(forms, x, args.rounds, clock)
        if name == "landmark net" and (tflite := _tflite_landmark(args.threads)) is not None:
            sample = crops[:1].astype(np.float32) / 255.0
            ms = [1000 * _time_tflite(tflite, sample, clock) for _ in range(args.rounds)]
            med = statistics.median(ms)
            print(f"  TFLite 2.14 XNNPACK (tflite-runtime, batch 1, {args.threads} threads): {med:.2f}")


def _time_forms(forms: dict, x, rounds: int, clock) -> None:
    """Interleaved timing of ``forms`` on the batch ``x`` (NHWC memory, as HandNets feeds them)."""
    import torch

    bs = len(x)
    times: dict[str, list[float]] = {k: [] for k in forms}
    with torch.inference_mode():
        ref = forms["eager"](x)[0]
        dev = {k: float((ref - f(x)[0]).abs().max()) for k, f in forms.items()}  # also the warm-up
        reps = max(1, 8 // bs)
        for _ in range(rounds):
            for k, f in forms.items():
                t0 = clock()
                for _ in range(reps):
                    f(x)
                times[k].append(1000 * (clock() - t0) / reps / bs)
    cells = [f"{k} {statistics.median(v):.2f} (dev {dev[k]:.1g} px)" for k, v in times.items()]
    print(f"  batch {bs}: " + ", ".join(cells), flush=True)


def _tflite_landmark(threads: int):
    """MediaPipe's hand_landmark_full.tflite in tflite-runtime (test extra), or None where absent."""
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        return None
    sys.path.insert(0, str(REPO / "tools"))
    from convert_mediapipe import read_wheel_models
    from fetch_mediapipe_wheel import DEFAULT_DEST, WHEEL_NAME

    if not (DEFAULT_DEST / WHEEL_NAME).is_file():
        return None
    interp = Interpreter(model_content=read_wheel_models(DEFAULT_DEST / WHEEL_NAME)["landmark"], num_threads=threads)
    interp.allocate_tensors()
    return interp


def _time_tflite(interp, sample: np.ndarray, clock, reps: int = 8) -> float:
    index = interp.get_input_details()[0]["index"]
    interp.set_tensor(index, sample)
    interp.invoke()
    t0 = clock()
    for _ in range(reps):
        interp.set_tensor(index, sample)
        interp.invoke()
    return (clock() - t0) / reps


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
    s.add_argument("--profile", action="store_true", help="add a per-frame time breakdown of our pipeline")
    s.add_argument("--ab", action="store_true", help="also time ours with the TorchScript landmark net")
    nt = sub.add_parser("nets", help="per-crop latency of the landmark network's CPU forms")
    nt.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    nt.add_argument("--rounds", type=int, default=9)
    nt.add_argument("--threads", type=int, default=2)
    nt.add_argument("--cpu-time", action="store_true", help="thread CPU time instead of wall time")
    a = sub.add_parser("accuracy", help="evaluate metrics, ours vs MediaPipe (still images)")
    a.add_argument("--set", default=str(DATA / "ge2019_dev"))
    a.add_argument("--refine", choices=("average", "second", "off"), default="average")
    a.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not DATA.is_dir() and ("--video" not in sys.argv and "--set" not in sys.argv):
        sys.exit(f"no data at {DATA}; pass --video / --set")
    {"speed": bench_speed, "nets": bench_nets, "accuracy": bench_accuracy}[args.mode](args)


if __name__ == "__main__":
    main()
