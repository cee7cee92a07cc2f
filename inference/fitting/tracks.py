"""Per-hand tracks over a whole clip from the landmarker's per-frame results.

The landmarker numbers hands with track ids; a hand that is lost and found again usually comes back
with a new id. Here the id segments are joined into at most one physical hand per side:

* each segment's side evidence is the sum over its frames of presence x (2 P(right) - 1);
* segments that share a frame must be different hands (interval conflicts); with at most two hands per
  frame this graph is two-colourable, and each connected group of overlapping segments gets the
  colouring (right/left) that agrees best with its summed evidence, so two hands that cross keep their
  identities (no swaps) and a single segment takes the side its own frames vote for;
* frames where a hand is absent stay in the arrays with ``valid`` False (the fit fills them in).

Non-finite keypoints are dropped (their confidence set to 0; a frame with no finite keypoints, or
non-finite 3D landmarks, counts as missing) and reported in the warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...core.keypoints import NUM_KEYPOINTS
from .fit import HandObservations


class NoHandError(ValueError):
    """No hand was found anywhere in the input."""


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

    def observations(self) -> HandObservations:
        """The evidence in the form ``fit.fit_hands`` takes."""
        return HandObservations(self.kp2d, self.kp_conf, self.world, self.valid.copy())


@dataclass
class TrackSet:
    """Hands of one clip. frames: (T,) source frame indices; image_size: (width, height) pixels;
    hands: at most one per side, right first; warnings: human-readable notes (gaps, NaNs, dropped hands)."""

    frames: np.ndarray
    image_size: tuple[int, int]
    hands: list[TrackedHand]
    warnings: list[str] = field(default_factory=list)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index runs where mask is True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _two_colour(segments: list[int], conflicts: dict[int, set[int]], evidence: dict[int, float]) -> dict[int, int]:
    """Colour (+1 right, -1 left) every segment so conflicting ones differ, per connected group choosing the
    colouring that agrees best with the evidence. A conflict the colouring cannot honour (three hands at
    once) is left to the caller (it keeps the stronger observation in such frames)."""
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


def _mark_contested(hands: list[tuple[TrackedHand, np.ndarray]], frames: np.ndarray, warnings: list[str]) -> None:
    """Down-weight frames where both crops read as the same side: the one contradicting its track's side
    most likely shows (part of) the other hand, as when the hands are intertwined. Its confidences become
    presence x P(this side), so the fit leans on its neighbours and smoothing treats it as doubtful."""
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


def build_tracks(results: Sequence, max_hands: int = 2) -> TrackSet:
    """Join per-frame landmarker results (``FrameResult`` list, one per processed frame, in order) into at
    most ``max_hands`` (1 or 2) hand tracks with one side each. Raises NoHandError when no frame has a
    usable hand."""
    if max_hands not in (1, 2):
        raise ValueError(f"max_hands must be 1 or 2, got {max_hands!r}")
    if not results:
        raise NoHandError("the input has no frames")
    t = len(results)
    frames = np.array([int(r.frame_index) for r in results], dtype=np.int64)
    image_size = tuple(int(v) for v in results[0].image_size)
    warnings: list[str] = []
    # per segment (track id): frame -> (kp2d, conf, world, presence); side evidence
    obs: dict[int, dict[int, tuple]] = {}
    evidence: dict[int, float] = {}
    nan_frames = 0
    for f, r in enumerate(results):
        for h in r.hands:
            kp2d = np.asarray(h.kp2d, dtype=np.float64)
            world = np.asarray(h.world, dtype=np.float64)
            presence = float(h.presence) if np.isfinite(h.presence) else 0.0
            finite = np.isfinite(kp2d).all(1)
            if not finite.all() or not np.isfinite(world).all():
                nan_frames += 1
            if finite.sum() < 4 or not np.isfinite(world).all() or presence <= 0:
                continue
            conf = np.where(finite, np.clip(presence, 0.0, 1.0), 0.0)
            tid = int(h.track_id)
            p_right = getattr(h, "p_right", None)
            if p_right is None:  # per-frame probability of the reported side
                p_right = h.side_score if h.side == "right" else 1.0 - h.side_score
            p_right = float(np.clip(np.nan_to_num(p_right, nan=0.5), 0.0, 1.0))
            obs.setdefault(tid, {})[f] = (np.nan_to_num(kp2d), conf, world, presence, p_right)
            evidence[tid] = evidence.get(tid, 0.0) + presence * (2.0 * float(p_right) - 1.0)
    if nan_frames:
        warnings.append(f"{nan_frames} hand observation(s) had NaN/inf keypoints: those keypoints were ignored")
    if not obs:
        raise NoHandError(f"no hand found in any of the {t} frame(s) of the input")
    # conflicts: segments seen in the same frame are different hands
    conflicts: dict[int, set[int]] = {}
    by_frame: dict[int, list[int]] = {}
    for tid, fr in obs.items():
        for f in fr:
            by_frame.setdefault(f, []).append(tid)
    for tids in by_frame.values():
        for a in tids:
            conflicts.setdefault(a, set()).update(b for b in tids if b != a)
    segments = sorted(obs)
    colour = _two_colour(segments, conflicts, evidence)
    built: list[tuple[TrackedHand, np.ndarray]] = []  # each hand with its per-frame P(side)
    for side, c in (("right", 1), ("left", -1)):
        tids = [s for s in segments if colour[s] == c]
        if not tids:
            continue
        kp2d = np.zeros((t, NUM_KEYPOINTS, 2))
        conf = np.zeros((t, NUM_KEYPOINTS))
        world = np.zeros((t, NUM_KEYPOINTS, 3))
        frame_conf = np.zeros(t)
        p_side = np.ones(t)  # this frame's own probability that the crop shows this side
        for tid in tids:
            for f, (k2, cf, w3, pr, p_r) in obs[tid].items():
                if pr > frame_conf[f]:  # an impossible third hand in this frame: keep the stronger one
                    kp2d[f], conf[f], world[f], frame_conf[f] = k2, cf, w3, pr
                    p_side[f] = p_r if c == 1 else 1.0 - p_r
        ev = np.array([evidence[s] for s in tids])
        weight = sum(sum(o[3] for o in obs[s].values()) for s in tids)
        agree = 0.5 + 0.5 * float(c * ev.sum()) / max(weight, 1e-9)
        hand = TrackedHand(side, agree, tids, kp2d, conf, world, frame_conf, frame_conf > 0, np.zeros(t, bool))
        built.append((hand, p_side))
    _mark_contested(built, frames, warnings)
    hands = [h for h, _ in built]
    if max_hands == 1 and len(hands) == 2:
        keep = int(np.argmax([h.frame_conf.sum() for h in hands]))
        drop = hands[1 - keep]
        warnings.append(
            f"--hands 1: kept the {hands[keep].side} hand, dropped the {drop.side} hand "
            f"(seen in {int(drop.valid.sum())} of {t} frames)"
        )
        hands = [hands[keep]]
    for h in hands:
        if h.side_confidence < 0.6:
            warnings.append(
                f"{h.side} hand: handedness was ambiguous ({100 * h.side_confidence:.0f} % of the evidence agrees)"
            )
        if t > 1:
            for a, b in _runs(~h.valid):
                span = f"frame {frames[a]}" if b - a == 1 else f"frames {frames[a]}-{frames[b - 1]}"
                how = "interpolated" if 0 < a and b < t else "held from the nearest seen frame"
                warnings.append(f"{h.side} hand missing in {span} ({b - a} frame(s)): {how}, marked invalid")
    return TrackSet(frames, image_size, hands, warnings)
