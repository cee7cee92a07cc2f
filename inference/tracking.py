"""Per-stream hand tracking state: which ROIs to look at next, de-duplication and track identities.

One ``TrackerState`` follows one stream of frames (a video, or a chunk of it). Per frame it proposes the
ROIs of the hands tracked so far (MediaPipe's ROI from the previous landmarks), asks for palm detection
when fewer than ``max_hands`` hands are tracked, and turns the landmark outputs into observations with
stable track ids:

* a palm whose wrist and middle MCP lie on a tracked hand's landmarks is that hand again and is dropped
  (MediaPipe drops palms whose ROI overlaps a tracked ROI by IoU > 0.5; comparing keypoints instead keeps
  a second hand that crosses in front of a tracked one);
* two results are the same hand when their next ROIs overlap by IoU > 0.5 and their keypoints nearly
  coincide; the one whose track side agrees with the frame's handedness is kept (then the higher presence);
* a new hand takes the id of a lost track of the same side (the nearest one), else a fresh id;
* a result that confidently shows side S next to a result of a track settled as S, while its own track is
  not S, is a confused view of that hand (a tracked ROI that slid onto the other hand while hiding behind
  it, or a palm found there) and is dropped for that frame;
* unless that result is a tracked hand ENTANGLED with the other one: intertwined hands make the landmark
  model's handedness (and its landmarks, frame after frame) follow the hand that fills most of the crop.
  A track settled as the other side whose result stays on its own hand (wrist near its last clean wrist,
  well apart from the other wrist, palm nearer its own last clean palm than the other hand's) is kept,
  with its honest frame handedness, but is ANCHORED: its ROI and landmarks of the last clean frame stay
  the ones proposed and compared against (chaining ROIs from confused landmarks slides them onto the other
  hand), until a frame's handedness agrees with the track again or the hands part, for at most
  ``CONTESTED_FRAMES`` frames in a row. Meanwhile the palm detector looks for it in the frame with the
  other hands painted out (``masked_search``); a palm found near its anchor gives its ROI for that frame.
  A frame whose view of it is implausible drops it for that frame only: it is looked for again next frame;
* a hand missing from a frame keeps its last good ROI for up to ``COAST_FRAMES`` frames, so it is picked
  up again where it was hidden without waiting for the palm detector.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..core.keypoints import HandKeypoint as K
from .palm import PalmDetection
from .roi import landmark_rois, palm_rois, roi_iou

#: Next-ROI IoU above which two results may be duplicates (MediaPipe's association threshold).
DUPLICATE_IOU = 0.5
#: Mean keypoint distance, as a fraction of the ROI size, below which overlapping results are one hand.
DUPLICATE_KP_FRACTION = 0.12
#: A palm is the tracked hand's own when its wrist and middle MCP lie within this fraction of the ROI size.
SAME_PALM_FRACTION = 0.2
#: Handedness probability of a frame counted as confident.
CONFIDENT_SIDE = 0.75
#: Side evidence (sum of 2p - 1) after which a track's side counts as settled.
SETTLED_EVIDENCE = 3.0
#: Next-ROI IoU above which two results claiming the same side conflict.
SLID_IOU = 0.2
#: The rigid part of a hand: wrist and the finger MCPs.
PALM = [K.WRIST, K.INDEX_MCP, K.MIDDLE_MCP, K.RING_MCP, K.PINKY_MCP]
#: Frames a missing hand keeps proposing its last good ROI.
COAST_FRAMES = 0
#: Most consecutive frames a track entangled with another hand is kept on its anchor (about half a second).
CONTESTED_FRAMES = 15
#: Frames after its loss during which a tiled re-detection looks only around a lost track's last place.
LOST_SEARCH_FRAMES = 90


@dataclass
class Track:
    """One physical hand as followed so far (internal bookkeeping, image pixels)."""

    id: int
    roi: np.ndarray  # next-frame ROI [cx, cy, size, rotation]
    kp2d: np.ndarray  # last landmarks (21, 2)
    last_frame: int
    side_evidence: float = 0.0  # sum over frames of (2 * P(right) - 1)
    misses: int = 0  # consecutive frames without a result
    contested: int = 0  # consecutive frames kept on the anchor (roi, kp2d) while entangled with another hand

    @property
    def active(self) -> bool:
        """Found in the latest frame."""
        return self.misses == 0

    @property
    def side(self) -> str | None:
        if self.side_evidence > 0:
            return "right"
        if self.side_evidence < 0:
            return "left"
        return None


@dataclass
class Candidate:
    """An ROI to run the landmark model on: a tracked hand's (``track_id``) or a new palm's (None)."""

    roi: np.ndarray
    track_id: int | None
    palm_score: float = 0.0
    from_tiles: bool = False  # its palm was found only by a tile or the coarse view


@dataclass
class Accepted:
    """One landmark result kept for a frame (index ``row`` into the pass's LandmarkBatch)."""

    row: int
    track_id: int
    p_right: float


@dataclass
class TrackerState:
    """Tracking state of one stream. ``ids`` is shared between streams whose ids must not collide."""

    max_hands: int
    tracking: bool = True
    ids: itertools.count = field(default_factory=itertools.count)
    tracks: dict[int, Track] = field(default_factory=dict)
    since_tiled: int | None = None  # frames since the last tiled palm search (None: none yet)

    def search_boxes(self, within: int = LOST_SEARCH_FRAMES) -> np.ndarray | None:
        """(K, 4) ``[xmin, ymin, xmax, ymax]`` px around the last place of each track lost in the last ``within``
        frames (its ROI grown to twice its size): where a tiled re-detection looks. None when no track is
        lost: then the whole frame is searched."""
        lost = [t for t in self.tracks.values() if 0 < t.misses <= within]
        if not lost:
            return None
        return np.array([[t.roi[0] - t.roi[2], t.roi[1] - t.roi[2], t.roi[0] + t.roi[2], t.roi[1] + t.roi[2]]
                         for t in lost])  # fmt: skip

    def tiled_search_due(self, every: int) -> bool:
        """A tiled re-detection is due (and counted as made): the first one, then one every ``every`` frames
        of detection (the frames between use the full view only)."""
        if self.since_tiled is not None and self.since_tiled < every:
            self.since_tiled += 1
            return False
        self.since_tiled = 1
        return True

    def followed(self) -> list[Track]:
        """Tracks whose ROI is looked at in the next frame (found lately)."""
        if not self.tracking:
            return []
        # An anchored track missed in a frame (its view there was implausible) is still looked for while its
        # anchor lasts: the hand is known to be there, hidden in part by the other one.
        return [t for t in self.tracks.values() if t.misses <= COAST_FRAMES or 0 < t.contested < CONTESTED_FRAMES]

    def needs_detection(self) -> bool:
        """MediaPipe runs the palm detector unless max_hands hands were found in the previous frame."""
        return not self.tracking or sum(t.active for t in self.tracks.values()) < self.max_hands

    def masked_search(self) -> np.ndarray:
        """(N, 21, 2) landmarks of the hands to paint out of this frame before looking for the palms of the
        anchored tracks entangled with them (``mask_hands``); empty when no track is anchored."""
        followed = self.followed()
        if not any(t.contested for t in followed):
            return np.zeros((0, 21, 2))
        return np.array([t.kp2d for t in followed if not t.contested]).reshape(-1, 21, 2)

    def candidates(self, palms: list[PalmDetection], masked_palms: list[PalmDetection] = ()) -> list[Candidate]:
        """ROIs for this frame: followed hands first (most recently found first), then palms that are not
        one of them. ``masked_palms`` (found with ``masked_search``'s hands painted out) re-place the ROI of
        an anchored track whose anchor wrist lies within SAME_PALM_FRACTION of its ROI size."""
        out = []
        for t in sorted(self.followed(), key=lambda t: t.misses):
            roi = t.roi
            near = [p for p in masked_palms if t.contested and self._near_anchor(p, t)]
            if near:
                p = min(near, key=lambda p: np.linalg.norm(p.keypoints[0] - t.kp2d[K.WRIST]))
                roi = palm_rois(p.box[None], p.keypoints[None])[0]
            out.append(Candidate(roi, t.id))
        if not palms:
            return out
        rois = palm_rois(np.stack([p.box for p in palms]), np.stack([p.keypoints for p in palms]))
        for palm, roi in zip(palms, rois, strict=True):
            if any(self._same_palm(palm, roi, self.tracks[c.track_id]) for c in out if c.track_id is not None):
                continue
            out.append(Candidate(roi, None, palm.score, palm.from_tiles))
        return out

    @staticmethod
    def _near_anchor(palm: PalmDetection, track: Track) -> bool:
        return bool(np.linalg.norm(palm.keypoints[0] - track.kp2d[K.WRIST]) < SAME_PALM_FRACTION * track.roi[2])

    @staticmethod
    def _same_palm(palm: PalmDetection, roi: np.ndarray, track: Track) -> bool:
        if roi_iou(roi, track.roi)[0, 0] <= DUPLICATE_IOU:
            return False
        tol = SAME_PALM_FRACTION * track.roi[2]
        return (
            np.linalg.norm(palm.keypoints[0] - track.kp2d[K.WRIST]) < tol
            and np.linalg.norm(palm.keypoints[2] - track.kp2d[K.MIDDLE_MCP]) < tol
        )

    def update(
        self,
        frame_index: int,
        candidates: list[Candidate],
        kp2d: np.ndarray,
        presence: np.ndarray,
        p_right: np.ndarray,
        min_presence: float,
    ) -> list[Accepted]:
        """Take the landmark results (rows aligned with ``candidates``) of one frame; return the kept ones
        with their track ids, and move the tracks on to the next frame."""
        next_rois = landmark_rois(kp2d) if len(candidates) else np.zeros((0, 4))

        def priority(i: int):
            c = candidates[i]
            if c.track_id is None:
                return (1, -c.palm_score, -presence[i])
            side = self.tracks[c.track_id].side
            agree = 0.5 if side is None else (p_right[i] if side == "right" else 1 - p_right[i])
            return (0, -agree, -presence[i])

        order = sorted((i for i in range(len(candidates)) if presence[i] >= min_presence), key=priority)
        kept: list[int] = []
        for i in order:
            if len(kept) >= self.max_hands:
                break
            if not any(self._duplicate(i, j, kp2d, next_rois) for j in kept):
                kept.append(i)

        verdict = {i: self._entanglement(i, kept, candidates, kp2d, p_right, next_rois) for i in kept}
        kept = [i for i in kept if verdict[i] != "drop"]
        anchored = {i for i in kept if verdict[i] == "anchor"}

        seen = {candidates[i].track_id for i in kept if candidates[i].track_id is not None}
        result = [
            Accepted(i, candidates[i].track_id, float(p_right[i])) for i in kept if candidates[i].track_id is not None
        ]
        for i in kept:
            if candidates[i].track_id is None:
                tid = self._identify(kp2d[i], float(p_right[i]), next_rois[i], seen)
                seen.add(tid)
                result.append(Accepted(i, tid, float(p_right[i])))

        for tr in self.tracks.values():
            tr.misses += 1
            tr.contested += tr.contested > 0  # frames spent on the anchor, found or not
        for acc in result:
            tr = self.tracks.get(acc.track_id)
            if tr is None:
                tr = self.tracks[acc.track_id] = Track(acc.track_id, next_rois[acc.row], kp2d[acc.row], frame_index)
            tr.last_frame, tr.misses = frame_index, 0
            if acc.row in anchored:  # keep the clean ROI and landmarks; this frame's handedness is confused
                tr.contested = max(tr.contested, 1)
                continue
            tr.roi, tr.kp2d, tr.contested = next_rois[acc.row], kp2d[acc.row], 0
            tr.side_evidence += 2 * acc.p_right - 1
        result.sort(key=lambda a: a.track_id)
        return result

    @staticmethod
    def _duplicate(i: int, j: int, kp2d: np.ndarray, rois: np.ndarray) -> bool:
        if roi_iou(rois[i], rois[j])[0, 0] <= DUPLICATE_IOU:
            return False
        dist = np.linalg.norm(kp2d[i] - kp2d[j], axis=-1).mean()
        return dist < DUPLICATE_KP_FRACTION * min(rois[i, 2], rois[j, 2])

    def _settled_side(self, track_id: int | None) -> str | None:
        if track_id is None:
            return None
        tr = self.tracks[track_id]
        return tr.side if abs(tr.side_evidence) >= SETTLED_EVIDENCE else None

    def _conflicting(
        self, i: int, kept: list[int], cands: list[Candidate], p_right: np.ndarray, rois: np.ndarray
    ) -> int | None:
        """Result i confidently shows side S, next to it (ROI IoU > SLID_IOU) is a result j that is S too and
        belongs to a track settled as S, while i's own track is not settled as S: i is a confused view of
        j's hand (a tracked ROI that slid onto the other hand, or a palm found on a hand hiding another).
        Returns that j, else None."""
        claim = _claim(p_right[i])
        if claim is None or self._settled_side(cands[i].track_id) == claim:
            return None
        for j in kept:
            if j != i and _claim(p_right[j]) == claim and self._settled_side(cands[j].track_id) == claim:
                if roi_iou(rois[i], rois[j])[0, 0] > SLID_IOU:
                    return j
        return None

    def _entanglement(
        self,
        i: int,
        kept: list[int],
        cands: list[Candidate],
        kp2d: np.ndarray,
        p_right: np.ndarray,
        rois: np.ndarray,
    ) -> str:
        """What to do with result i: "keep" it (an ordinary result), "drop" it (a confused view of another
        hand) or "anchor" it (a tracked hand entangled with another: kept, but its track stays on its last
        clean ROI and landmarks)."""
        tid = cands[i].track_id
        track = self.tracks.get(tid) if tid is not None else None
        partner = self._conflicting(i, kept, cands, p_right, rois)
        if partner is None:
            if track is None or not track.contested or _claim(p_right[i]) == track.side:
                return "keep"  # not entangled, or released: the frame shows the track's side again
            overlap = {j: roi_iou(rois[i], rois[j])[0, 0] for j in kept if j != i}
            partner = max(overlap, key=overlap.get, default=None)
            if partner is not None and overlap[partner] <= SLID_IOU:
                partner = None
            if partner is None or track.contested >= CONTESTED_FRAMES:
                return "keep"  # the hands have parted (or the anchor is stale): follow this frame's landmarks
            return "anchor" if self._stays_on_own_hand(track, kp2d[i], kp2d[partner]) else "drop"
        if track is None or self._settled_side(tid) is None or track.contested >= CONTESTED_FRAMES:
            return "drop"
        return "anchor" if self._stays_on_own_hand(track, kp2d[i], kp2d[partner]) else "drop"

    @staticmethod
    def _stays_on_own_hand(track: Track, kp: np.ndarray, other: np.ndarray) -> bool:
        """Result ``kp`` (21, 2) of ``track`` shows the track's own hand, not the hand of the overlapping
        result ``other``: its wrist lies within SAME_PALM_FRACTION of the track's ROI size of the track's last
        clean wrist and farther than that from the other wrist, and its palm (wrist and finger MCPs, the rigid
        part: intertwined fingers may rightly lie on the other hand) lies nearer the track's last clean palm
        than the other result's (a view sliding onto the other hand drifts toward it)."""
        tol = SAME_PALM_FRACTION * track.roi[2]
        own = np.linalg.norm(kp[PALM] - track.kp2d[PALM], axis=-1).mean()
        return bool(
            np.linalg.norm(kp[K.WRIST] - track.kp2d[K.WRIST]) < tol
            and np.linalg.norm(kp[K.WRIST] - other[K.WRIST]) > tol
            and own < np.linalg.norm(kp[PALM] - other[PALM], axis=-1).mean()
        )

    def _identify(self, kp2d: np.ndarray, p_right: float, roi: np.ndarray, taken: set[int]) -> int:
        """Id for a hand not tracked into this frame: the nearest lost track of the same side, else new."""
        side = _claim(p_right)
        lost = [t for t in self.tracks.values() if t.id not in taken]
        if side is not None:
            pool = [t for t in lost if t.side == side]
        else:  # unsure of the side: only a track lost nearby can be this hand
            pool = [t for t in lost if np.linalg.norm(t.kp2d[K.WRIST] - kp2d[K.WRIST]) < roi[2]]
        if pool:
            wrist = kp2d[K.WRIST]
            return min(pool, key=lambda t: np.linalg.norm(t.kp2d[K.WRIST] - wrist)).id
        return next(self.ids)


def _claim(p_right: float) -> str | None:
    """The side a frame's handedness states confidently, else None."""
    if p_right >= CONFIDENT_SIDE:
        return "right"
    if p_right <= 1 - CONFIDENT_SIDE:
        return "left"
    return None
