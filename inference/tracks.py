"""Per-hand tracks over a whole clip from the landmarker's per-frame results.

The landmarker numbers hands with track ids; a hand that is lost and found again usually comes back with a
new id. ``build_tracks`` joins the id segments into physical hands in named steps:

1. ``collect_observations``: each usable hand of each frame as an ``Observation``, grouped by segment (track
   id). Non-finite keypoints are dropped (their confidence set to 0); a hand with fewer than 4 finite
   keypoints, non-finite 3D landmarks or no presence counts as missing; the warnings say how many;
2. ``segment_conflicts``: segments seen in the same frame are different hands;
3. ``assign_hands``: which segments form one hand, and its side. Each segment's side evidence is the sum
   over its frames of presence x (2 P(right) - 1). Up to two hands: the conflict graph is two-coloured,
   each connected group of overlapping segments getting the colouring that agrees best with its summed
   evidence, so two hands that cross keep their identities (no swaps). More hands (a photo or clip of
   several people): each segment takes the side its evidence votes for and joins the hand of that side
   that it does not overlap in time and whose last wrist is nearest, else starts a new hand;
4. ``assemble_hand``: a hand's arrays over all T frames; frames where it is absent stay with ``valid``
   False (the fit fills them in);
5. ``mark_contested`` (two hands): frames where both crops read as the same side are down-weighted;
6. ``keep_hands`` and ``gap_warnings``: ``max_hands`` strongest hands, and notes on ambiguity and gaps.

Each hand gets a key: "right", "left" for each side's first (strongest) hand, then "right_2", ... (the
capture file's track keys, ``core.capture.track_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.capture import track_key
from ..core.keypoints import NUM_KEYPOINTS


class NoHandError(ValueError):
    """No hand was found anywhere in the input."""


@dataclass
class Observation:
    """One usable hand in one frame of a segment.

    Attributes:
        kp2d: (21, 2) pixels, non-finite entries replaced by 0.
        conf: (21,) in [0, 1]: the presence where the keypoint is finite, else 0.
        world: (21, 3) metres, camera-aligned axes, origin near the hand centre.
        presence: hand presence in (0, 1].
        p_right: this frame's probability that the hand is a right hand.
    """

    kp2d: np.ndarray
    conf: np.ndarray
    world: np.ndarray
    presence: float
    p_right: float


@dataclass
class TrackedHand:
    """One physical hand over the T frames of a clip.

    Attributes:
        side: "right" or "left", decided once from all its frames.
        side_confidence: share in [0, 1] of the presence-weighted handedness evidence that agrees with
            ``side`` (0.5 = a coin toss).
        track_ids: landmarker track ids joined into this hand.
        kp2d: (T, 21, 2) pixels (zeros where missing).
        kp_conf: (T, 21) in [0, 1]: the hand's presence score where the keypoint is finite, else 0.
        world: (T, 21, 3) metres, camera-aligned axes, origin near the hand centre (zeros where missing).
        frame_conf: (T,) presence score (0 where missing), times the frame's own handedness score in
            contested frames.
        valid: (T,) bool, the hand was observed with usable keypoints.
        contested: (T,) bool, frames whose crop read as the other hand while the other hand was seen with
            its own side (hands entangled: the landmarks may belong to the other hand); their keypoint and
            frame confidences are multiplied by the frame's probability of this hand's side.
        key: the capture's track key ("right", "left", "right_2", ...).
    """

    side: str
    side_confidence: float
    track_ids: list[int]
    kp2d: np.ndarray
    kp_conf: np.ndarray
    world: np.ndarray
    frame_conf: np.ndarray
    valid: np.ndarray
    contested: np.ndarray
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = self.side

    def observations(self):
        """The evidence in the form ``fit.fit_hands`` takes (``fitting.fit.HandObservations``)."""
        from .fitting.fit import HandObservations  # here: the fitting package imports this module

        return HandObservations(self.kp2d, self.kp_conf, self.world, self.valid.copy())


@dataclass
class TrackSet:
    """Hands of one clip. frames: (T,) source frame indices; image_size: (width, height) pixels;
    hands: right hands first, then left, each side strongest first (keys "right", "right_2", ...);
    warnings: human-readable notes (gaps, NaNs, dropped hands)."""

    frames: np.ndarray
    image_size: tuple[int, int]
    hands: list[TrackedHand]
    warnings: list[str] = field(default_factory=list)


Segments = dict[int, dict[int, Observation]]  # track id -> frame position -> observation


def collect_observations(results: Sequence) -> tuple[Segments, int]:
    """Usable observations per segment, and the number of hand observations that had NaN/inf values."""
    segments: Segments = {}
    nan_obs = 0
    for f, r in enumerate(results):
        for h in r.hands:
            kp2d = np.asarray(h.kp2d, dtype=np.float64)
            world = np.asarray(h.world, dtype=np.float64)
            presence = float(h.presence) if np.isfinite(h.presence) else 0.0
            finite = np.isfinite(kp2d).all(1)
            world_ok = bool(np.isfinite(world).all())
            nan_obs += not (finite.all() and world_ok)
            if finite.sum() < 4 or not world_ok or presence <= 0:
                continue
            p_right = getattr(h, "p_right", None)
            if p_right is None:  # per-frame probability of the reported side
                p_right = h.side_score if h.side == "right" else 1.0 - h.side_score
            p_right = float(np.clip(np.nan_to_num(p_right, nan=0.5), 0.0, 1.0))
            conf = np.where(finite, np.clip(presence, 0.0, 1.0), 0.0)
            segments.setdefault(int(h.track_id), {})[f] = Observation(
                np.nan_to_num(kp2d), conf, world, presence, p_right
            )
    return segments, nan_obs


def side_evidence(segment: dict[int, Observation]) -> float:
    """Sum over the segment's frames of presence x (2 P(right) - 1): > 0 votes right."""
    return float(sum(o.presence * (2.0 * o.p_right - 1.0) for o in segment.values()))


def segment_conflicts(segments: Segments) -> dict[int, set[int]]:
    """Segment -> the segments seen in one of its frames (so different hands)."""
    by_frame: dict[int, list[int]] = {}
    for tid, frames in segments.items():
        for f in frames:
            by_frame.setdefault(f, []).append(tid)
    conflicts: dict[int, set[int]] = {}
    for tids in by_frame.values():
        for a in tids:
            conflicts.setdefault(a, set()).update(b for b in tids if b != a)
    return conflicts


def _two_colour(segments: list[int], conflicts: dict[int, set[int]], evidence: dict[int, float]) -> dict[int, int]:
    """Colour (+1 right, -1 left) every segment so conflicting ones differ, per connected group choosing the
    colouring that agrees best with the evidence. A conflict the colouring cannot honour (three hands at
    once) is left to ``assemble_hand`` (it keeps the stronger observation in such frames)."""
    colour: dict[int, int] = {}
    for root in segments:
        if root in colour:
            continue
        group, stack = [], [root]
        colour[root] = 1
        while stack:
            s = stack.pop()
            group.append(s)
            for o in sorted(conflicts.get(s, ())):
                if o not in colour:
                    colour[o] = -colour[s]
                    stack.append(o)
        agreement = sum(colour[s] * evidence[s] for s in group)
        if agreement < 0:  # the flipped colouring agrees better
            for s in group:
                colour[s] = -colour[s]
    return colour


def assign_hands(segments: Segments, conflicts: dict[int, set[int]], max_hands: int) -> list[tuple[str, list[int]]]:
    """Groups of segments that are one physical hand, each with its side: (side, track ids), right first.
    Up to two hands, one per side by two-colouring; more, by side vote and packing (module docstring)."""
    order = sorted(segments)
    evidence = {s: side_evidence(segments[s]) for s in order}
    if max_hands <= 2:
        colour = _two_colour(order, conflicts, evidence)
        groups = [(side, [s for s in order if colour[s] == c]) for side, c in (("right", 1), ("left", -1))]
        return [(side, tids) for side, tids in groups if tids]
    hands: list[tuple[str, list[int]]] = []
    for s in sorted(order, key=lambda s: min(segments[s])):  # in order of first appearance
        side = "right" if evidence[s] >= 0 else "left"
        first = min(segments[s])
        wrist = segments[s][first].kp2d[0]
        gaps = {}  # hand index -> wrist distance from the hand's last frame before this segment
        for i, (hand_side, tids) in enumerate(hands):
            before = [(f, o) for o in tids for f in segments[o] if f < first]
            if hand_side == side and before and not any(o in conflicts.get(s, ()) for o in tids):
                f, o = max(before)
                gaps[i] = float(np.linalg.norm(segments[o][f].kp2d[0] - wrist))
        if gaps:
            hands[min(gaps, key=gaps.get)][1].append(s)
        else:
            hands.append((side, [s]))
    return sorted(hands, key=lambda h: h[0] != "right")


def assemble_hand(side: str, tids: list[int], segments: Segments, t: int) -> tuple[TrackedHand, np.ndarray]:
    """The hand's arrays over the T frames, and its per-frame probability of ``side`` (1 where unseen)."""
    kp2d = np.zeros((t, NUM_KEYPOINTS, 2))
    conf = np.zeros((t, NUM_KEYPOINTS))
    world = np.zeros((t, NUM_KEYPOINTS, 3))
    frame_conf = np.zeros(t)
    p_side = np.ones(t)
    for tid in tids:
        for f, o in segments[tid].items():
            if o.presence > frame_conf[f]:  # an impossible extra hand in this frame: keep the stronger one
                kp2d[f], conf[f], world[f], frame_conf[f] = o.kp2d, o.conf, o.world, o.presence
                p_side[f] = o.p_right if side == "right" else 1.0 - o.p_right
    sign = 1.0 if side == "right" else -1.0
    weight = sum(o.presence for s in tids for o in segments[s].values())
    agree = 0.5 + 0.5 * sign * sum(side_evidence(segments[s]) for s in tids) / max(weight, 1e-9)
    valid = frame_conf > 0
    return TrackedHand(side, agree, tids, kp2d, conf, world, frame_conf, valid, np.zeros(t, bool)), p_side


def mark_contested(hands: list[tuple[TrackedHand, np.ndarray]], frames: np.ndarray, warnings: list[str]) -> None:
    """Down-weight frames where both crops of a two-hand clip read as the same side: the one contradicting
    its track's side most likely shows (part of) the other hand, as when the hands are intertwined. Its
    confidences become presence x P(this side), so the fit leans on its neighbours and smoothing treats it
    as doubtful."""
    if len(hands) != 2:
        return
    (a, pa), (b, pb) = hands
    both = a.valid & b.valid
    for (h, p), (o, po) in (((a, pa), (b, pb)), ((b, pb), (a, pa))):
        bad = both & (p < 0.5) & (po >= 0.5)
        if not bad.any():
            continue
        h.contested = bad
        h.kp_conf[bad] *= p[bad, None]
        h.frame_conf[bad] *= p[bad]
        listed = ", ".join(str(int(f)) for f in frames[bad][:12]) + (" ..." if bad.sum() > 12 else "")
        warnings.append(
            f"{h.side} hand: {int(bad.sum())} frame(s) where its crop read as the {o.side} hand (hands entangled): "
            f"evidence down-weighted ({listed})"
        )


def keep_hands(hands: list[TrackedHand], max_hands: int, warnings: list[str]) -> list[TrackedHand]:
    """The ``max_hands`` hands with the most summed frame confidence, right hands first, then left, each
    side strongest first, keyed "right", "right_2", ...; the dropped ones are named in a warning."""
    rank = sorted(range(len(hands)), key=lambda i: -hands[i].frame_conf.sum())
    kept = sorted(rank[:max_hands])
    for i in rank[max_hands:]:
        h = hands[i]
        seen = f"seen in {int(h.valid.sum())} of {len(h.valid)} frames"
        if max_hands == 1 and len(hands) == 2:
            warnings.append(f"--hands 1: kept the {hands[kept[0]].side} hand, dropped the {h.side} hand ({seen})")
        else:
            warnings.append(f"--hands {max_hands}: dropped a {h.side} hand ({seen})")
    out = []
    for side in ("right", "left"):
        mine = sorted((hands[i] for i in kept if hands[i].side == side), key=lambda h: -h.frame_conf.sum())
        for n, h in enumerate(mine):
            h.key = track_key(side, n)
            out.append(h)
    return out


def gap_warnings(hands: list[TrackedHand], frames: np.ndarray) -> list[str]:
    """Notes on ambiguous handedness and on the frames each hand is missing in."""
    out, t = [], len(frames)
    for h in hands:
        name = h.side if h.key == h.side else h.key
        if h.side_confidence < 0.6:
            share = f"{100 * h.side_confidence:.0f} %"
            out.append(f"{name} hand: handedness was ambiguous ({share} of the evidence agrees)")
        if t > 1:
            for a, b in _runs(~h.valid):
                span = f"frame {frames[a]}" if b - a == 1 else f"frames {frames[a]}-{frames[b - 1]}"
                how = "interpolated" if 0 < a and b < t else "held from the nearest seen frame"
                out.append(f"{name} hand missing in {span} ({b - a} frame(s)): {how}, marked invalid")
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index runs where mask is True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def build_tracks(results: Sequence, max_hands: int = 2) -> TrackSet:
    """Join per-frame landmarker results (``FrameResult`` list, one per processed frame, in order) into at
    most ``max_hands`` hand tracks with one side each. Raises NoHandError when no frame has a usable hand."""
    if not isinstance(max_hands, int) or max_hands < 1:
        raise ValueError(f"max_hands must be a positive integer, got {max_hands!r}")
    if not results:
        raise NoHandError("the input has no frames")
    t = len(results)
    frames = np.array([int(r.frame_index) for r in results], dtype=np.int64)
    image_size = tuple(int(v) for v in results[0].image_size)
    warnings: list[str] = []
    segments, nan_obs = collect_observations(results)
    if nan_obs:
        warnings.append(f"{nan_obs} hand observation(s) had NaN/inf keypoints: those keypoints were ignored")
    if not segments:
        raise NoHandError(f"no hand found in any of the {t} frame(s) of the input")
    groups = assign_hands(segments, segment_conflicts(segments), max_hands)
    built = [assemble_hand(side, tids, segments, t) for side, tids in groups]
    mark_contested(built, frames, warnings)
    hands = keep_hands([h for h, _ in built], max_hands, warnings)
    return TrackSet(frames, image_size, hands, warnings + gap_warnings(hands, frames))
