"""Test images for hand detection made from real footage at run time (never saved): close-range crops, in
which a hand fills 35-70 % of the frame height, and crops without hands, for false positives.

Both start from a frame and the landmarks (N, 21, 2 px) of every hand a reference pass found in it. A
close-range crop is the frame region around one hand, with the output's aspect, scaled so that the hand's
landmark box is ``fraction`` of the output height; its expected landmarks are the reference ones mapped
into the crop. A no-hand crop is the largest square (at least ``min_side`` px) in a frame corner or edge
middle that stays ``margin`` hand sizes away from every hand's landmark box: the reference pass must be a
good one (hands found with high presence) for the crop to be free of hands, see ``no_hand_crops``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class CloseCrop:
    """A close-range view of one hand: image (H, W, 3) uint8 RGB, expected kp2d (21, 2) px in it, and the
    hand's landmark-box height as a fraction of H."""

    image: np.ndarray
    kp2d: np.ndarray
    fraction: float


def close_range_crop(frame: np.ndarray, kp2d: np.ndarray, fraction: float, out_size=(1280, 720)) -> CloseCrop:
    """The crop of ``frame`` around the hand ``kp2d`` (21, 2 px) in which the hand's landmark box (its
    longer side) spans ``fraction`` of the output height, centred, resampled bilinearly to ``out_size``
    (width, height); the frame's edge pixels are repeated where the crop leaves it."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    w_out, h_out = out_size
    kp = np.asarray(kp2d, np.float64)
    lo, hi = kp.min(0), kp.max(0)
    centre, extent = (lo + hi) / 2, float(max(np.ptp(kp, axis=0).max(), 1.0))
    k = fraction * h_out / extent  # output px per frame px
    m = np.array([[k, 0.0, w_out / 2 - k * centre[0]], [0.0, k, h_out / 2 - k * centre[1]]])
    image = cv2.warpAffine(frame, m, (w_out, h_out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return CloseCrop(image, kp @ m[:, :2].T + m[:, 2], fraction)


def no_hand_crops(frame: np.ndarray, hands_kp2d: np.ndarray, min_side: int = 160, margin: float = 0.5):
    """Square crops of ``frame`` (H, W, 3) that keep ``margin`` times the hand's size away from the landmark
    box of every hand in ``hands_kp2d`` (N, 21, 2 px): for each of the 4 corners and 4 edge middles, the
    largest such square anchored there, if its side is at least ``min_side`` px. Returns a list of
    (crop (S, S, 3) uint8, (x0, y0, S))."""
    h, w = frame.shape[:2]
    boxes = []
    for kp in np.asarray(hands_kp2d, np.float64).reshape(-1, 21, 2):
        lo, hi = kp.min(0), kp.max(0)
        pad = margin * float(np.ptp(kp, axis=0).max())
        boxes.append((lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad))

    def clear(x0: float, y0: float, s: float) -> bool:
        return all(x0 + s <= b[0] or b[2] <= x0 or y0 + s <= b[1] or b[3] <= y0 for b in boxes)

    out = []
    for ax, ay in ((0, 0), (0.5, 0), (1, 0), (0, 0.5), (1, 0.5), (0, 1), (0.5, 1), (1, 1)):
        best = 0
        for s in range(min(w, h), min_side - 1, -16):
            x0, y0 = round(ax * (w - s)), round(ay * (h - s))
            if clear(x0, y0, s):
                best = s
                break
        if best:
            x0, y0 = round(ax * (w - best)), round(ay * (h - best))
            if not any((x0, y0, best) == c for _, c in out):
                out.append((np.ascontiguousarray(frame[y0 : y0 + best, x0 : x0 + best]), (x0, y0, best)))
    return out
