"""``python -m handcap benchmark [INPUT]``: how fast HandCap runs on this machine, stage by stage.

Times, on the project's own sample clip unless INPUT names another video: decoding, the landmark pass in
tracking mode (frames already in memory), the hand-model fit, and the raw network throughput of the
landmark model on batches of crops (what a GPU reaches with batching). The comparison with MediaPipe itself
lives in ``benchmarks/bench_landmarks.py`` (it needs MediaPipe in a separate venv).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import CliError

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample" / "two_hands.mp4"


def add_parser(subparsers, name: str, help_text: str):
    p = subparsers.add_parser(name, help=help_text, description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?", default=str(SAMPLE), help="video to time (default: the bundled sample clip)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--rounds", type=int, default=2, metavar="N", help="timed rounds per stage, best kept (default 2)")
    p.add_argument("--max-frames", type=int, default=300, metavar="N", help="frames of INPUT to use (default 300)")
    p.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=None,
        metavar="B",
        help="landmark-network batch sizes to time (default 1 2 8 on CPU, 1 8 64 256 on CUDA)",
    )
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(run=run)
    return p


def _best_seconds(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def network_throughput(nets, batch: int, rounds: int) -> float:
    """Landmark-model crops per second at ``batch`` crops per call (random 224x224 crops, outputs fetched)."""
    import numpy as np
    import torch

    from ..inference.batching import LANDMARK_INPUT_SIZE

    crops = np.random.default_rng(0).integers(0, 256, (batch, LANDMARK_INPUT_SIZE, LANDMARK_INPUT_SIZE, 3), np.uint8)
    calls = max(2, 256 // batch) if nets.device.type == "cuda" else max(1, 16 // batch)

    @torch.inference_mode()
    def go():
        for _ in range(calls):
            out = nets.landmark_net(nets._to_tensor(crops))
            out[0].float().cpu()  # fetching the result waits for the device

    go()  # warm-up (cuDNN autotuning, TorchScript profiling)
    return batch * calls / _best_seconds(go, rounds)


def run(args) -> int:
    import numpy as np
    import torch

    from ..inference.capture_job import CaptureOptions, capture_from_landmarks, resolve_device
    from ..inference.landmarker import HandLandmarker, LandmarkerOptions
    from ..inference.sources import SourceError, open_source

    if args.rounds < 1 or args.max_frames < 1:
        raise CliError("--rounds and --max-frames must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        t0 = time.perf_counter()
        src = open_source(args.input)
        if src.num_frames > args.max_frames:
            src = open_source(args.input, frames=slice(0, args.max_frames))
        frames = [f for _, f in src]
        decode_s = time.perf_counter() - t0
    except (SourceError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not frames:
        raise CliError(f"{args.input}: no frames to time")
    n = len(frames)
    stack = np.stack(frames)
    figures: dict = {
        "input": str(args.input),
        "frames": n,
        "size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "decode_fps": n / decode_s,
    }

    t0 = time.perf_counter()
    lm = HandLandmarker(LandmarkerOptions(device=device, max_hands=2, tracking=True))
    figures["startup_s"] = time.perf_counter() - t0
    list(lm.iter_source(stack[: min(n, 8)]))  # warm-up
    results: list = []

    def landmarks():
        results[:] = lm.process_source(stack)

    figures["landmarks_fps"] = n / _best_seconds(landmarks, args.rounds)
    figures["two_hand_frames"] = float(np.mean([len(r.hands) == 2 for r in results]))

    options = CaptureOptions(source=str(args.input), device=device)
    if any(r.hands for r in results):
        fit = capture_from_landmarks(results, str(args.input), src.fps, src.size, options)
        figures["fit_s"] = fit.seconds["fit"]
        figures["fit_frames_x_hands"] = int(sum(int(t.valid.sum()) for t in fit.capture.hands.values()))
    else:
        figures["fit_s"] = None

    nets = lm.nets
    sizes = args.batch or ([1, 8, 64, 256] if nets.device.type == "cuda" else [1, 2, 8])
    figures["landmark_net_crops_per_s"] = {str(b): network_throughput(nets, b, args.rounds) for b in sizes}

    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        _print(figures)
    return 0


def _print(f: dict) -> None:
    w, h = f["size"]
    print(f"{f['input']}: {f['frames']} frames {w}x{h}; device {f['device']}, torch threads {f['torch_threads']}")
    print(f"  decoding (OpenCV)      {f['decode_fps']:8.1f} frames/s")
    print(f"  landmarker start-up    {f['startup_s']:8.2f} s")
    print(
        f"  landmarks (tracking)   {f['landmarks_fps']:8.1f} frames/s, two hands in "
        f"{100 * f['two_hand_frames']:.1f} % of frames"
    )
    if f["fit_s"] is not None:
        print(f"  fit                    {f['fit_s']:8.2f} s for {f['fit_frames_x_hands']} hand-frames")
    for b, v in f["landmark_net_crops_per_s"].items():
        print(f"  landmark net, batch {int(b):3d} {v:8.1f} crops/s")
