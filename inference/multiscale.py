"""Multi-scale, tiled palm detection: the palm detector looks at a frame through several square views.

MediaPipe's palm detector sees the whole frame letterboxed into 192 x 192 px, so a palm must span about 10 to
75 % of the frame's long side to be found (its anchors' scales). Here it also sees:

* overlapping square tiles at finer scales (a tile's side is a fraction of the long side; tiles smaller than
  ``min_tile_px`` are never made, upscaling further only blurs), for small hands in large photos;
* one coarse view, the frame letterboxed into a square twice its long side, for hands close to the camera
  that fill the frame;

all in one batch through the palm network. A view is ``(x0, y0, side)``: the image square with top-left
corner (x0, y0) and side ``side`` px, which may reach beyond the image (black border).

Merging: the full view's palms are kept exactly as the single-view detector gives them (so nothing that was
found before changes); palms of the other views are pooled, merged by weighted non-maximum suppression
across tiles and scales, and kept only where no full-view palm lies (box IoU <= ``nms_iou``). A tile palm
whose box touches an inner tile edge is cut by the tile and is dropped: the overlap makes another tile see
the whole palm.

Hands whose palm no view finds (behind a trumpet's valves, in a black glove) can still be read by the
landmark network from a good ROI; ``landmark_search_rois`` (opt-in, ``DetectionOptions.landmark_search``)
proposes such ROIs from a grid, kept only where the reading stays present and converges when re-cropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .palm import _ANCHORS, NMS_IOU, PALM_INPUT_SIZE, PalmDetection, box_iou, decode_boxes, palm_scores, weighted_nms
from .roi import landmark_rois, roi_iou, warp_image

#: A tile palm whose box lies within this fraction of the tile's side of an inner tile edge is cut by it.
EDGE_MARGIN = 0.02
#: Share of a tile-found hand's next ROI inside a surer hand's above which, claiming the same side, it is a
#: second, confused view of that hand (a finger or the back of the hand read as a hand of its own).
SAME_HAND_OVERLAP = 0.3


@dataclass(frozen=True)
class DetectionOptions:
    """How the palm detector looks at a frame.

    Attributes:
        still_tiles: tiled multi-scale search for still images (photos, frames detected without tracking).
        video_tiles: tiled search also when a tracked video re-detects (off by default: a tracked clip keeps
            its speed; ``redetect_every`` spaces those searches).
        tile_fractions: tile sides as fractions of the frame's long side, one level each (coarse to fine).
        overlap: fraction of a tile's side shared with its neighbour.
        min_tile_px: no level with tiles smaller than this (px); small images get fewer levels or none.
        coarse: add the zoomed-out view (frame in a square twice its long side) for hands that fill the frame.
        max_views: per-frame budget of palm-network inputs, the full view included; the finest levels are
            left out until the views fit.
        redetect_every: in a tracked video with ``video_tiles``, frames between tiled searches while fewer
            hands than wanted are tracked (the full-view detector still runs on every such frame).
        nms_iou: box IoU above which palms of different views are one palm.
        min_tile_confidence: a hand that only a tile or the coarse view found is kept when its presence times
            the agreement of its handedness (max(P(right), P(left))) reaches this (0.4; measured on the shared
            photos: real hands 0.48-0.99, second views of a found hand 0.38-0.55, see README); the full view's
            hands keep the landmarker's own threshold.
        min_tile_hand_px: a hand that only a tile or the coarse view found is dropped when its landmarks' box
            is smaller than this (long side, px): the landmark network cannot read such hands (upsampled 7x
            or more into its crop; coco_wholebody_2d's 10-24 px hands get PCK@0.1 0.36 where found), and on
            crops of the shared videos without hands every tile false positive was 15-24 px.
        landmark_search: still images with tiles: also look for hands the palm detector misses (behind an
            object, gloved) with the landmark network itself, over a grid of ROIs (``landmark_search_rois``);
            off by default: about 200 extra landmark crops per image (3-5 s on a 2-core CPU) and, on the
            no-hand crops, 2 of 73 with a false hand that passes the tile thresholds (README).
        search_fractions: ROI sides of that grid as fractions of the frame's long side; neighbours are half
            a side apart.
        search_rotations: ROI rotations of the grid, evenly spaced over the full turn.
        search_iterations: re-crops of a grid reading from its own landmarks (MediaPipe's tracking ROI).
        search_min_iou: a reading is kept when its last re-crop moved its ROI less than this (IoU of the
            last two ROIs; a real hand's converges) and it is still present (``min_presence``).
    """

    still_tiles: bool = True
    video_tiles: bool = False
    tile_fractions: tuple[float, ...] = (1 / 3, 1 / 6)
    overlap: float = 0.25
    min_tile_px: int = 96
    coarse: bool = True
    max_views: int = 64
    redetect_every: int = 5
    nms_iou: float = NMS_IOU
    min_tile_confidence: float = 0.4
    min_tile_hand_px: float = 32.0
    landmark_search: bool = False
    search_fractions: tuple[float, ...] = (0.6, 0.4, 0.25)
    search_rotations: int = 4
    search_iterations: int = 2
    search_min_iou: float = 0.6

    def validate(self) -> None:
        if not all(0.0 < f < 1.0 for f in self.tile_fractions):
            raise ValueError(f"tile_fractions must lie in (0, 1), got {self.tile_fractions!r}")
        if not 0.0 <= self.overlap < 0.9:
            raise ValueError(f"overlap must be in [0, 0.9), got {self.overlap!r}")
        if self.min_tile_px < 16:
            raise ValueError(f"min_tile_px must be at least 16, got {self.min_tile_px!r}")
        if self.max_views < 1:
            raise ValueError(f"max_views must be at least 1 (the full view), got {self.max_views!r}")
        if self.redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1, got {self.redetect_every!r}")
        if not 0.0 < self.nms_iou < 1.0:
            raise ValueError(f"nms_iou must be in (0, 1), got {self.nms_iou!r}")
        if self.min_tile_hand_px < 0:
            raise ValueError(f"min_tile_hand_px must be >= 0, got {self.min_tile_hand_px!r}")
        if not 0.0 <= self.min_tile_confidence <= 1.0:
            raise ValueError(f"min_tile_confidence must be in [0, 1], got {self.min_tile_confidence!r}")
        if not all(0.0 < f <= 1.0 for f in self.search_fractions):
            raise ValueError(f"search_fractions must lie in (0, 1], got {self.search_fractions!r}")
        if self.search_rotations < 1 or self.search_iterations < 1:
            raise ValueError("search_rotations and search_iterations must be at least 1")
        if not 0.0 <= self.search_min_iou < 1.0:
            raise ValueError(f"search_min_iou must be in [0, 1), got {self.search_min_iou!r}")


#: The single full view only: MediaPipe's detector.
FULL_VIEW_ONLY = DetectionOptions(still_tiles=False, video_tiles=False, coarse=False)


def detection_for_mode(mode: str) -> DetectionOptions:
    """The options of a request's palm search mode (``core.request.DETECT_MODES``): "tiled" (default), "tiled-video"
    (tiles around a lost hand in videos too), "search" (photos: also the landmark-network search for hands without
    a palm, gloved or behind an object; slower and opt-in) or "full" (MediaPipe's full view only)."""
    modes = {
        "tiled": DetectionOptions(),
        "tiled-video": DetectionOptions(video_tiles=True),
        "search": DetectionOptions(landmark_search=True),
        "full": FULL_VIEW_ONLY,
    }
    if mode not in modes:
        raise ValueError(f"palm search must be one of {', '.join(modes)}, got {mode!r}")
    return modes[mode]


def full_view(width: int, height: int) -> tuple[float, float, float]:
    """The letterbox view: the frame centred in a square of its long side."""
    side = float(max(width, height))
    return ((width - side) / 2, (height - side) / 2, side)


def tile_level(width: int, height: int, side: float, overlap: float) -> list[tuple[float, float, float]]:
    """Square tiles of ``side`` px covering the frame, neighbours sharing ``overlap`` of a side, spread evenly
    so the first and last tiles of a row or column touch the frame's edges (a frame narrower than ``side``
    in one direction gets one tile there, centred)."""

    def starts(extent: int) -> np.ndarray:
        if extent <= side:
            return np.array([(extent - side) / 2])
        n = math.ceil((extent - side) / (side * (1 - overlap))) + 1
        return np.linspace(0.0, extent - side, n)

    return [(float(x), float(y), float(side)) for y in starts(height) for x in starts(width)]


def plan_views(
    width: int, height: int, options: DetectionOptions, tiled: bool, focus: np.ndarray | None = None
) -> list[tuple[float, float, float]]:
    """Views of one frame, full view first: then the coarse view, then the tile levels coarse to fine, each
    level whole or not at all, within ``max_views``. ``focus`` (K, 4) ``[xmin, ymin, xmax, ymax]`` px, where
    a hand may be (a lost track's last place): only the tiles that overlap one of those boxes."""
    views = [full_view(width, height)]
    if not tiled:
        return views
    long_side = max(width, height)
    if options.coarse and len(views) < options.max_views:
        views.append(((width - 2 * long_side) / 2, (height - 2 * long_side) / 2, 2.0 * long_side))
    for frac in sorted(options.tile_fractions, reverse=True):
        side = frac * long_side
        if side < options.min_tile_px:
            continue
        level = tile_level(width, height, side, options.overlap)
        if focus is not None and len(focus):
            level = [v for v in level if _overlaps(v, focus)]
        if len(views) + len(level) > options.max_views:
            break
        views += level
    return views


def _overlaps(view: tuple[float, float, float], boxes: np.ndarray) -> bool:
    x0, y0, side = view
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return bool(((b[:, 0] < x0 + side) & (b[:, 2] > x0) & (b[:, 1] < y0 + side) & (b[:, 3] > y0)).any())


def view_matrix(view: tuple[float, float, float], size: int = PALM_INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine image pixels -> network pixels of one view."""
    x0, y0, side = view
    k = size / side
    return np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]])


def _inner_edge_cut(box: np.ndarray, view: tuple[float, float, float], width: int, height: int) -> bool:
    """The palm box touches an edge of the tile that lies inside the image (the palm may be cut there)."""
    x0, y0, side = view
    m = EDGE_MARGIN * side
    return bool(
        (box[0] < x0 + m and x0 > 0.5)
        or (box[1] < y0 + m and y0 > 0.5)
        or (box[2] > x0 + side - m and x0 + side < width - 0.5)
        or (box[3] > y0 + side - m and y0 + side < height - 0.5)
    )


def _decode_view(regressors, logits, view, min_score: float):
    """Palms of one view in image pixels (MediaPipe's per-view weighted NMS): scores, boxes, keypoints."""
    scores = palm_scores(logits)
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return np.zeros(0), np.zeros((0, 4)), np.zeros((0, 7, 2))
    boxes, kps = decode_boxes(regressors[keep], _ANCHORS[keep])
    s, boxes, kps = weighted_nms(scores[keep], boxes, kps)
    x0, y0, side = view
    return s, boxes * side + np.array([x0, y0, x0, y0]), kps * side + np.array([x0, y0])


@dataclass
class PalmSearch:
    """Palms of one frame from all its views.

    Attributes:
        palms: detections in image pixels, best first: the full view's, then those only other views found.
        views: palm-network inputs spent on the frame (the cost: 1 = the full view alone).
        from_tiles: how many of ``palms`` came from the coarse view or tiles.
    """

    palms: list[PalmDetection]
    views: int
    from_tiles: int


def merge_views(
    decoded: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    views: list[tuple[float, float, float]],
    width: int,
    height: int,
    nms_iou: float = NMS_IOU,
    max_palms: int | None = None,
) -> PalmSearch:
    """Join per-view palms (``decoded[i]`` for ``views[i]``, view 0 the full view): the full view's as they
    are, then the other views' merged across views and kept where no full-view palm is."""
    s0, b0, k0 = decoded[0]
    pool_s, pool_b, pool_k = [], [], []
    for (s, b, k), view in zip(decoded[1:], views[1:], strict=True):
        for i in range(len(s)):
            if not _inner_edge_cut(b[i], view, width, height):
                pool_s.append(s[i])
                pool_b.append(b[i])
                pool_k.append(k[i])
    extra: list[PalmDetection] = []
    if pool_s:
        s, b, k = weighted_nms(np.asarray(pool_s), np.stack(pool_b), np.stack(pool_k), nms_iou)
        for i in range(len(s)):
            if len(b0) and box_iou(b[i], b0).max() > nms_iou:
                continue  # the full view has this palm already
            extra.append(PalmDetection(float(s[i]), b[i], k[i], from_tiles=True))
    palms = [PalmDetection(float(s0[i]), b0[i], k0[i]) for i in range(len(s0))]
    # Full-view palms first (as before), then the new ones: max_palms clips the new ones first.
    n_full = len(palms) if max_palms is None else min(len(palms), max_palms)
    palms = (palms + sorted(extra, key=lambda p: -p.score))[:max_palms]
    return PalmSearch(palms, len(views), len(palms) - n_full)


def search_palms(
    nets,
    images: list[np.ndarray],
    options: DetectionOptions,
    tiled: list[bool],
    min_score: float,
    max_palms: int | None = None,
    focus: list[np.ndarray | None] | None = None,
) -> list[PalmSearch]:
    """Palms in each (H, W, 3) uint8 RGB image through all its views (``tiled[i]``: tiles and the coarse
    view for image i, else the full view alone), every view of every image in one batch of ``nets``
    (a ``HandNets``). ``focus[i]``: boxes that limit image i's tiles (``plan_views``), None for all tiles."""
    focus = focus if focus is not None else [None] * len(images)
    plans = [plan_views(im.shape[1], im.shape[0], options, t, f) for im, t, f in zip(images, tiled, focus, strict=True)]
    inputs = [
        warp_image(im, view_matrix(v), PALM_INPUT_SIZE, border=cv2.BORDER_CONSTANT)
        for im, plan in zip(images, plans, strict=True)
        for v in plan
    ]
    if not inputs:
        return []
    regressors, logits = nets.palm_outputs(np.stack(inputs))
    out, row = [], 0
    for im, plan in zip(images, plans, strict=True):
        decoded = [_decode_view(regressors[row + i], logits[row + i], v, min_score) for i, v in enumerate(plan)]
        row += len(plan)
        out.append(merge_views(decoded, plan, im.shape[1], im.shape[0], options.nms_iou, max_palms))
    return out


def doubtful_tile_hands(
    from_tiles: np.ndarray,
    kp2d: np.ndarray,
    presence: np.ndarray,
    p_right: np.ndarray,
    min_confidence: float,
    min_size_px: float = 0.0,
) -> np.ndarray:
    """(N,) bool: which of N hands of one still image to drop. Only hands whose palm a tile or the coarse
    view found (``from_tiles``) are judged: dropped when presence x max(P(right), P(left)) is below
    ``min_confidence``, when their landmarks' box is smaller than ``min_size_px`` (long side), or when more
    than SAME_HAND_OVERLAP of the smaller of their next ROI and that of a hand of higher presence claiming
    the same side is shared. kp2d (N, 21, 2) px; presence, p_right (N,) in [0, 1]."""
    from_tiles = np.asarray(from_tiles, bool)
    drop = np.zeros(len(from_tiles), bool)
    if not from_tiles.any():
        return drop
    p_right = np.asarray(p_right, np.float64)
    conf = np.asarray(presence) * np.maximum(p_right, 1.0 - p_right)
    size = np.ptp(np.asarray(kp2d, np.float64), axis=1).max(-1)
    rois = landmark_rois(kp2d)
    right = p_right >= 0.5
    iou = roi_iou(rois, rois)
    area = rois[:, 2] ** 2
    inter = iou * (area[:, None] + area[None]) / (1.0 + iou)  # IoU = inter / (a + b - inter)
    shared = inter / np.minimum(area[:, None], area[None])
    for i in np.flatnonzero(from_tiles):
        surer = (np.asarray(presence) > presence[i]) & (right == right[i]) & (shared[i] > SAME_HAND_OVERLAP)
        surer[i] = False
        drop[i] = conf[i] < min_confidence or size[i] < min_size_px or bool(surer.any())
    return drop


def search_grid(width: int, height: int, fractions: tuple[float, ...], rotations: int) -> np.ndarray:
    """(K, 4) ROIs ``[cx, cy, size, rotation]`` covering the frame: for each fraction of the long side, square
    ROIs of that side half a side apart (first and last touching the frame's edges), each at ``rotations``
    rotations evenly spaced over the full turn."""
    long_side = max(width, height)
    out = []
    for frac in fractions:
        side = frac * long_side
        centres = [
            np.linspace(side / 2, max(side / 2, extent - side / 2), max(1, math.ceil((extent - side) / (side / 2)) + 1))
            for extent in (width, height)
        ]
        for cy in centres[1]:
            for cx in centres[0]:
                out += [(cx, cy, side, 2 * math.pi * r / rotations) for r in range(rotations)]
    return np.array(out, np.float64).reshape(-1, 4)


def landmark_search_rois(nets, image: np.ndarray, options: DetectionOptions, min_presence: float) -> np.ndarray:
    """(K, 4) ROIs of hands the landmark network reads in ``image`` without a palm: every ``search_grid`` ROI
    read as present is re-cropped from its own landmarks ``search_iterations`` times; kept when still present
    and its ROI converged (IoU of the last two >= ``search_min_iou``), best last presence first, one per
    group of ROIs overlapping by more than ``nms_iou``."""
    h, w = image.shape[:2]
    grid = search_grid(w, h, options.search_fractions, options.search_rotations)
    lb = nets.landmarks([image], [grid])
    keep = np.flatnonzero(lb.presence >= min_presence)
    if keep.size == 0:
        return np.zeros((0, 4))
    rois, presence, iou = landmark_rois(lb.kp2d[keep]), lb.presence[keep], np.ones(keep.size)
    for _ in range(options.search_iterations):
        lb = nets.landmarks([image], [rois])
        nxt = landmark_rois(lb.kp2d)
        iou = np.array([roi_iou(a, b)[0, 0] for a, b in zip(rois, nxt, strict=True)])
        rois, presence = nxt, lb.presence
    ok = np.flatnonzero((presence >= min_presence) & (iou >= options.search_min_iou))
    kept: list[int] = []
    for i in ok[np.argsort(-presence[ok])]:
        if not kept or roi_iou(rois[i], rois[kept])[0].max() <= options.nms_iou:
            kept.append(int(i))
    return rois[kept].reshape(-1, 4)
