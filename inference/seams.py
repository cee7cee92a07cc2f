"""How far a merged, chunked capture is from the capture of the whole clip (``benchmarks/bench_farm.py``, tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunks import ChunkError, ChunkSpec


@dataclass
class SeamDeviation:
    """How far a merged capture is from a capture of the whole clip (same frames), per region.

    off_seam_mm / at_seam_mm: (max, mean) over frames and keypoints of the 3D keypoint distance in mm, in
    frames that one chunk holds / that two chunks share (None when the region has no frame where both
    captures saw the hand); identity_changes: frames where a merged hand lies nearer the reference's other
    hand than its own side's (plus 1 per side present in only one capture); frames: compared hand-frames.
    """

    off_seam_mm: tuple[float, float] | None
    at_seam_mm: tuple[float, float] | None
    identity_changes: int
    frames: int


def seam_deviation(reference, merged, plan: list[ChunkSpec]) -> SeamDeviation:
    """Compare two ``core.capture.Capture`` of the same frames (``reference``: the whole clip at once)."""
    if not np.array_equal(reference.frames, merged.frames):
        raise ChunkError("the captures cover different frames")
    frames = np.asarray(reference.frames)
    counts = sum(((frames >= c.start) & (frames < c.stop)).astype(int) for c in plan)
    seam = counts > 1
    changes = len(set(reference.hands) ^ set(merged.hands))
    dists: dict[bool, list[np.ndarray]] = {False: [], True: []}
    compared = 0
    for side in sorted(set(reference.hands) & set(merged.hands)):
        a, b = reference.hands[side], merged.hands[side]
        both = a.valid & b.valid
        d = 1000.0 * np.linalg.norm(a.kp3d.astype(np.float64) - b.kp3d, axis=-1)  # (T, 21) mm
        for at_seam in (False, True):
            sel = both & (seam == at_seam)
            if sel.any():
                dists[at_seam].append(d[sel])
        compared += int(both.sum())
        other = reference.hands.get("left" if side == "right" else "right")
        if other is not None:
            two = both & other.valid
            own = np.linalg.norm(b.kp2d - a.kp2d, axis=-1).mean(-1)
            swapped = np.linalg.norm(b.kp2d - other.kp2d, axis=-1).mean(-1)
            changes += int((two & (swapped < own)).sum())

    def summary(parts):
        if not parts:
            return None
        x = np.concatenate(parts)
        return float(x.max()), float(x.mean())

    return SeamDeviation(summary(dists[False]), summary(dists[True]), changes, compared)
