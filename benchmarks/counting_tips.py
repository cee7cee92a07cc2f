"""Where the two index tips touch in the image, how far apart are they in 3D? (issue 16, the counting clip)

Run: .venv/bin/python benchmarks/counting_tips.py CAPTURE.npz [CAPTURE.npz ...] [--px 20] [--frame 29]

For each capture (two hands): the frames where both hands are seen and the observed index tips (keypoint 8)
are closer than --px in the image, the fitted 3D distance between the index tips there (mean, max), the
same at --frame, and the wrist depths over frames 0:30.
"""

from __future__ import annotations

import argparse

import numpy as np

from handcap.core.capture import read_capture

INDEX_TIP = 8


def tip_rows(path: str, px: float, frame: int) -> dict[str, float]:
    cap = read_capture(path)
    right, left = cap.hands["right"], cap.hands["left"]
    both = right.valid & left.valid
    d2 = np.linalg.norm(right.kp2d[:, INDEX_TIP] - left.kp2d[:, INDEX_TIP], axis=-1)
    d3 = 1000.0 * np.linalg.norm(right.kp3d[:, INDEX_TIP] - left.kp3d[:, INDEX_TIP], axis=-1)
    touch = both & (d2 < px)
    return {
        "frames": int(touch.sum()),
        "mean_mm": float(d3[touch].mean()) if touch.any() else float("nan"),
        "max_mm": float(d3[touch].max()) if touch.any() else float("nan"),
        "frame_px": float(d2[frame]),
        "frame_mm": float(d3[frame]),
        "z_right": float(right.kp3d[:30, 0, 2][right.valid[:30]].mean()),
        "z_left": float(left.kp3d[:30, 0, 2][left.valid[:30]].mean()),
        "touch_frames": np.nonzero(touch)[0].tolist(),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--px", type=float, default=20.0)
    ap.add_argument("--frame", type=int, default=29)
    args = ap.parse_args(argv)
    for path in args.captures:
        r = tip_rows(path, args.px, args.frame)
        print(
            f"{path}: {r['frames']} frames with the index tips under {args.px:.0f} px: {r['mean_mm']:.1f} mm mean, "
            f"{r['max_mm']:.1f} mm max in 3D (frames {r['touch_frames']}); frame {args.frame}: {r['frame_px']:.1f} px, "
            f"{r['frame_mm']:.1f} mm; wrist depth 0:30 right / left {r['z_right']:.3f} / {r['z_left']:.3f} m"
        )


if __name__ == "__main__":
    main()
