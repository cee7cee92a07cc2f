"""Live preview speed: frames per second and latency (frame read -> pose ready / applied), two hands, CPU.

    .venv/bin/python benchmarks/bench_live.py [VIDEO] [--seconds S] [--blender]

1. every frame as fast as it goes (throughput of the live step: tracked landmarks, per-frame fit, One-Euro);
2. the same video played in real time by the virtual camera (what a 30 fps camera would give: frames
   processed per second, frames missed, latency from the frame's read to its pose being ready);
3. with --blender: the worker process streaming to bpy's ``LiveRun.tick`` (the modal operator's timer
   step), latency from the frame's read in the worker to its pose applied to the rigs.
The target is 20 fps with two hands; the ratio is printed against it. The machine's load average is printed
(the machine is shared: figures are noisy under load).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))

TARGET_FPS = 20.0


def _stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"median {np.median(a):.1f} ms, p95 {np.percentile(a, 95):.1f} ms"


def throughput(video: Path, frames: int) -> None:
    from handcap.inference.live import LiveSession
    from handcap.inference.sources import VideoSource

    src = VideoSource(video)
    rgb = [f for _, (_, f) in zip(range(frames), src, strict=False)]
    t = time.perf_counter()
    session = LiveSession(src.size, src.fps)
    print(f"start-up (networks, models): {time.perf_counter() - t:.2f} s")
    for i, im in enumerate(rgb[:5]):  # warm-up
        session.step(i, im, time.monotonic())
    session = LiveSession(src.size, src.fps, landmarker=session.landmarker)
    steps, hands, fit_ms = [], [], []
    solve = session._solve

    def timed_solve(*a):
        t = time.perf_counter()
        out = solve(*a)
        fit_ms.append(1000 * (time.perf_counter() - t))
        return out

    session._solve = timed_solve  # the fit's share of each step
    t0 = time.perf_counter()
    for i, im in enumerate(rgb):
        t = time.monotonic()
        f = session.step(i, im, t)
        steps.append(1000 * (f.t_done - t))
        hands.append(len(f.hands))
    el = time.perf_counter() - t0
    fps = len(rgb) / el
    print(
        f"1. every frame: {len(rgb)} frames, {fps:.1f} fps (ratio {fps / TARGET_FPS:.2f} of {TARGET_FPS:g}), "
        f"step {_stats(steps)} (of which the fit of all hands {_stats(fit_ms)}), "
        f"hands per frame {np.mean(hands):.2f}"
    )


def realtime(video: Path, seconds: float) -> None:
    from handcap.inference.live import run
    from handcap.inference.sources import VirtualCamera

    cam = VirtualCamera(video)
    out = run(cam, max_seconds=seconds)
    el = out[-1].t_done - out[0].t_read  # from the first frame's read (start-up excluded)
    lat = [1000 * (f.t_done - f.t_read) for f in out[3:]]
    n = len(out)
    print(
        f"2. real time at {cam.fps:g} fps: {n} frames processed in {el:.1f} s, "
        f"{cam.dropped} missed; processed {n / max(el, 1e-9):.1f} fps; latency read -> pose ready {_stats(lat)}; "
        f"hands per frame {np.mean([len(f.hands) for f in out]):.2f}"
    )


def blender(video: Path, seconds: float) -> None:
    import tempfile

    import bpy  # noqa: F401  (bpy module)

    from handcap.operators import live  # the package's own copy, registered enough for LiveRun

    run = live.LiveRun(live.live_argv(sys.executable, str(video), True, 2), Path(tempfile.mkdtemp()))
    run.start()
    t0 = time.monotonic()
    try:
        while run.tick(bpy.context, record=False) and time.monotonic() - t0 < seconds + 30:
            time.sleep(1 / 60)
    finally:
        run.stop()
    lat = run.latency_ms[3:]
    print(
        f"3. worker -> Blender (timer every 1/60 s): {run.frames_seen} frames received, {run.frames_applied} "
        f"applied; latency read -> pose applied {_stats(lat) if lat else 'n/a'}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("video", nargs="?", default=str(REPO / "assets" / "sample" / "two_hands.mp4"))
    p.add_argument("--frames", type=int, default=90, help="frames for the throughput run")
    p.add_argument("--seconds", type=float, default=10.0, help="longest real-time run")
    p.add_argument("--blender", action="store_true", help="also measure the worker -> bpy path")
    args = p.parse_args()
    video = Path(args.video)
    print(f"{video.name}; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} CPUs")
    throughput(video, args.frames)
    realtime(video, args.seconds)
    if args.blender:
        blender(video, args.seconds)
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
