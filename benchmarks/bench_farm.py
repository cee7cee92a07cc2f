"""The farm against one machine: speed of a library through `convert` and through `farm`, and how far a merged,
chunked capture is from the capture of the whole clip.

Run: .venv/bin/python benchmarks/bench_farm.py [--skip-speed] [--skip-deviation] [--rounds N] [--json]

Speed: the library (assets/sample/two_hands.mp4 and ../shared/data/videos/two_hands_counting_720p.mp4, or a
time-reversed copy of the sample where the shared data is absent) through `python -m handcap convert` in one
process, then through `python -m handcap farm` on a local Ray cluster of 2 worker processes (a head and a worker
node, 1 CPU each, 127.0.0.1; started before the timing, as a farm would be), default chunks (300 / 30) and 60 / 15;
wall seconds and the ratio farm / convert, ``--rounds`` times interleaved in the same run (per round and of the
medians). Every farm run starts its own Ray workers.

Deviation: each clip captured whole in this process (the reference, default options: focal length estimated from
the hands), then split into chunks of 60 frames with 15 of overlap and merged (``inference.chunks``), in three
ways: (a) the whole clip's own landmarks cut into chunks (what the merge itself adds), (b) each chunk captured on
its own going on from its predecessor's tracker state, read back from the predecessor's chunk file (what `farm`
and the Flamenco job do), (c) each chunk captured with a tracker starting afresh at its first frame, so 15 frames
(the overlap) before the seam it is merged at: a warm start. Max / mean 3D keypoint deviation in mm off the seams
(frames one chunk holds) and at the seams (frames two chunks share), identity changes, and whether the camera
and each hand's beta equal the reference's.
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

from sample_clip import write_reversed  # noqa: E402  (benchmarks/ is this script's own folder)


def _reversed_sample(folder: Path) -> Path:
    return write_reversed(folder / "two_hands_reversed.mp4")


def _timed(cmd: list[str], env=None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def speed(library: list[Path], work: Path, rounds: int) -> dict:
    """``rounds`` rounds of convert, farm 300/30, farm 60/15, interleaved (a shared machine's load drifts);
    ratios per round and of the medians."""
    import statistics

    from ray_cluster import LocalRayCluster

    handcap = [sys.executable, "-m", "handcap"]
    out: dict = {"inputs": [p.name for p in library], "load_before": os.getloadavg()[0], "rounds": []}
    cluster = LocalRayCluster(workers=1, cpus=1)
    try:
        for k in range(rounds):
            r = {"load": os.getloadavg()[0]}
            convert = [*handcap, "convert", *map(str, library), "-o", str(work / f"convert{k}"), "--format", "bvh"]
            r["convert_s"] = _timed(convert)
            for label, chunks in (("farm_s", []), ("farm_60_15_s", ["--chunk-frames", "60", "--overlap", "15"])):
                cmd = [*handcap, "farm", *map(str, library), "-o", str(work / f"{label}{k}"), "--format", "bvh"]
                cmd += ["--address", cluster.address, "--node-ip-address", "127.0.0.1", *chunks]
                r[label] = _timed(cmd, env=cluster.env)
            r["ratio"], r["ratio_60_15"] = r["farm_s"] / r["convert_s"], r["farm_60_15_s"] / r["convert_s"]
            out["rounds"].append(r)
    finally:
        cluster.stop()
    for key in ("convert_s", "farm_s", "farm_60_15_s"):
        out[key] = statistics.median(r[key] for r in out["rounds"])
    out["ratio"] = out["farm_s"] / out["convert_s"]
    out["ratio_60_15"] = out["farm_60_15_s"] / out["convert_s"]
    out["load_after"] = os.getloadavg()[0]
    return out


def deviation(video: Path, chunk_frames: int = 60, overlap: int = 15) -> dict:
    import numpy as np

    from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks, landmarker_for
    from handcap.inference.chunks import (
        ChunkResult,
        capture_chunk,
        chunk_from_bytes,
        chunk_to_bytes,
        merged_capture,
        plan_chunks,
    )
    from handcap.inference.seams import seam_deviation
    from handcap.inference.sources import open_source

    options = CaptureOptions(source=str(video), device="cpu")
    landmarker = landmarker_for(options)  # as `capture` and `convert` make it
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
    out = {"clip": video.name, "frames": len(src), "chunks": [c.frames_arg for c in plan]}
    chained, previous = [], None
    for c in plan:  # as a farm: each chunk from its predecessor's chunk file
        previous = chunk_from_bytes(chunk_to_bytes(capture_chunk(options, c, plan, landmarker, previous=previous)))
        chained.append(previous)
    fresh = [capture_chunk(options, c, plan, landmarker=landmarker) for c in plan]
    for key, chunks in (("merge_of_the_same_landmarks", cut), ("chained_chunks", chained), ("fresh_trackers", fresh)):
        merged = merged_capture([chunk_from_bytes(chunk_to_bytes(c)) for c in chunks]).capture
        out[key] = {
            **vars(seam_deviation(whole, merged, plan)),
            "same_camera": merged.intrinsics == whole.intrinsics,
            "same_beta": all(np.array_equal(whole.hands[s].beta, merged.hands[s].beta) for s in whole.hands)
            if sorted(whole.hands) == sorted(merged.hands)
            else False,
        }
    return out


def _mm(pair) -> str:
    return "n/a" if pair is None else f"{pair[0]:.3f} / {pair[1]:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-deviation", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the speed runs (default 2)")
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
                for key in ("merge_of_the_same_landmarks", "chained_chunks", "fresh_trackers"):
                    r = d[key]
                    print(
                        f"  {key:28s} off seams {_mm(r['off_seam_mm'])}, at seams {_mm(r['at_seam_mm'])}, "
                        f"identity changes {r['identity_changes']} ({r['frames']} hand-frames), "
                        f"same camera {r['same_camera']}, same beta {r['same_beta']}"
                    )
        if not args.skip_speed:
            s = results["speed"] = speed([SAMPLE, second], work, args.rounds)
            print(f"library {', '.join(s['inputs'])} (load {s['load_before']:.1f} -> {s['load_after']:.1f})")
            for k, r in enumerate(s["rounds"]):
                print(
                    f"  round {k + 1} (load {r['load']:.1f}): convert {r['convert_s']:.1f} s, farm {r['farm_s']:.1f} s "
                    f"(ratio {r['ratio']:.2f}), farm 60/15 {r['farm_60_15_s']:.1f} s (ratio {r['ratio_60_15']:.2f})"
                )
            print("  medians:")
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
