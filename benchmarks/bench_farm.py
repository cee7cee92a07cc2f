"""The farm against one machine: speed of a library through `convert` and through `farm`, and how far a merged,
chunked capture is from the capture of the whole clip.

Run: .venv/bin/python benchmarks/bench_farm.py [--skip-speed] [--skip-deviation] [--json]

Speed: the library (assets/sample/two_hands.mp4 and ../shared/data/videos/two_hands_counting_720p.mp4, or a
time-reversed copy of the sample where the shared data is absent) through `python -m handcap convert` in one
process, then through `python -m handcap farm` on a local Ray cluster of 2 worker processes (a head and a worker
node, 1 CPU each, 127.0.0.1; started before the timing, as a farm would be), default chunks (300 / 30) and 60 / 15;
wall seconds and the ratio farm / convert in the same run. Every farm run starts its own Ray workers.

Deviation: each clip captured whole in this process (the reference), then split into chunks of 60 frames with 15
of overlap and merged (``inference.chunks``), in two ways: (a) the whole clip's own landmarks cut into chunks
(what the merge itself adds), (b) each chunk's landmarks computed on its own, as a farm does (a tracker starting
afresh at every chunk). Max / mean 3D keypoint deviation in mm off the seams (frames one chunk holds) and at the
seams (frames two chunks share), identity changes. For scale, (c) the whole clip captured again with the eager
instead of the fused landmark networks (which agree to 2e-4 px per crop): how reproducible the reference itself is.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"
COUNTING = REPO.parent / "shared" / "data" / "videos" / "two_hands_counting_720p.mp4"
sys.path.insert(0, str(REPO / "tests"))


def _reversed_sample(folder: Path) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(SAMPLE))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    out_path = folder / "two_hands_reversed.mp4"
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for f in frames[::-1]:
        out.write(f)
    out.release()
    return out_path


def _timed(cmd: list[str], env=None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def speed(library: list[Path], work: Path) -> dict:
    from ray_cluster import LocalRayCluster

    handcap = [sys.executable, "-m", "handcap"]
    out: dict = {"inputs": [p.name for p in library], "load_before": os.getloadavg()[0]}
    out["convert_s"] = _timed([*handcap, "convert", *map(str, library), "-o", str(work / "convert"), "--format", "bvh"])
    cluster = LocalRayCluster(workers=1, cpus=1)
    try:
        for label, chunks in (("farm_s", []), ("farm_60_15_s", ["--chunk-frames", "60", "--overlap", "15"])):
            cmd = [*handcap, "farm", *map(str, library), "-o", str(work / label), "--format", "bvh"]
            cmd += ["--address", cluster.address, "--node-ip-address", "127.0.0.1", *chunks]
            out[label] = _timed(cmd, env=cluster.env)
    finally:
        cluster.stop()
    out["ratio"] = out["farm_s"] / out["convert_s"]
    out["ratio_60_15"] = out["farm_60_15_s"] / out["convert_s"]
    out["load_after"] = os.getloadavg()[0]
    return out


def deviation(video: Path, chunk_frames: int = 60, overlap: int = 15) -> dict:
    from handcap.inference.batching import HandNets
    from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks
    from handcap.inference.chunks import (
        ChunkResult,
        capture_chunk,
        chunk_from_bytes,
        chunk_to_bytes,
        merged_capture,
        plan_chunks,
        seam_deviation,
    )
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.sources import open_source

    options = CaptureOptions(source=str(video), device="cpu")
    landmarker = HandLandmarker(LandmarkerOptions(max_hands=2, device="cpu"))
    src = open_source(str(video))
    full = landmarker.process_source(src)
    whole = capture_from_landmarks(copy.deepcopy(full), str(video), src.fps, src.size, options).capture
    plan = plan_chunks(src.indices, chunk_frames, overlap)
    cut = [
        ChunkResult(
            str(video),
            src.fps,
            tuple(src.size),
            c,
            plan,
            options.to_json(),
            copy.deepcopy([r for r in full if c.start <= r.frame_index < c.stop]),
        )
        for c in plan
    ]
    same = seam_deviation(whole, merged_capture([chunk_from_bytes(chunk_to_bytes(c)) for c in cut]).capture, plan)
    real = [capture_chunk(options, c, plan, landmarker=landmarker) for c in plan]
    farm = seam_deviation(whole, merged_capture(real).capture, plan)
    eager = HandLandmarker(LandmarkerOptions(max_hands=2, device="cpu"), nets=HandNets("cpu", optimize=False))
    again = capture_from_landmarks(
        eager.process_source(open_source(str(video))), str(video), src.fps, src.size, options
    ).capture
    floor = seam_deviation(whole, again, plan)
    return {
        "clip": video.name,
        "frames": len(src),
        "chunks": [c.frames_arg for c in plan],
        "merge_of_the_same_landmarks": vars(same),
        "chunks_captured_on_their_own": vars(farm),
        "eager_vs_fused_whole_clip": vars(floor),
    }


def _mm(pair) -> str:
    return "n/a" if pair is None else f"{pair[0]:.3f} / {pair[1]:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-deviation", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="handcap-bench-farm-") as tmp:
        work = Path(tmp)
        second = COUNTING if COUNTING.is_file() else _reversed_sample(work)
        if not args.skip_deviation:
            results["deviation"] = [deviation(v) for v in ([COUNTING] if COUNTING.is_file() else []) + [SAMPLE]]
            for d in results["deviation"]:
                print(f"{d['clip']} ({d['frames']} frames, chunks {', '.join(d['chunks'])}): max / mean mm")
                for key in ("merge_of_the_same_landmarks", "chunks_captured_on_their_own", "eager_vs_fused_whole_clip"):
                    r = d[key]
                    print(
                        f"  {key:30s} off seams {_mm(r['off_seam_mm'])}, at seams {_mm(r['at_seam_mm'])}, "
                        f"identity changes {r['identity_changes']} ({r['frames']} hand-frames)"
                    )
        if not args.skip_speed:
            s = results["speed"] = speed([SAMPLE, second], work)
            print(f"library {', '.join(s['inputs'])} (load {s['load_before']:.1f} -> {s['load_after']:.1f})")
            print(f"  convert (one process)          {s['convert_s']:.1f} s")
            print(f"  farm, 2 workers, chunks 300/30  {s['farm_s']:.1f} s  ratio farm/convert {s['ratio']:.2f}")
            print(
                f"  farm, 2 workers, chunks 60/15   {s['farm_60_15_s']:.1f} s  ratio farm/convert "
                f"{s['ratio_60_15']:.2f}"
            )
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
