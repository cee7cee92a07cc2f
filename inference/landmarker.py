"""HandLandmarker: MediaPipe's hand pipeline (palm detection -> rotated ROI -> 21 landmarks -> tracking)
on the PyTorch ports of its networks, for photos, image sequences and videos.

Coordinates: image pixels with x right, y down, origin at the top-left corner of the top-left pixel.
World landmarks: metres, camera-aligned axes (x right, y down, z away from the camera), origin near the
hand's centre (not the camera: MediaPipe gives no metric depth). Handedness is reported as the TRUE side
of the person's hand for ordinary camera footage; set ``mirrored_input=True`` for selfie footage that was
flipped horizontally (MediaPipe's own convention).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .augment import augment_low_confidence
from .batching import HandNets, LandmarkBatch, prefetch
from .multiscale import DetectionOptions, doubtful_tile_hands, landmark_search_rois, search_palms
from .roi import landmark_rois, mask_hands
from .sources import FrameSource, open_source, to_rgb8
from .tracking import DUPLICATE_KP_FRACTION, Candidate, TrackerState

Progress = Callable[[int, int], None]
#: Frames each chunk of a video re-runs from its predecessor's end to warm its tracker up for stitching.
LANE_WARMUP = 8
REFINE_MODES = ("average", "second", "off")


@dataclass
class LandmarkerOptions:
    """Options of :class:`HandLandmarker`.

    Attributes:
        max_hands: most hands reported per frame (MediaPipe's num_hands).
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
        min_detection_score: palm detector score threshold (MediaPipe's min_detection_confidence).
        min_presence: hand-presence threshold of the landmark model (min_tracking_confidence).
        tracking: for videos and sequences, follow hands from their previous landmarks and run the palm
            detector only when fewer than ``max_hands`` are tracked; False detects on every frame.
        batch_size: most images / crops per network call.
        half: float16 networks (CUDA only; ignored on CPU).
        mirrored_input: the footage is a mirrored selfie view (swaps the reported sides).
        refine: for a hand found by the palm detector (not tracked), run the landmark model a second time
            on the ROI derived from its first landmarks: "average" averages the two results (a two-view
            estimate; best overall on the annotated sets), "second" keeps the second, "off" keeps the first
            as MediaPipe does (matches MediaPipe's numbers).
        lanes: chunks of a video tracked in parallel and batched together (stitched afterwards);
            None picks 1 on CPU and 8 on CUDA.
        prefetch: frames decoded ahead in a background thread.
        detection: how the palm detector looks at a frame (tiles and scales, ``multiscale.DetectionOptions``).
        augment_below: still images: a hand read with presence below this is read again from mirrored and
            turned views of its crop, fused by confidence (``augment.augment_low_confidence``); 0 = off.
    """

    max_hands: int = 2
    device: str = "auto"
    min_detection_score: float = 0.5
    min_presence: float = 0.5
    tracking: bool = True
    batch_size: int = 16
    half: bool = False
    mirrored_input: bool = False
    refine: str = "average"
    lanes: int | None = None
    prefetch: int = 8
    detection: DetectionOptions = field(default_factory=DetectionOptions)
    augment_below: float = 0.0

    def validate(self) -> None:
        if not isinstance(self.max_hands, int) or self.max_hands < 1:
            raise ValueError(f"max_hands must be a positive integer, got {self.max_hands!r}")
        for name in ("min_detection_score", "min_presence", "augment_below"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}, got {self.refine!r}")
        if self.lanes is not None and self.lanes < 1:
            raise ValueError(f"lanes must be >= 1 or None, got {self.lanes!r}")
        self.detection.validate()


@dataclass
class HandObservation:
    """One hand in one frame.

    Attributes:
        track_id: identity of the physical hand across the frames of one source (0, 1, ...).
        kp2d: (21, 2) float landmarks in image pixels, HandKeypoint order (x right, y down).
        kp_z: (21,) float relative depth in pixels at the scale of x (MediaPipe's z times the image
            width): about 0 at the wrist, smaller = nearer the camera.
        world: (21, 3) float metric landmarks in metres, camera-aligned axes (x right, y down, z away from
            the camera), origin near the hand's centre.
        presence: hand-presence probability in [0, 1].
        side: "left" or "right", the person's true hand (see ``mirrored_input``); for a tracked source,
            decided once per track from all its frames.
        side_score: this frame's probability that the hand is ``side`` (below 0.5 where the frame alone
            would have said the other side).
        roi: (4,) float ``[cx, cy, size, rotation]`` the square crop the landmarks came from (pixels,
            radians; rotation turns the crop clockwise on screen so the hand points up in it).
    """

    track_id: int
    kp2d: np.ndarray
    kp_z: np.ndarray
    world: np.ndarray
    presence: float
    side: str
    side_score: float
    roi: np.ndarray
    p_right: float = field(default=0.5, repr=False)  # this frame's P(right hand)


@dataclass
class FrameResult:
    """The hands found in one frame.

    Attributes:
        frame_index: 0-based index of the frame in its source.
        image_size: (width, height) of the frame in pixels.
        hands: observations ordered by track_id.
        palm_views: palm-network inputs spent on this frame (0: tracked only; 1: the full view; more: tiles).
    """

    frame_index: int
    image_size: tuple[int, int]
    hands: list[HandObservation] = field(default_factory=list)
    palm_views: int = 0


def _side_from(p_right: float) -> tuple[str, float]:
    return ("right", p_right) if p_right >= 0.5 else ("left", 1.0 - p_right)


class HandLandmarker:
    """Finds hands and their 21 landmarks in images and videos.

    >>> lm = HandLandmarker(LandmarkerOptions(max_hands=2))
    >>> result = lm.process_image(rgb)                     # one photo, (H, W, 3) uint8 RGB
    >>> results = lm.process_source("clip.mp4")            # list[FrameResult], tracked
    """

    def __init__(self, options: LandmarkerOptions | None = None, nets: HandNets | None = None):
        self.options = options or LandmarkerOptions()
        self.options.validate()
        o = self.options
        self.nets = nets or HandNets(o.device, o.half, o.batch_size)

    # ----------------------------------------------------------------------------------------- one step
    def _refine(self, frames: list[np.ndarray], lb: LandmarkBatch, rows: np.ndarray) -> None:
        """Second landmark pass for ``rows`` on ROIs from their own landmarks, used where the hand is
        still present: averaged with the first pass or replacing it (``options.refine``)."""
        if rows.size == 0:
            return
        images = [frames[i] for i in lb.image[rows]]
        rb = self.nets.landmarks(images, [r[None] for r in landmark_rois(lb.kp2d[rows])])
        ok = rb.presence >= self.options.min_presence
        dst = rows[ok]
        if self.options.refine == "second":
            for name in ("rois", "kp2d", "kp_z", "world", "presence", "left_score"):
                getattr(lb, name)[dst] = getattr(rb, name)[ok]
            return
        # Two views of the same hand; the ROI reported stays the first (palm) crop's.
        for name in ("kp2d", "kp_z", "world", "presence", "left_score"):
            getattr(lb, name)[dst] = (getattr(lb, name)[dst] + getattr(rb, name)[ok]) / 2

    def _step(self, states: list[TrackerState], frames: list[np.ndarray], indices: list[int]) -> list[FrameResult]:
        """One frame for each state (batched across states): detect where needed, landmark, update."""
        o = self.options
        det = [i for i, st in enumerate(states) if st.needs_detection()]
        tiled = [self._tiled(states[i]) for i in det]
        focus = [states[i].search_boxes() if states[i].tracking else None for i in det]
        search = search_palms(
            self.nets, [frames[i] for i in det], o.detection, tiled, o.min_detection_score, o.max_hands, focus
        )
        palms = {i: s.palms for i, s in zip(det, search, strict=True)}
        views = {i: s.views for i, s in zip(det, search, strict=True)}
        # Tracks anchored next to another hand: look for their palms with the other hands painted out.
        hide = {i: kp for i, st in enumerate(states) if len(kp := st.masked_search())}
        found = self.nets.detect_palms([mask_hands(frames[i], kp) for i, kp in hide.items()], o.min_detection_score)
        masked = dict(zip(hide, found, strict=True))
        cands = [st.candidates(palms.get(i, []), masked.get(i, [])) for i, st in enumerate(states)]
        if o.detection.landmark_search:  # still images: hands the palm detector missed, palm candidates first
            for i, t in zip(det, tiled, strict=True):
                if t and not states[i].tracking:
                    rois = landmark_search_rois(self.nets, frames[i], o.detection, o.min_presence)
                    cands[i] += [Candidate(r, None, 0.0, True) for r in rois]
        lb = self.nets.landmarks(frames, [np.array([c.roi for c in cs]).reshape(-1, 4) for cs in cands])
        flat = [c for cs in cands for c in cs]
        if o.refine != "off":
            new = np.array([c.track_id is None for c in flat], bool)
            self._refine(frames, lb, np.flatnonzero(new & (lb.presence >= o.min_presence)))
        if o.augment_below > 0:
            still = np.array([not states[i].tracking for i in lb.image], bool)
            low = still & (lb.presence >= o.min_presence) & (lb.presence < o.augment_below)
            augment_low_confidence(self.nets, frames, lb, np.flatnonzero(low), o.min_presence)
        p_right = 1.0 - lb.left_score if o.mirrored_input else lb.left_score
        out = []
        for i, st in enumerate(states):
            rows = np.flatnonzero(lb.image == i)
            acc = st.update(indices[i], cands[i], lb.kp2d[rows], lb.presence[rows], p_right[rows], o.min_presence)
            if not st.tracking and acc:  # still image: judge the hands only tiles found against the others
                r = rows[[a.row for a in acc]]
                tiles = [cands[i][a.row].from_tiles for a in acc]
                d = o.detection
                drop = doubtful_tile_hands(
                    tiles, lb.kp2d[r], lb.presence[r], p_right[r], d.min_tile_confidence, d.min_tile_hand_px
                )
                acc = [a for a, d in zip(acc, drop, strict=True) if not d]
            hands = []
            for a in acc:
                r = rows[a.row]
                side, score = _side_from(a.p_right)
                hands.append(
                    HandObservation(
                        a.track_id,
                        lb.kp2d[r],
                        lb.kp_z[r],
                        lb.world[r],
                        float(lb.presence[r]),
                        side,
                        score,
                        lb.rois[r],
                        a.p_right,
                    )
                )
            h, w = frames[i].shape[:2]
            out.append(FrameResult(int(indices[i]), (w, h), hands, views.get(i, 0)))
        return out

    def _tiled(self, state: TrackerState) -> bool:
        """Whether this detection looks through tiles: always for still images (``still_tiles``); in a
        tracked video (``video_tiles``) once every ``redetect_every`` frames while hands are missing, only
        around the last place of a lost track where there is one (``TrackerState.search_boxes``)."""
        d = self.options.detection
        if not state.tracking:
            return d.still_tiles
        return d.video_tiles and state.tiled_search_due(d.redetect_every)

    # --------------------------------------------------------------------------------------- still images
    def process_image(self, image) -> FrameResult:
        """Hands in one image: an (H, W[, C]) array (RGB, any dtype to_rgb8 accepts) or an image path."""
        if isinstance(image, np.ndarray):
            rgb = to_rgb8(image, "image")
        else:
            _, rgb = next(iter(open_source(image)))
        return self.process_images([rgb])[0]

    def process_images(self, images: list[np.ndarray]) -> list[FrameResult]:
        """Independent still images (no tracking), batched; track ids number the hands of each image."""
        rgbs = [to_rgb8(im, f"image {i}") for i, im in enumerate(images)]
        out: list[FrameResult] = []
        for start in range(0, len(rgbs), self.options.batch_size):
            chunk = rgbs[start : start + self.options.batch_size]
            states = [TrackerState(self.options.max_hands, tracking=False) for _ in chunk]
            out += self._step(states, chunk, list(range(start, start + len(chunk))))
        for i, r in enumerate(out):
            r.frame_index = i
        return out

    # --------------------------------------------------------------------------------------------- streams
    def iter_source(
        self, source, progress: Progress | None = None, state: TrackerState | None = None
    ) -> Iterator[FrameResult]:
        """Frame results of a source in order, as they are computed (one tracker; sides provisional:
        each frame's own handedness). ``source`` is anything ``open_source`` accepts. ``state``: the tracker
        to continue (a farm chunk goes on from its predecessor's; updated in place), default a fresh one."""
        src = open_source(source)
        o = self.options
        state = state if state is not None else TrackerState(o.max_hands, tracking=o.tracking)
        total = len(src)
        step = 1 if o.tracking else o.batch_size  # without tracking, frames are independent: batch them
        frames_iter = prefetch(iter(src), o.prefetch)
        done = 0
        try:
            while True:
                batch = list(itertools.islice(frames_iter, step))
                if not batch:
                    return
                if o.tracking:
                    results = self._step([state], [batch[0][1]], [batch[0][0]])
                else:
                    results = self._step_static_batch(state, batch)
                done += len(batch)
                if progress is not None:
                    progress(done, total)
                yield from results
        finally:
            frames_iter.close()

    def _step_static_batch(self, state: TrackerState, batch: list[tuple[int, np.ndarray]]) -> list[FrameResult]:
        """Detect on every frame of the batch at once; identities follow one state frame by frame."""
        # Run each frame with its own throw-away state for the networks, then re-identify in order.
        scratch = [TrackerState(self.options.max_hands, tracking=False) for _ in batch]
        results = self._step(scratch, [f for _, f in batch], [i for i, _ in batch])
        for res in results:
            if not res.hands:
                state.update(res.frame_index, [], np.zeros((0, 21, 2)), np.zeros(0), np.zeros(0), 0.0)
                continue
            kp = np.stack([h.kp2d for h in res.hands])
            cands = [Candidate(h.roi, None, h.presence) for h in res.hands]
            acc = state.update(
                res.frame_index,
                cands,
                kp,
                np.array([h.presence for h in res.hands]),
                np.array([h.p_right for h in res.hands]),
                0.0,
            )
            res.hands = [copy.copy(res.hands[a.row]) for a in acc]
            for h, a in zip(res.hands, acc, strict=True):
                h.track_id = a.track_id
        return results

    def process_source(self, source, progress: Progress | None = None) -> list[FrameResult]:
        """All frame results of a video, image sequence or photo, tracked; each track's side is decided
        from all its frames. Long videos on CUDA are split into ``lanes`` chunks tracked in parallel."""
        src = open_source(source)
        o = self.options
        lanes = o.lanes if o.lanes is not None else (8 if self.nets.device.type == "cuda" else 1)
        lanes = min(lanes, max(1, len(src) // (4 * LANE_WARMUP)))
        if not o.tracking or lanes <= 1 or src.kind == "image":
            results = list(self.iter_source(src, progress))
        else:
            results = self._process_lanes(src, lanes, progress)
        return finalize_sides(results)

    def _process_lanes(self, src: FrameSource, lanes: int, progress: Progress | None) -> list[FrameResult]:
        """Split the frames into ``lanes`` chunks, track them in lock-step (one batch per step across
        chunks), then stitch track ids at each chunk's warm-up frames."""
        o = self.options
        idx = src.indices
        bounds = np.linspace(0, len(idx), lanes + 1).round().astype(int)
        starts = [max(0, b - LANE_WARMUP) if k else 0 for k, b in enumerate(bounds[:-1])]
        iters = [
            prefetch(iter(_subset(src, idx[s:e])), max(2, o.prefetch // lanes))
            for s, e in zip(starts, bounds[1:], strict=True)
        ]
        states = [TrackerState(o.max_hands, tracking=True) for _ in range(lanes)]
        per_lane: list[list[FrameResult]] = [[] for _ in range(lanes)]
        live = list(range(lanes))
        done, total = 0, sum(e - s for s, e in zip(starts, bounds[1:], strict=True))
        try:
            while live:
                got = []
                for k in live:
                    item = next(iters[k], None)
                    if item is not None:
                        got.append((k, item))
                live = [k for k, _ in got]
                if not got:
                    break
                res = self._step([states[k] for k, _ in got], [f for _, (_, f) in got], [i for _, (i, _) in got])
                for (k, _), r in zip(got, res, strict=True):
                    per_lane[k].append(r)
                done += len(got)
                if progress is not None:
                    progress(done, total)
        finally:
            for it in iters:
                it.close()
        return _stitch(per_lane, [e - s for s, e in zip(starts, bounds[:-1], strict=True)])


def _subset(src: FrameSource, indices: range) -> FrameSource:
    sub = copy.copy(src)
    sub.indices = indices
    return sub


def _stitch(per_lane: list[list[FrameResult]], warmups: list[int]) -> list[FrameResult]:
    """Join chunk results: each chunk's first ``warmup`` frames overlap its predecessor's last frames and
    map its local track ids onto the predecessor's (same hand = nearly identical keypoints)."""
    out: list[FrameResult] = list(per_lane[0])
    next_id = 1 + max((h.track_id for r in out for h in r.hands), default=-1)
    for lane, warm in zip(per_lane[1:], warmups[1:], strict=True):
        prev = {r.frame_index: r for r in out[len(out) - warm :]} if warm else {}
        votes: dict[tuple[int, int], int] = {}
        for r in lane[:warm]:
            old = prev.get(r.frame_index)
            for h in r.hands:
                for g in old.hands if old else []:
                    d = np.linalg.norm(h.kp2d - g.kp2d, axis=-1).mean()
                    if d < DUPLICATE_KP_FRACTION * min(h.roi[2], g.roi[2]):
                        votes[(h.track_id, g.track_id)] = votes.get((h.track_id, g.track_id), 0) + 1
        mapping: dict[int, int] = {}
        for (local, glob), _ in sorted(votes.items(), key=lambda kv: -kv[1]):
            if local not in mapping and glob not in mapping.values():
                mapping[local] = glob
        for r in lane[warm:]:
            for h in r.hands:
                if h.track_id not in mapping:
                    mapping[h.track_id] = next_id
                    next_id += 1
                h.track_id = mapping[h.track_id]
            r.hands.sort(key=lambda h: h.track_id)
            out.append(r)
    return out


def finalize_sides(results: list[FrameResult]) -> list[FrameResult]:
    """Decide each track's side from all its frames (sum of 2 P(right) - 1); set side/side_score."""
    evidence: dict[int, float] = {}
    for r in results:
        for h in r.hands:
            evidence[h.track_id] = evidence.get(h.track_id, 0.0) + 2 * h.p_right - 1
    for r in results:
        for h in r.hands:
            h.side = "right" if evidence[h.track_id] >= 0 else "left"
            h.side_score = h.p_right if h.side == "right" else 1.0 - h.p_right
    return results
