"""Overlays put keypoints and meshes where the numbers say: draw, then locate the drawn colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from handcap.core.keypoints import HandKeypoint
from handcap.inference.report import draw


def _spread_hand(rng) -> np.ndarray:
    """21 keypoints far enough apart that each drawn disk can be found on its own."""
    grid = np.stack(np.meshgrid(np.arange(7), np.arange(3)), -1).reshape(-1, 2)[:21]
    return grid * [70.0, 90.0] + [40.3, 50.7] + rng.uniform(-5, 5, (21, 2))


def _locate(image: np.ndarray, color, near: np.ndarray, window: int = 20) -> np.ndarray:
    """Centre of the largest disk of exactly ``color`` within ``window`` px of ``near``."""
    mask = np.all(image == np.asarray(color, np.uint8), axis=-1).astype(np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    x0, y0 = int(near[0]) - window, int(near[1]) - window
    sub = dist[max(y0, 0) : y0 + 2 * window, max(x0, 0) : x0 + 2 * window]
    peak = np.argwhere(sub >= sub.max() - 1e-6)
    y, x = peak.mean(axis=0)
    return np.array([x + max(x0, 0) + 0.5, y + max(y0, 0) + 0.5])


def test_keypoints_are_drawn_where_they_are_with_their_finger_colour():
    rng = np.random.default_rng(3)
    kp = _spread_hand(rng)
    canvas = np.zeros((320, 520, 3), np.uint8)
    out = draw.draw_keypoints(canvas, kp, radius=6)
    assert not out.any() or canvas.sum() == 0  # input untouched
    for k in HandKeypoint:
        found = _locate(out, draw.keypoint_color(k), kp[k])
        assert np.linalg.norm(found - kp[k]) < 1.0, (k.name, found, kp[k])
    # Colours really differ per finger.
    assert draw.keypoint_color(HandKeypoint.THUMB_TIP) != draw.keypoint_color(HandKeypoint.INDEX_TIP)
    assert draw.keypoint_color(HandKeypoint.INDEX_MCP) == draw.keypoint_color(HandKeypoint.INDEX_TIP)


def test_low_confidence_and_nan_points_are_not_drawn():
    kp = _spread_hand(np.random.default_rng(0))
    kp[5] = np.nan
    conf = np.ones(21)
    conf[12] = 0.1
    out = draw.draw_keypoints(np.zeros((320, 520, 3), np.uint8), kp, conf, min_conf=0.5, radius=6)
    mid = draw.keypoint_color(HandKeypoint.MIDDLE_TIP)
    patch = out[int(kp[12, 1]) - 2 : int(kp[12, 1]) + 3, int(kp[12, 0]) - 2 : int(kp[12, 0]) + 3]
    assert not np.all(patch == mid, axis=-1).any()


def test_mesh_overlay_covers_the_projected_triangle_only():
    K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    verts = np.array([[-0.05, -0.05, 0.5], [0.05, -0.05, 0.5], [0.0, 0.05, 0.5]])
    faces = np.array([[0, 1, 2]])
    out = draw.draw_mesh(np.zeros((240, 320, 3), np.uint8), verts, faces, K, color=(200, 100, 50), alpha=1.0)
    uv = draw.project(verts, K)
    np.testing.assert_allclose(uv, [[110, 70], [210, 70], [160, 170]])
    centroid = uv.mean(axis=0).astype(int)
    # Facing the camera: (almost) full shade.
    np.testing.assert_allclose(out[centroid[1], centroid[0]], [200, 100, 50], atol=3)
    assert not out[5, 5].any() and not out[200, 300].any()
    covered = np.argwhere(out.any(axis=-1))
    assert covered[:, 1].min() >= 108 and covered[:, 1].max() <= 212
    assert covered[:, 0].min() >= 68 and covered[:, 0].max() <= 172


def test_points_behind_the_camera_do_not_project():
    K = np.eye(3)
    assert np.all(np.isnan(draw.project(np.array([[0.0, 0.0, -1.0]]), K)))


@pytest.mark.parametrize("deg", [0.0, 90.0])
def test_skeleton_view_is_root_centred(deg):
    kp3d = np.zeros((21, 3))
    kp3d[:, 1] = np.linspace(0, 0.08, 21)  # along y: a rotation about y keeps the points apart
    kp3d += [0.1, 0.0, 0.5]
    img = draw.skeleton_view(kp3d, draw.rotation_y(deg), size=200)
    wrist = draw.WRIST_COLOR
    ys, xs = np.nonzero(np.all(img == wrist, axis=-1))
    assert abs(xs.mean() + 0.5 - 100) < 1.5 and abs(ys.mean() + 0.5 - 100) < 1.5
