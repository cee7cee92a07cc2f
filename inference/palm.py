"""Palm detection around the network: letterboxed input, SSD decoding and weighted non-maximum suppression.

Follows MediaPipe's palm_detection_cpu.pbtxt: the whole image, aspect ratio kept, is letterboxed with black
borders into 192 x 192; 2016 anchors are decoded with scale 192; scores are sigmoid(clip(logit, +-100)) and
kept from 0.5; overlapping boxes (IoU > 0.3) are merged by score-weighted averaging.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .anchors import ssd_anchors
from .roi import warp_image

PALM_INPUT_SIZE = 192
NUM_PALM_KEYPOINTS = 7
SCORE_CLIP = 100.0
NMS_IOU = 0.3


@dataclass
class PalmDetection:
    """One detected palm, in image pixels (x right, y down).

    Attributes:
        score: detection probability in [0, 1].
        box: (4,) float ``[xmin, ymin, xmax, ymax]`` of the palm.
        keypoints: (7, 2) float palm keypoints; 0 is the wrist centre, 2 the middle-finger MCP.
        from_tiles: found only by the coarse view or a tile, not in the full view (``multiscale``).
    """

    score: float
    box: np.ndarray
    keypoints: np.ndarray
    from_tiles: bool = False


def letterbox_matrix(width: int, height: int, size: int = PALM_INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine image pixels -> letterboxed network pixels: the image centred in a square of its
    long side, scaled to ``size``."""
    side = max(width, height)
    k = size / side
    return np.array([[k, 0.0, -k * (width - side) / 2], [0.0, k, -k * (height - side) / 2]])


def palm_input(image: np.ndarray, size: int = PALM_INPUT_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 letterboxed palm-detector input for an (H, W, 3) uint8 RGB image."""
    h, w = image.shape[:2]
    return warp_image(image, letterbox_matrix(w, h, size), size, border=cv2.BORDER_CONSTANT)


_ANCHORS = ssd_anchors()


def decode_boxes(regressors: np.ndarray, anchors: np.ndarray = _ANCHORS, scale: float = PALM_INPUT_SIZE):
    """Raw regressors (..., N, 18) -> boxes (..., N, 4) ``[xmin, ymin, xmax, ymax]`` and keypoints
    (..., N, 7, 2), both normalised to the network input (0..1). Regressor layout: [dx, dy, w, h] then
    7 x (dx, dy), offsets in input pixels from the anchor centre (MediaPipe's reverse_output_order)."""
    r = np.asarray(regressors, np.float64)
    ax, ay, aw, ah = (anchors[:, i] for i in range(4))
    cx = r[..., 0] / scale * aw + ax
    cy = r[..., 1] / scale * ah + ay
    w = r[..., 2] / scale * aw
    h = r[..., 3] / scale * ah
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    kp = r[..., 4 : 4 + 2 * NUM_PALM_KEYPOINTS].reshape(*r.shape[:-1], NUM_PALM_KEYPOINTS, 2)
    kx = kp[..., 0] / scale * aw[:, None] + ax[:, None]
    ky = kp[..., 1] / scale * ah[:, None] + ay[:, None]
    return boxes, np.stack([kx, ky], axis=-1)


def palm_scores(logits: np.ndarray) -> np.ndarray:
    """sigmoid(clip(logits, -100, 100)), as MediaPipe's TensorsToDetectionsCalculator."""
    z = np.clip(np.asarray(logits, np.float64), -SCORE_CLIP, SCORE_CLIP)
    return 1.0 / (1.0 + np.exp(-z))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[xmin, ymin, xmax, ymax]`` box with each of (N, 4) boxes (0 where the union is empty)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, iou_threshold: float = NMS_IOU):
    """MediaPipe's WEIGHTED non-maximum suppression.

    Highest score first: every remaining detection overlapping it by IoU > ``iou_threshold`` (itself
    included) is removed and its box and keypoints are averaged, weighted by score, into the output; the
    output keeps the top score. Returns (scores (K,), boxes (K, 4), keypoints (K, 7, 2)), best first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    out_s, out_b, out_k = [], [], []
    while order.size:
        top = order[0]
        overlap = box_iou(boxes[top], boxes[order]) > iou_threshold
        group = order[overlap]
        if group.size == 0:  # degenerate (empty) box: keep it alone
            group = order[:1]
            overlap = np.zeros(order.size, bool)
            overlap[0] = True
        w = scores[group]
        out_s.append(scores[top])
        out_b.append((boxes[group] * w[:, None]).sum(0) / w.sum())
        out_k.append((keypoints[group] * w[:, None, None]).sum(0) / w.sum())
        order = order[~overlap]
    if not out_s:
        return np.zeros(0), np.zeros((0, 4)), np.zeros((0, NUM_PALM_KEYPOINTS, 2))
    return np.asarray(out_s), np.stack(out_b), np.stack(out_k)


def postprocess_palms(
    regressors: np.ndarray,
    logits: np.ndarray,
    image_sizes: list[tuple[int, int]],
    min_score: float = 0.5,
    max_palms: int | None = None,
) -> list[list[PalmDetection]]:
    """Network outputs for a batch (B, 2016, 18) / (B, 2016) -> per image, palms in image pixels, best first.

    ``image_sizes`` holds each image's (width, height) so the letterbox can be removed; ``max_palms`` keeps
    only the best ones (MediaPipe's ClipDetectionVectorSizeCalculator)."""
    scores = palm_scores(logits)
    results: list[list[PalmDetection]] = []
    for b, (w, h) in enumerate(image_sizes):
        keep = np.flatnonzero(scores[b] >= min_score)
        if keep.size == 0:
            results.append([])
            continue
        boxes, kps = decode_boxes(regressors[b, keep], _ANCHORS[keep])
        s, boxes, kps = weighted_nms(scores[b, keep], boxes, kps)
        if max_palms is not None:
            s, boxes, kps = s[:max_palms], boxes[:max_palms], kps[:max_palms]
        # Letterbox removal: network-normalised u -> image pixels x = u * side + (w - side) / 2.
        side = max(w, h)
        off = np.array([(w - side) / 2, (h - side) / 2])
        boxes = boxes * side + np.tile(off, 2)
        kps = kps * side + off
        results.append([PalmDetection(float(s[i]), boxes[i], kps[i]) for i in range(len(s))])
    return results
