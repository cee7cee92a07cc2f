"""Runs MediaPipe Hands 0.10.21 (legacy ``mp.solutions.hands``) inside the separate venv made by
benchmarks/mediapipe_venv.sh. Called by bench_landmarks.py; imports nothing from HandCap (that venv has no
torch). Prints one JSON object on stdout.

    python mediapipe_worker.py speed VIDEO [--frames N] [--threads T]
    python mediapipe_worker.py predict IMAGE [IMAGE ...]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import mediapipe as mp
import numpy as np


def _hands(static: bool, max_hands: int = 2):
    return mp.solutions.hands.Hands(
        static_image_mode=static,
        max_num_hands=max_hands,
        model_complexity=1,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    )


def _decode(path: str, limit: int | None) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(path)
    frames = []
    t0 = time.perf_counter()
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    dt = time.perf_counter() - t0
    cap.release()
    return frames, dt


def _hands_out(res, w: int, h: int) -> list[dict]:
    out = []
    lms = res.multi_hand_landmarks or []
    worlds = res.multi_hand_world_landmarks or [None] * len(lms)
    labels = res.multi_handedness or [None] * len(lms)
    for lm, wl, lab in zip(lms, worlds, labels, strict=False):
        kp = [[p.x * w, p.y * h] for p in lm.landmark]
        world = None if wl is None else [[p.x, p.y, p.z] for p in wl.landmark]
        c = lab.classification[0] if lab is not None else None
        out.append({"kp2d": kp, "world": world, "label": c.label if c else None, "score": c.score if c else None})
    return out


def speed(args) -> dict:
    frames, decode_s = _decode(args.video, args.frames)
    hands = _hands(static=False)
    counts = []
    t0 = time.perf_counter()
    for f in frames:
        res = hands.process(f)
        counts.append(len(res.multi_hand_landmarks or []))
    dt = time.perf_counter() - t0
    hands.close()
    return {
        "frames": len(frames),
        "decode_s": decode_s,
        "process_s": dt,
        "hands_per_frame": counts,
        "mediapipe": mp.__version__,
    }


def predict(args) -> dict:
    hands = _hands(static=True)
    out = []
    t0 = time.perf_counter()
    for path in args.images:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        res = hands.process(rgb)
        out.append(_hands_out(res, rgb.shape[1], rgb.shape[0]))
    dt = time.perf_counter() - t0
    hands.close()
    return {"images": out, "process_s": dt, "mediapipe": mp.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("video")
    s.add_argument("--frames", type=int, default=None)
    p = sub.add_parser("predict")
    p.add_argument("images", nargs="+")
    args = ap.parse_args()
    print(json.dumps(speed(args) if args.cmd == "speed" else predict(args)))


if __name__ == "__main__":
    main()
