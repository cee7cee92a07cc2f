"""Which hand tracks are one person's, and the two-hand stages (``two_hands``) run per such pair.

A person is one right and one left track. With exactly one of each they are paired as before (the two-hand
options ``same_person`` / ``two_hands`` say how far to trust that). With more tracks (a photo or clip of several
people) the pairs are chosen greedily, cheapest first, among right/left tracks that are seen together: the cost
is the median, over the frames both are seen in, of the distance between the two hands' keypoint centroids in
units of their pixel size (RMS distance of the keypoints from their centroid; a hand's own span is about 2.5
of them), plus the log ratio of the two sizes (one person's hands are at about the same depth, so the same size
in the image). Pairs whose sizes differ by more than ``MAX_SIZE_RATIO`` or that are further apart than
``MAX_DISTANCE`` are not a person; tracks left over are fitted alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import ik, two_hands

#: Most size ratio (larger / smaller pixel size) of one person's two hands.
MAX_SIZE_RATIO = 2.0
#: Most distance between one person's hands, in hand pixel sizes (arms spread wide are about 25).
MAX_DISTANCE = 30.0


@dataclass
class Pairing:
    """pairs: (right index, left index) into the fit's tracks; records: one JSON dict per person (paired or
    alone) in the order of their first track, filled in by the two-hand stages."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def record_of(self, pair: tuple[int, int]) -> dict:
        return next(r for r in self.records if r["tracks"] == list(pair))


def _centre_and_size(obs) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) confidence-weighted keypoint centroid and (T,) RMS pixel size of one track."""
    weights = np.maximum(np.asarray(obs.kp_conf, np.float64), 1e-6)
    c, size = ik.weighted_spread(np.asarray(obs.kp2d, np.float64), weights)
    return c, np.maximum(size, 1.0)


def pair_cost(obs_a, obs_b) -> tuple[float, float] | None:
    """(distance in hand sizes, size ratio) of two tracks over the frames both are seen in; None if never."""
    both = np.asarray(obs_a.valid) & np.asarray(obs_b.valid)
    if not both.any():
        return None
    (ca, sa), (cb, sb) = _centre_and_size(obs_a), _centre_and_size(obs_b)
    dist = np.linalg.norm(ca[both] - cb[both], axis=-1) / np.sqrt(sa[both] * sb[both])
    ratio = np.exp(abs(np.median(np.log(sa[both] / sb[both]))))
    return float(np.median(dist)), float(ratio)


def pair_hands(sides: list[str | None], observations) -> Pairing:
    """The persons among the tracks (module docstring). sides: each track's side (None: unknown, as for models
    without one; then exactly two tracks are paired, as the fit always did)."""
    n = len(observations)
    out = Pairing()
    rights = [i for i, s in enumerate(sides) if s == "right"]
    lefts = [i for i, s in enumerate(sides) if s == "left"]
    if n == 2 and (None in sides or (len(rights), len(lefts)) == (1, 1)):
        cost = pair_cost(*observations)
        out.pairs = [(0, 1)]
        out.records = [{"tracks": [0, 1], "why": "the only two hands"}]
        if cost is not None:
            out.records[0].update(distance=round(cost[0], 2), size_ratio=round(cost[1], 3))
        return out
    candidates = []
    for i in rights:
        for j in lefts:
            cost = pair_cost(observations[i], observations[j])
            if cost is not None and cost[0] <= MAX_DISTANCE and cost[1] <= MAX_SIZE_RATIO:
                candidates.append((cost[0] + np.log(cost[1]), i, j, cost))
    used: set[int] = set()
    for _, i, j, (dist, ratio) in sorted(candidates):
        if i in used or j in used:
            continue
        used |= {i, j}
        out.pairs.append((i, j))
        out.records.append(
            {"tracks": [i, j], "why": "nearest", "distance": round(dist, 2), "size_ratio": round(ratio, 3)}
        )
    out.records += [{"tracks": [i], "why": "no other hand of this person"} for i in range(n) if i not in used]
    out.records.sort(key=lambda r: min(r["tracks"]))
    return out


def couple_pairs(solvers, pairing: Pairing, report) -> None:
    """``two_hands.couple_sizes`` per person (one person's hands get one size)."""
    start = time.perf_counter()
    for pair in pairing.pairs:
        scale = [round(a, 4) for a in two_hands.couple_sizes([solvers[i] for i in pair])]
        pairing.record_of(pair)["size_scale"] = scale
    if len(pairing.pairs) == 1:  # one person: the report reads as it always did
        report.two_hands["size_scale"] = pairing.record_of(pairing.pairs[0])["size_scale"]
    report.seconds["couple_sizes"] = time.perf_counter() - start


def joint_stages(models, fits: list, observations, k, options, dt_scale: float, pairing: Pairing, report) -> list:
    """``two_hands.joint_stage`` per person; returns the fits with each pair's moved."""
    fits = list(fits)
    seconds = 0.0
    for pair in pairing.pairs:
        moved, info = two_hands.joint_stage(
            [models[i] for i in pair], [fits[i] for i in pair], [observations[i] for i in pair], k, options, dt_scale
        )
        for i, f in zip(pair, moved, strict=True):
            fits[i] = f
        seconds += info.seconds.get("joint_stage", 0.0)
        joint = {n: v for n, v in info.to_json().items() if n not in ("size_scale", "seconds")}
        pairing.record_of(pair).update(joint)
        if len(pairing.pairs) == 1:
            report.two_hands.update(joint)
    if pairing.pairs:
        report.seconds["joint_stage"] = seconds
    return fits
