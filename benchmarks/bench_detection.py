"""Hand detection before and after the multi-scale palm search, in one run (issue 21's figures).

    python benchmarks/bench_detection.py [--sets coco_wholebody_2d panoptic_2d ge2019_dev] [--threads 2]
        [--skip-video]

"before" is the full view alone with at most 2 hands per image (MediaPipe's detector, HandCap's old
default); "after" is the default ``DetectionOptions`` (full view + coarse view + tiles) with at most 10
hands per image (``--augment`` adds "tta": after with ``augment_below=0.9``; ``--search`` adds "search": after
with ``DetectionOptions(landmark_search=True)``; ``--only`` picks configurations). All score with
``handcap.inference.evaluation``. Sections:

* annotated sets: hands found, 2D error and PCK@0.1 on those found, time and palm-network views per image;
* the shared photos (no annotations): each hand reported, with its presence and handedness score;
* close-range crops of the shared videos (made here, never saved): each hand found by the full-frame pass
  with presence >= 0.9, cropped so that it spans 35, 50 and 70 % of the crop height; found = matched as
  in ``evaluate`` against the reference landmarks mapped into the crop;
* no-hand crops of the same frames (``detection_sets.no_hand_crops``: squares of >= 160 px half a hand
  size away from every hand found): hands reported there are false positives;
* the counting clip in tracking mode, default options and ``video_tiles``: frames/s, two-hand frames,
  palm-network views per frame, and frames to re-acquire a hand painted out (``mask_hands``) over frames
  60-89: frames from 90 until both hands are reported again;
* ``--baseline DIR`` (a copy of an older checkout holding a ``handcap`` package, e.g. made with
  ``git archive HEAD~1 | tar -x -C DIR/handcap``): the counting clip in tracking mode with default options,
  this checkout and the baseline alternately in fresh processes, ``--rounds`` each; medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VIDEOS = {"two_hands_counting_720p.mp4": range(0, 210, 30), "one_hand_stereo_cam0.mp4": range(0, 378, 60)}
FRACTIONS = (0.35, 0.5, 0.7)
OCCLUDED = range(60, 90)


def configs(nets, augment: bool = False, search: bool = False):
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.multiscale import FULL_VIEW_ONLY, DetectionOptions

    def make(max_hands, detection, augment_below=0.0):
        opts = LandmarkerOptions(
            device="cpu", max_hands=max_hands, tracking=False, detection=detection, augment_below=augment_below
        )
        return HandLandmarker(opts, nets=nets)

    out = {"before": make(2, FULL_VIEW_ONLY), "after": make(10, DetectionOptions())}
    if augment:  # "after" plus test-time augmentation of hands read with presence below 0.9
        out["tta"] = make(10, DetectionOptions(), 0.9)
    if search:  # "after" plus the landmark-network search for hands the palm detector misses
        out["search"] = make(10, DetectionOptions(landmark_search=True))
    return out


def load_load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_sets(lms, sets) -> None:
    from handcap.inference.evaluation import evaluate_set, load_annotated_set

    print("annotated sets (found / hands, 2D error and PCK@0.1 on those found, ms and palm views per image)")
    for name in sets:
        data = load_annotated_set(DATA / name)
        for label, lm in lms.items():
            views: list[int] = []
            t0 = time.perf_counter()
            s = evaluate_set(data, _with_views(lm, views))
            dt = (time.perf_counter() - t0) / len(data.images)
            j = s.to_json()
            found = sum(h.pred_index is not None for im in s.per_image for h in im.hands)
            print(
                f"  {name:<18} {label:<6} {found:3d} / {j['hands']:<3d} 2D {_f(j['kp2d_err_px'], 3)} px, "
                f"PCK {_f(j['pck_0.1'], 3)}; {1000 * dt:6.0f} ms, {np.mean(views):5.1f} views per image"
            )


def _with_views(lm, views: list[int]):
    """evaluate_set's predictor for ``lm`` that also records each image's palm views."""
    from handcap.inference.evaluation import Prediction
    from handcap.inference.sources import read_image

    def predict(paths):
        results = lm.process_images([read_image(p) for p in paths])
        views.extend(r.palm_views for r in results)
        return [[Prediction(h.kp2d, h.world, h.side, h.presence) for h in r.hands] for r in results]

    return predict


def bench_photos(lms) -> None:
    from handcap.inference.sources import read_image

    print("shared photos (hands reported: side, presence, handedness score)")
    for path in sorted((DATA / "photos").glob("*.jpg")):
        img = read_image(path)
        for label, lm in lms.items():
            t0 = time.perf_counter()
            r = lm.process_image(img)
            dt = time.perf_counter() - t0
            hands = ", ".join(f"{h.side[0]} {h.presence:.2f}/{h.side_score:.2f}" for h in r.hands) or "none"
            cost = f"{1000 * dt:.0f} ms, {r.palm_views} views"
            print(f"  {path.name:<22} {label:<6} {len(r.hands)} hand(s) [{hands}]; {cost}")


def reference_frames():
    """(video name, frame index, frame, hands' kp2d (N, 21, 2)) of the sampled frames, hands found by the
    full-view pass with presence >= 0.9."""
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.multiscale import FULL_VIEW_ONLY
    from handcap.inference.sources import open_source

    ref = HandLandmarker(LandmarkerOptions(device="cpu", tracking=False, detection=FULL_VIEW_ONLY))
    out = []
    for name, picks in VIDEOS.items():
        for i, frame in open_source(DATA / "videos" / name):
            if i in picks:
                hands = [h.kp2d for h in ref.process_image(frame).hands if h.presence >= 0.9]
                out.append((name, i, frame, np.array(hands).reshape(-1, 21, 2)))
    return out


def bench_crops(lms, refs, close: bool = True) -> None:
    from handcap.inference.detection_sets import close_range_crop, no_hand_crops
    from handcap.inference.evaluation import GtHand, match_hands

    print("close-range crops (hand at 35 / 50 / 70 % of the crop height): found / crops, per fraction")
    for label, lm in lms.items() if close else ():
        found = {f: [0, 0] for f in FRACTIONS}
        for _, _, frame, hands in refs:
            for kp in hands:
                for frac in FRACTIONS:
                    c = close_range_crop(frame, kp, frac, (frame.shape[1], frame.shape[0]))
                    preds = [h.kp2d for h in lm.process_image(c.image).hands]
                    gt = GtHand(None, c.kp2d, np.ones(21, bool), None)
                    found[frac][0] += match_hands(preds, [gt])[0] is not None
                    found[frac][1] += 1
        row = ", ".join(f"{int(100 * f)} %: {a}/{b}" for f, (a, b) in found.items())
        print(f"  {label:<6} {row}")
    print("no-hand crops (squares >= 160 px, half a hand size away from every hand): crops with a hand reported")
    crops = [c for _, _, frame, hands in refs for c, _ in no_hand_crops(frame, hands)]
    for label, lm in lms.items():
        reported = [len(lm.process_image(c).hands) for c in crops]
        print(f"  {label:<6} {sum(n > 0 for n in reported)} of {len(crops)} crops ({sum(reported)} hands)")


def bench_video(nets) -> None:
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.multiscale import DetectionOptions
    from handcap.inference.roi import mask_hands
    from handcap.inference.sources import open_source

    frames = np.stack([f for _, f in open_source(DATA / "videos" / "two_hands_counting_720p.mp4")])
    print("two_hands_counting_720p.mp4, tracking (frames/s, two-hand frames, palm views per frame, re-acquire)")
    variants = {"default": DetectionOptions(), "video_tiles": DetectionOptions(video_tiles=True)}
    for label, det in variants.items():
        lm = HandLandmarker(LandmarkerOptions(device="cpu", max_hands=2, detection=det), nets=nets)
        list(lm.iter_source(frames[:8]))
        t0 = time.perf_counter()
        res = lm.process_source(frames)
        fps = len(frames) / (time.perf_counter() - t0)
        two = np.mean([len(r.hands) == 2 for r in res])
        views = np.mean([r.palm_views for r in res])
        hidden = frames.copy()
        for i in OCCLUDED:  # paint out the left hand (the track seen as left at that frame)
            left = [h.kp2d for h in res[i].hands if h.side == "left"]
            if left:
                hidden[i] = mask_hands(frames[i], np.array(left))
        occ = lm.process_source(hidden)
        back = next((i - OCCLUDED.stop for i in range(OCCLUDED.stop, len(occ)) if len(occ[i].hands) == 2), None)
        occ_views = np.mean([occ[i].palm_views for i in OCCLUDED])
        print(
            f"  {label:<12} {fps:6.1f} frames/s, two hands in {100 * two:.1f} % of frames, {views:.2f} palm views "
            f"per frame ({occ_views:.2f} while a hand is hidden); both hands again {back} frame(s) after the occlusion"
        )


def time_tracking() -> None:
    """Print frames/s of the default tracking pass over the counting clip (run in a fresh process)."""
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.sources import open_source

    frames = np.stack([f for _, f in open_source(DATA / "videos" / "two_hands_counting_720p.mp4")])
    lm = HandLandmarker(LandmarkerOptions(device="cpu", max_hands=2, tracking=True, lanes=1))
    list(lm.iter_source(frames[:10]))
    t0 = time.perf_counter()
    list(lm.iter_source(frames))
    print(len(frames) / (time.perf_counter() - t0))


def bench_baseline(baseline: Path, rounds: int, threads: int) -> None:
    # this checkout: the installed handcap (the venv maps it to this repository); baseline: first on the path
    paths = {"this checkout": None, "baseline": str(baseline.resolve())}
    fps: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for label, path in paths.items():
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            if path is not None:
                env["PYTHONPATH"] = path
            cmd = [sys.executable, __file__, "--time-tracking", "--threads", str(threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd="/")
            fps[label].append(float(out.stdout.strip().splitlines()[-1]))
    a, b = (statistics.median(v) for v in fps.values())
    print(f"tracking speed, default options, {rounds} alternating rounds ({load_load()})")
    for label, v in fps.items():
        print(f"  {label:<14} " + ", ".join(f"{x:.1f}" for x in v) + f" frames/s, median {statistics.median(v):.1f}")
    print(f"  ratio this checkout / baseline {a / b:.2f}")


def _f(v, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["coco_wholebody_2d", "panoptic_2d", "ge2019_dev"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-video", action="store_true")
    ap.add_argument("--video-only", action="store_true", help="only the counting clip in tracking mode")
    ap.add_argument("--augment", action="store_true", help="add a third configuration: after + augment_below 0.9")
    ap.add_argument("--search", action="store_true", help="add a configuration: after + landmark_search")
    ap.add_argument("--only", nargs="+", help="configurations to run (default all of before, after, ...)")
    ap.add_argument("--skip-sets", action="store_true", help="leave out the annotated sets")
    ap.add_argument("--skip-photos", action="store_true", help="leave out the shared photos")
    ap.add_argument("--skip-close", action="store_true", help="leave out the close-range crops")
    ap.add_argument("--baseline", type=Path, help="time tracking against this older checkout's handcap package")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--time-tracking", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}")
    import torch

    from handcap.inference.batching import HandNets

    torch.set_num_threads(args.threads)
    if args.time_tracking:
        time_tracking()
        return
    if args.baseline:
        bench_baseline(args.baseline, args.rounds, args.threads)
        return
    nets = HandNets("cpu")
    lms = configs(nets, args.augment, args.search)
    if args.only:
        lms = {k: v for k, v in lms.items() if k in args.only}
    print(f"start: {load_load()}")
    if not args.video_only:
        if not args.skip_sets:
            bench_sets(lms, args.sets)
        if not args.skip_photos:
            bench_photos(lms)
        bench_crops(lms, reference_frames(), not args.skip_close)
    if not args.skip_video:
        bench_video(nets)
    print(f"end: {load_load()}")


if __name__ == "__main__":
    main()
