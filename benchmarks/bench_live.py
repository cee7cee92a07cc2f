"""Live preview speed: frames per second and latency (frame read -> pose ready / applied), two hands, CPU.

    .venv/bin/python benchmarks/bench_live.py [VIDEO] [--frames N] [--seconds S] [--threads T] [--blender]

1. one process, every frame as fast as it goes (frames decoded beforehand, then decoding timed on its
   own): wall and CPU time per frame of the landmark stage (networks, tracker) and of the pose stage
   (analytic fit, One-Euro, the JSON message);
2. the worker's two-process pipeline (``inference.live_pipeline``) on the video played in real time by the
   virtual camera (what a camera at the file's rate would give): frames processed per second, frames
   missed, latency from the frame's read to its pose being ready, CPU time per processed frame of each
   stage; then the same in one process (``--sequential``), for the ratio under the same load;
3. with --blender: the worker streaming to bpy's ``LiveRun.tick`` (the modal operator's timer step),
   latency from the frame's read in the worker to its pose applied to the rigs, and the apply time.

The machine is shared, so wall-clock figures depend on its load (printed with each part). CPU time per
frame depends on it much less (one torch thread per stage: a stage's CPU time is about what it would take
on an idle core; caches and clock shared with other jobs still inflate it somewhat). The load-independent
figure is the rate the pipeline would sustain on two idle cores from those CPU times
(``live_pipeline.idle_fps``: each stage one thread, the camera's reading on top, all on two cores, never
more than the camera delivers), printed as a ratio of the 20 fps target next to what was measured.
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


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _stats(ms) -> str:
    a = np.asarray(ms)
    return f"median {np.median(a):.1f} ms, p95 {np.percentile(a, 95):.1f} ms"


def _idle(landmark_ms: float, pose_ms: float, reading_ms: float, camera_fps: float) -> str:
    from handcap.inference.live_pipeline import idle_fps

    fps = idle_fps(landmark_ms, pose_ms, reading_ms, camera_fps)
    one_core = min(camera_fps, 1000.0 / (landmark_ms + pose_ms + reading_ms * camera_fps / min(camera_fps, fps)))
    return (
        f"pipeline on two idle cores {fps:.1f} fps (ratio {fps / TARGET_FPS:.2f} of {TARGET_FPS:g}); "
        f"everything on one idle core {one_core:.1f} fps"
    )


def one_process(video: Path, frames: int, threads: int) -> None:
    from handcap.inference.live_stages import LiveOptions, LiveSession, live_frame
    from handcap.inference.sources import VideoSource

    src = VideoSource(video)
    c = time.process_time()
    rgb = [f for _, (_, f) in zip(range(frames), src, strict=False)]
    decode = 1000 * (time.process_time() - c) / len(rgb)
    t = time.perf_counter()
    session = LiveSession(src.size, src.fps, LiveOptions(threads=threads))
    print(f"start-up (networks, models): {time.perf_counter() - t:.2f} s")
    for i, im in enumerate(rgb[:5]):  # warm-up: the networks' first calls set up their kernels
        session.step(i, im, time.monotonic())
    session = LiveSession(src.size, src.fps, session.options, landmarker=session.landmarker)
    wall = {"landmarks": [], "pose": []}
    cpu = {"landmarks": [], "pose": []}
    hands = []
    t0 = time.perf_counter()
    for i, im in enumerate(rgb):
        t, c = time.perf_counter(), time.process_time()
        obs = session.landmarks(i, im)
        t1, c1 = time.perf_counter(), time.process_time()
        out = session.pose(i, obs)
        hands.append(len(out))
        live_frame(i, t, out, session.fps, session.size, session.k).to_json()
        t2, c2 = time.perf_counter(), time.process_time()
        wall["landmarks"].append(1000 * (t1 - t))
        wall["pose"].append(1000 * (t2 - t1))
        cpu["landmarks"].append(1000 * (c1 - c))
        cpu["pose"].append(1000 * (c2 - c1))
    fps = len(rgb) / (time.perf_counter() - t0)
    cl, cp = np.mean(cpu["landmarks"]), np.mean(cpu["pose"])
    print(
        f"1. one process, every frame ({len(rgb)} frames, {src.size[0]}x{src.size[1]}, torch threads {threads}, "
        f"hands per frame {np.mean(hands):.2f}; {_load()}): {fps:.1f} fps (ratio {fps / TARGET_FPS:.2f})\n"
        f"   landmark stage: wall {_stats(wall['landmarks'])}; CPU {cl:.1f} ms per frame\n"
        f"   pose stage:     wall {_stats(wall['pose'])}; CPU {cp:.1f} ms per frame\n"
        f"   decoding: CPU {decode:.1f} ms per frame\n"
        f"   load-independent, from CPU time: {_idle(cl, cp, decode, src.fps)}"
    )


def pipelined(video: Path, seconds: float) -> float:
    from handcap.inference.live_pipeline import run_pipelined
    from handcap.inference.sources import VideoSource

    fps_camera = VideoSource(video).fps
    out = []
    load = _load()
    stats = run_pipelined(str(video), True, None, out.append, seconds)
    lat = [1000 * (f.t_done - f.t_read) for f in out[3:]]
    cl, cp, cr = stats.cpu_ms_per_frame()
    fps = stats.frames / max(stats.wall_s, 1e-9)
    print(
        f"2. two-process pipeline, real time at {fps_camera:g} fps ({load}): {stats.frames} frames processed in "
        f"{stats.wall_s:.1f} s, {stats.dropped} missed; {fps:.1f} fps processed (ratio {fps / TARGET_FPS:.2f}); "
        f"latency read -> pose ready {_stats(lat)}; hands per frame {np.mean([len(f.hands) for f in out]):.2f}\n"
        f"   CPU per processed frame: landmark stage {cl:.1f} ms, pose stage {cp:.1f} ms; reading and "
        f"decoding {cr:.1f} ms per camera frame (every frame, reader and decoder threads)\n"
        f"   load-independent, from CPU time: {_idle(cl, cp, cr, fps_camera)}"
    )
    return fps


def sequential_realtime(video: Path, seconds: float, pipelined_fps: float) -> None:
    from handcap.inference.live_stages import run
    from handcap.inference.sources import VirtualCamera

    load = _load()
    with VirtualCamera(video) as cam:
        out = run(cam, max_seconds=seconds)
    el = out[-1].t_done - out[0].t_read
    fps = len(out) / max(el, 1e-9)
    lat = [1000 * (f.t_done - f.t_read) for f in out[3:]]
    print(
        f"   the same in one process ({load}): {fps:.1f} fps processed, {cam.dropped} missed; latency {_stats(lat)}; "
        f"pipeline / one process {pipelined_fps / fps:.2f}"
    )


def blender(video: Path, seconds: float) -> None:
    import tempfile

    import bpy  # noqa: F401  (bpy module)

    from handcap.operators import live  # the package's own copy, registered enough for LiveRun

    load = _load()
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
        f"3. worker -> Blender (timer every 1/60 s; {load}): {run.frames_seen} frames received, "
        f"{run.frames_applied} applied; latency read -> pose applied {_stats(lat) if lat else 'n/a'}; "
        f"applying a frame to the rigs {_stats(run.apply_ms[3:]) if len(run.apply_ms) > 3 else 'n/a'}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("video", nargs="?", default=str(REPO / "assets" / "sample" / "two_hands.mp4"))
    p.add_argument("--frames", type=int, default=90, help="frames for the one-process run")
    p.add_argument("--seconds", type=float, default=10.0, help="longest real-time run")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the one-process run")
    p.add_argument("--blender", action="store_true", help="also measure the worker -> bpy path")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)  # this process is the one-process run's worker
    video = Path(args.video)
    print(f"{video.name}; {_load()}; {os.cpu_count()} CPUs")
    one_process(video, args.frames, args.threads)
    sequential_realtime(video, args.seconds, pipelined(video, args.seconds))
    if args.blender:
        blender(video, args.seconds)
    print(f"after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
