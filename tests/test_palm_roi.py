"""Geometry around the networks on synthetic data: SSD anchors, palm decoding and weighted NMS, letterbox
removal, rotated ROIs, crops and their inverse. No network is run here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from handcap.inference.anchors import SsdAnchorOptions, ssd_anchors
from handcap.inference.palm import (
    decode_boxes,
    letterbox_matrix,
    palm_input,
    palm_scores,
    postprocess_palms,
    weighted_nms,
)
from handcap.inference.roi import (
    crop_matrices,
    crop_rois,
    crop_to_image,
    landmark_rois,
    normalize_radians,
    palm_rois,
    roi_iou,
    rotate_in_plane,
    rotation_towards,
    transform_rect,
    warp_image,
)


def test_palm_anchors_layout():
    a = ssd_anchors()
    assert a.shape == (2016, 4)
    np.testing.assert_allclose(a[0], [0.5 / 24, 0.5 / 24, 1, 1])
    np.testing.assert_allclose(a[1], a[0])  # 2 anchors per stride-8 cell
    np.testing.assert_allclose(a[2, :2], [1.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(a[1152, :2], [0.5 / 12, 0.5 / 12])  # stride-16 map starts
    np.testing.assert_allclose(a[1152:1158], np.repeat(a[1152:1153], 6, 0))  # 6 anchors per cell
    np.testing.assert_allclose(a[-1, :2], [11.5 / 12, 11.5 / 12])
    sized = ssd_anchors(SsdAnchorOptions(fixed_anchor_size=False))
    np.testing.assert_allclose(sized[0, 2:], [0.1484375] * 2)  # first layer, min scale
    np.testing.assert_allclose(sized[1, 2:], [np.sqrt(0.1484375 * (0.1484375 + (0.75 - 0.1484375) / 3))] * 2)


def test_decode_and_scores():
    anchors = np.array([[0.25, 0.5, 1, 1]], np.float32)
    reg = np.zeros((1, 18))
    reg[0, :4] = [19.2, -9.6, 48, 96]  # dx, dy, w, h in 192-pixel units
    reg[0, 4:6] = [0, 19.2]  # keypoint 0 below the anchor
    boxes, kps = decode_boxes(reg, anchors)
    np.testing.assert_allclose(boxes[0], [0.35 - 0.125, 0.45 - 0.25, 0.35 + 0.125, 0.45 + 0.25])
    np.testing.assert_allclose(kps[0, 0], [0.25, 0.6])
    np.testing.assert_allclose(kps[0, 1:], np.tile([[0.25, 0.5]], (6, 1)))
    s = palm_scores(np.array([-1e6, 0.0, 1e6]))
    assert np.all(np.isfinite(s)) and s[1] == 0.5 and s[0] < 1e-40 and s[2] == 1.0


def test_weighted_nms_merges_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    kps = np.stack([np.full((7, 2), v) for v in (0.0, 4.0, 50.0)])
    scores = np.array([0.6, 0.9, 0.7])
    s, b, k = weighted_nms(scores, boxes, kps, 0.3)
    np.testing.assert_allclose(s, [0.9, 0.7])  # top score kept, best first
    w = np.array([0.6, 0.9]) / 1.5
    np.testing.assert_allclose(b[0], w[0] * boxes[0] + w[1] * boxes[1])
    np.testing.assert_allclose(k[0], np.full((7, 2), 4.0 * w[1]))
    np.testing.assert_allclose(b[1], boxes[2])
    # IoU of the first two is 81/119 = 0.68: above 0.7 they stay apart
    assert len(weighted_nms(scores, boxes, kps, 0.7)[0]) == 3


def test_letterbox_round_trip_through_postprocess():
    w, h = 640, 360
    m = letterbox_matrix(w, h)
    np.testing.assert_allclose(m @ [0, 0, 1], [0, 192 * (1 - h / w) / 2])  # image top-left below the band
    np.testing.assert_allclose(m @ [w, h, 1], [192, 192 - 192 * (1 - h / w) / 2])
    # A palm whose box centre and keypoint 0 sit at known image pixels.
    anchors = ssd_anchors()
    centre, kp0 = np.array([400.0, 200.0]), np.array([410.0, 260.0])
    a = 1000
    reg = np.zeros((1, 2016, 18))
    logits = np.full((1, 2016), -50.0)
    logits[0, a] = 3.0
    tc = (m @ [*centre, 1]) / 192  # normalised network coordinates
    tk = (m @ [*kp0, 1]) / 192
    reg[0, a, :4] = [(tc[0] - anchors[a, 0]) * 192, (tc[1] - anchors[a, 1]) * 192, 19.2, 19.2]
    reg[0, a, 4:6] = [(tk[0] - anchors[a, 0]) * 192, (tk[1] - anchors[a, 1]) * 192]
    [palms] = postprocess_palms(reg, logits, [(w, h)])
    assert len(palms) == 1 and abs(palms[0].score - 1 / (1 + np.exp(-3))) < 1e-9
    np.testing.assert_allclose((palms[0].box[:2] + palms[0].box[2:]) / 2, centre, atol=1e-6)
    np.testing.assert_allclose(palms[0].box[2] - palms[0].box[0], 0.1 * w, atol=1e-6)  # 19.2/192 of the side
    np.testing.assert_allclose(palms[0].keypoints[0], kp0, atol=1e-6)
    assert postprocess_palms(reg, logits - 10, [(w, h)]) == [[]]


def test_palm_input_letterboxes_with_black_bands():
    img = np.full((100, 200, 3), 255, np.uint8)
    x = palm_input(img)
    assert x.shape == (192, 192, 3)
    assert x[:40].max() == 0 and x[-40:].max() == 0 and x[60:130].min() == 255


def test_rotation_convention_and_rect_transform():
    assert abs(rotation_towards([0, 0], [0, -1])) < 1e-12  # pointing up: no rotation
    assert abs(rotation_towards([0, 0], [1, 0]) - np.pi / 2) < 1e-12  # pointing right
    assert abs(abs(rotation_towards([0, 0], [0, 1])) - np.pi) < 1e-12
    assert abs(normalize_radians(3 * np.pi / 2) + np.pi / 2) < 1e-12
    # Shift -0.5 of the height along the rotated y axis: with rotation pi/2 that is towards +x.
    roi = transform_rect(100, 50, 20, 10, np.pi / 2, scale=2.0, shift_y=-0.5)
    np.testing.assert_allclose(roi, [105, 50, 40, np.pi / 2], atol=1e-9)


def _upright_hand(cx=300.0, cy=400.0, s=100.0) -> np.ndarray:
    """A synthetic open right hand pointing up (image y down), wrist at (cx, cy)."""
    kp = np.zeros((21, 2))
    kp[0] = [0, 0]
    for f, x in enumerate([-0.6, -0.3, 0.0, 0.3, 0.6]):
        base = [x * 0.8, -0.9] if f else [-0.5, -0.3]
        for j in range(4):
            kp[1 + 4 * f + j] = [base[0] + (x * 0.2 if f else -0.15 * j), base[1] - 0.35 * j]
    return kp * s + [cx, cy]


@pytest.mark.parametrize("angle", [0.0, 0.7, -2.0, np.pi])
def test_landmark_roi_rotates_hand_upright(angle):
    kp = _upright_hand()
    c, s = np.cos(angle), np.sin(angle)
    rot = (kp - kp[0]) @ np.array([[c, s], [-s, c]]) + kp[0]  # turned by `angle` clockwise on screen
    roi = landmark_rois(rot[None])[0]
    assert abs(normalize_radians(roi[3] - angle)) < 1e-9
    ref = landmark_rois(kp[None])[0]
    assert abs(roi[2] - ref[2]) < 1e-6  # size does not depend on the rotation
    # In the crop the hand points up: middle MCP straight above the wrist.
    m = crop_matrices(roi[None], 224)[0]
    w, mcp = m @ [*rot[0], 1], m @ [*rot[9], 1]
    assert mcp[1] < w[1] and abs(np.arctan2(mcp[0] - w[0], w[1] - mcp[1])) < 0.2
    # Box of the 12 ROI landmarks, twice its long side, shifted by 0.1 of its height towards the fingers.
    sub = kp[[0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18]]
    long = max(np.ptp(sub[:, 0]), np.ptp(sub[:, 1]))
    np.testing.assert_allclose(ref[2], 2 * long)
    np.testing.assert_allclose(
        ref[:2],
        [(sub[:, 0].min() + sub[:, 0].max()) / 2, (sub[:, 1].min() + sub[:, 1].max()) / 2 - 0.1 * np.ptp(sub[:, 1])],
    )


def test_palm_roi():
    box = np.array([[100, 100, 140, 120]], float)
    kp = np.zeros((1, 7, 2))
    kp[0, 0], kp[0, 2] = [120, 130], [140, 130]  # wrist -> middle MCP points right
    roi = palm_rois(box, kp)[0]
    assert abs(roi[3] - np.pi / 2) < 1e-12
    # shift_y -0.5 of the box height (20) along the rotated "up", which points to +x here
    np.testing.assert_allclose(roi[:3], [120 + 10, 110, 2.6 * 40])


def test_crop_and_back_are_inverse():
    rng = np.random.default_rng(1)
    rois = np.array([[320.0, 240.0, 200.0, 0.3], [50.0, 60.0, 500.0, -2.5]])
    pts = rng.uniform(0, 224, (2, 21, 2))
    img_pts = crop_to_image(pts, rois, 224)
    mats = crop_matrices(rois, 224)
    back = np.einsum("nij,nkj->nki", mats[:, :, :2], img_pts) + mats[:, None, :, 2]
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # The ROI's corners land on the crop's corners (MediaPipe's mapping).
    corner = crop_to_image(np.array([[[0.0, 0.0]]]), rois[:1], 224)[0, 0]
    c, s = np.cos(0.3), np.sin(0.3)
    np.testing.assert_allclose(corner, [320 + (-100 * c + 100 * s), 240 + (-100 * s - 100 * c)])


def test_crop_content_follows_rotation():
    img = np.zeros((400, 400, 3), np.uint8)
    cv2.circle(img, (300, 200), 8, (255, 0, 0), -1)  # a red dot right of the centre
    roi = np.array([[200.0, 200.0, 224.0, np.pi / 2]])  # rotated: image +x becomes crop up
    crop = crop_rois(img, roi, 224)[0]
    ys, xs = np.nonzero(crop[:, :, 0] > 128)
    assert abs(xs.mean() - 112) < 2 and abs(ys.mean() - 12) < 2
    assert crop[:, :, 1:].max() == 0  # RGB order kept


def test_world_rotation_undoes_roi_rotation():
    p = np.array([[[0.0, -1.0, 0.5]]])  # "up" in the crop
    out = rotate_in_plane(p, np.array([np.pi / 2]))
    np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 0.5], atol=1e-12)  # right in the image, z kept


def test_roi_iou():
    a = np.array([[0.0, 0.0, 10.0, 0.0]])
    np.testing.assert_allclose(roi_iou(a, a), [[1.0]])
    np.testing.assert_allclose(roi_iou(a, [[5.0, 0.0, 10.0, 1.0]]), [[50 / 150]])  # rotation ignored
    np.testing.assert_allclose(roi_iou(a, [[100.0, 0.0, 10.0, 0.0]]), [[0.0]])


def test_extreme_shrink_is_prefiltered():
    # 1-pixel checkerboard shrunk 40x: plain bilinear sampling aliases, area pre-reduction gives grey.
    board = ((np.indices((4000, 4000)).sum(0) % 2) * 255).astype(np.uint8)
    img = np.repeat(board[:, :, None], 3, 2)
    m = letterbox_matrix(4000, 4000, 100)
    out = warp_image(img, m, 100)
    assert abs(float(out.mean()) - 127.5) < 3 and out.std() < 3
    aliased = cv2.warpAffine(img, m, (100, 100), flags=cv2.INTER_LINEAR)
    assert abs(float(aliased.mean()) - 127.5) > 20 or aliased.std() > 20  # wrong mean or moire
