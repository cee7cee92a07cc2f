"""Rotated hand regions of interest (ROIs) and the crops between image and network pixels.

An ROI is a row ``[cx, cy, size, rotation]``: centre and side of a square in image pixels and a rotation in
radians. Image pixels have x right, y down, origin at the top-left corner of the top-left pixel. A rotation
r turns the crop's axes by r clockwise on screen (y is down), so a crop pixel offset ``d`` from the crop's
centre lands at ``centre + size / out * R(r) @ d`` with ``R(r) = [[cos r, -sin r], [sin r, cos r]]``.
MediaPipe's ROIs rotate the hand so that it points up in the crop (wrist at the bottom).

The mapping of crop pixels follows MediaPipe's ImageToTensorCalculator (OpenCV backend): the ROI's corners
go to the corners (0, 0) and (out, out) of the crop, with OpenCV's pixel-centre sampling.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..core.keypoints import HandKeypoint as K

#: MediaPipe's palm -> hand ROI (palm_detection_detection_to_roi.pbtxt).
PALM_ROI_SCALE = 2.6
PALM_ROI_SHIFT_Y = -0.5
#: MediaPipe's landmarks -> next-frame ROI (hand_landmark_landmarks_to_roi.pbtxt).
LANDMARK_ROI_SCALE = 2.0
LANDMARK_ROI_SHIFT_Y = -0.1
#: Landmarks that HandLandmarksToRectCalculator sees: wrist, thumb CMC..IP, and the MCP + PIP of each finger.
ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
#: Bilinear sampling shrinks at most this much: larger shrinks (huge photos, 4K video) first reduce the
#: covered region with area averaging down to this remaining factor. MediaPipe samples bilinearly at any
#: scale, and its networks do measurably better on such (aliased) input than on fully smoothed input, so
#: only extreme shrinks are pre-reduced.
MAX_BILINEAR_DOWNSCALE = 8.0


def normalize_radians(angle):
    """Wrap angles to [-pi, pi)."""
    return angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi))


def rotation_towards(start: np.ndarray, end: np.ndarray, target: float = np.pi / 2) -> np.ndarray:
    """Rotation that makes the direction start -> end (image pixels, (..., 2)) point to ``target``
    (MediaPipe's convention: pi/2 = straight up on screen)."""
    d = np.asarray(end, np.float64) - np.asarray(start, np.float64)
    return normalize_radians(target - np.arctan2(-d[..., 1], d[..., 0]))


def transform_rect(cx, cy, w, h, rotation, scale: float, shift_y: float, shift_x: float = 0.0) -> np.ndarray:
    """MediaPipe's RectTransformationCalculator in pixels with square_long: shift along the rotated axes
    by fractions of the (unsquared) width/height, square to the long side, then scale. Returns (..., 4) ROIs."""
    cx, cy, w, h, r = (np.asarray(v, np.float64) for v in (cx, cy, w, h, rotation))
    c, s = np.cos(r), np.sin(r)
    cx = cx + w * shift_x * c - h * shift_y * s
    cy = cy + w * shift_x * s + h * shift_y * c
    size = np.maximum(w, h) * scale
    return np.stack(np.broadcast_arrays(cx, cy, size, r), axis=-1)


def palm_rois(boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Hand ROIs (N, 4) from palm boxes (N, 4) ``[xmin, ymin, xmax, ymax]`` and palm keypoints (N, 7, 2),
    all in image pixels: palm keypoint 0 (wrist) -> 2 (middle MCP) points up; scale 2.6, shift_y -0.5."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    kp = np.asarray(keypoints, np.float64).reshape(-1, 7, 2)
    rot = rotation_towards(kp[:, 0], kp[:, 2])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return transform_rect(cx, cy, w, h, rot, PALM_ROI_SCALE, PALM_ROI_SHIFT_Y)


def landmark_rois(kp2d: np.ndarray) -> np.ndarray:
    """Next-frame hand ROIs (N, 4) from 21 image-pixel landmarks (N, 21, 2), as MediaPipe's
    HandLandmarksToRectCalculator + RectTransformation(scale 2.0, shift_y -0.1, square_long).

    Rotation: wrist towards the mean of (mean(index MCP, ring MCP), middle MCP), pointing up. The box is
    the tightest one around the 12 ROI_LANDMARKS in the rotated frame."""
    kp = np.asarray(kp2d, np.float64).reshape(-1, 21, 2)
    p = kp[:, ROI_LANDMARKS]
    top = ((kp[:, K.INDEX_MCP] + kp[:, K.RING_MCP]) / 2 + kp[:, K.MIDDLE_MCP]) / 2
    rot = rotation_towards(kp[:, K.WRIST], top)
    centre_aa = (p.min(axis=1) + p.max(axis=1)) / 2  # (N, 2)
    d = p - centre_aa[:, None]
    c, s = np.cos(-rot)[:, None], np.sin(-rot)[:, None]
    px, py = d[..., 0] * c - d[..., 1] * s, d[..., 0] * s + d[..., 1] * c
    pcx, pcy = (px.min(1) + px.max(1)) / 2, (py.min(1) + py.max(1)) / 2
    c, s = np.cos(rot), np.sin(rot)
    cx = pcx * c - pcy * s + centre_aa[:, 0]
    cy = pcx * s + pcy * c + centre_aa[:, 1]
    w, h = px.max(1) - px.min(1), py.max(1) - py.min(1)
    return transform_rect(cx, cy, w, h, rot, LANDMARK_ROI_SCALE, LANDMARK_ROI_SHIFT_Y)


def crop_matrices(rois: np.ndarray, out_size: int) -> np.ndarray:
    """(N, 2, 3) affine matrices mapping image pixels to crop pixels of an ``out_size`` square crop."""
    rois = np.asarray(rois, np.float64).reshape(-1, 4)
    k = out_size / rois[:, 2]
    c, s = np.cos(rois[:, 3]), np.sin(rois[:, 3])
    m = np.empty((len(rois), 2, 3))
    m[:, 0, 0], m[:, 0, 1] = k * c, k * s
    m[:, 1, 0], m[:, 1, 1] = -k * s, k * c
    m[:, 0, 2] = out_size / 2 - (m[:, 0, 0] * rois[:, 0] + m[:, 0, 1] * rois[:, 1])
    m[:, 1, 2] = out_size / 2 - (m[:, 1, 0] * rois[:, 0] + m[:, 1, 1] * rois[:, 1])
    return m


def crop_to_image(points: np.ndarray, rois: np.ndarray, out_size: int) -> np.ndarray:
    """Crop-pixel points (N, K, 2) -> image pixels (N, K, 2) for the crops of ``rois`` (N, 4)."""
    pts = np.asarray(points, np.float64)
    rois = np.asarray(rois, np.float64).reshape(-1, 4)
    d = (pts - out_size / 2) * (rois[:, 2] / out_size)[:, None, None]
    c, s = np.cos(rois[:, 3])[:, None], np.sin(rois[:, 3])[:, None]
    x = d[..., 0] * c - d[..., 1] * s + rois[:, None, 0]
    y = d[..., 0] * s + d[..., 1] * c + rois[:, None, 1]
    return np.stack([x, y], axis=-1)


def rotate_in_plane(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate (N, K, 3) points about z by ``rotation`` (N,) with the ROI convention (x right, y down):
    undoes the crop's rotation for MediaPipe's world landmarks (WorldLandmarkProjectionCalculator)."""
    p = np.asarray(points, np.float64)
    c, s = np.cos(rotation)[:, None], np.sin(rotation)[:, None]
    out = p.copy()
    out[..., 0] = p[..., 0] * c - p[..., 1] * s
    out[..., 1] = p[..., 0] * s + p[..., 1] * c
    return out


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    out_size: int,
    border: int = cv2.BORDER_REPLICATE,
    max_bilinear_downscale: float = MAX_BILINEAR_DOWNSCALE,
) -> np.ndarray:
    """Bilinear affine warp of ``image`` (H, W, 3) uint8 into an ``out_size`` square (uint8, like MediaPipe's
    OpenCV converter). Where the warp shrinks more than ``max_bilinear_downscale`` times, the covered image
    region is first reduced with area averaging so the bilinear step shrinks by ``max_bilinear_downscale``."""
    m = np.asarray(matrix, np.float64)
    k = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if k * max_bilinear_downscale < 1.0:
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [out_size, 0, 1], [0, out_size, 1], [out_size, out_size, 1]], np.float64)
        src = corners @ inv.T
        h, w = image.shape[:2]
        x0, y0 = np.maximum(np.floor(src.min(0)) - 2, 0).astype(int)
        x1, y1 = np.minimum(np.ceil(src.max(0)) + 2, [w, h]).astype(int)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            rw, rh = x1 - x0, y1 - y0
            f = k * max_bilinear_downscale  # pre-reduction factor (< 1)
            nw, nh = max(2, round(rw * f)), max(2, round(rh * f))
            small = cv2.resize(image[y0:y1, x0:x1], (nw, nh), interpolation=cv2.INTER_AREA)
            fx, fy = nw / rw, nh / rh
            # small-pixel -> image-pixel (pixel centres: x_img = (x_s + 0.5) / fx - 0.5 + x0)
            a = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1]])
            m = m @ a
            image = small
    return cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def crop_rois(image: np.ndarray, rois: np.ndarray, out_size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """(N, out_size, out_size, 3) uint8 crops of ``image`` for ROIs (N, 4)."""
    mats = crop_matrices(rois, out_size)
    out = np.empty((len(mats), out_size, out_size, 3), np.uint8)
    for i, m in enumerate(mats):
        out[i] = warp_image(image, m, out_size, border)
    return out


def roi_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of the axis-aligned squares of ROIs a (N, 4) and b (M, 4), rotation ignored: the overlap
    test of MediaPipe's AssociationNormRectCalculator."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]
    ix = np.clip(
        np.minimum(a[..., 0] + a[..., 2] / 2, b[..., 0] + b[..., 2] / 2)
        - np.maximum(a[..., 0] - a[..., 2] / 2, b[..., 0] - b[..., 2] / 2),
        0,
        None,
    )
    iy = np.clip(
        np.minimum(a[..., 1] + a[..., 2] / 2, b[..., 1] + b[..., 2] / 2)
        - np.maximum(a[..., 1] - a[..., 2] / 2, b[..., 1] - b[..., 2] / 2),
        0,
        None,
    )
    inter = ix * iy
    union = a[..., 2] ** 2 + b[..., 2] ** 2 - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


#: Paint used by ``mask_hands``: mid-grey, which neither the palm detector nor the landmark model reads as skin.
MASK_GREY = 128


def mask_hands(image: np.ndarray, kp2d: np.ndarray, grow: float = 0.1) -> np.ndarray:
    """Copy of ``image`` (H, W, 3) uint8 with each hand of ``kp2d`` (N, 21, 2 image pixels) painted out: the
    convex hull of its landmarks grown by ``grow`` times the long side of their bounding box, mid-grey.
    Lets the palm detector find a hand that another hand hides in part (it otherwise reports the other's)."""
    out = image.copy()
    for kp in np.asarray(kp2d, np.float64).reshape(-1, 21, 2):
        hull = cv2.convexHull(np.round(kp).astype(np.int32))
        pad = int(round(grow * np.ptp(kp, axis=0).max()))
        cv2.fillConvexPoly(out, hull, (MASK_GREY,) * 3)
        if pad > 0:  # a stroke of width 2 * pad along the hull = the hull grown by pad
            cv2.polylines(out, [hull], True, (MASK_GREY,) * 3, thickness=2 * pad + 1)
    return out
