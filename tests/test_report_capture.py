"""The capture report: worst-first ranking, missed hands, overlays that match the numbers, video curves."""

from __future__ import annotations

import re

import cv2
import numpy as np

from handcap.core.capture import CameraIntrinsics, Capture, HandTrack, write_capture
from handcap.core.handmodel import forward, load_builtin, rest_joints
from handcap.inference.report import draw
from handcap.inference.report.capture_report import (
    ReportOptions,
    build_capture_report,
    frame_spans,
    reprojection_errors,
)


def synthetic_capture(tmp_path, t=8, missed=3, bad=5):
    """A right hand waving in front of a 320x240 camera, written as a PNG sequence + capture."""
    data = load_builtin("right")
    K = CameraIntrinsics.from_fov(320, 240, 60.0)
    rng = np.random.default_rng(1)
    theta = rng.normal(0, 0.15, (t, 16, 3))
    theta[:, 0] = [np.pi, 0, 0]  # palm toward the camera, fingers up (template fingers point along -x)
    transl = np.stack([np.linspace(-0.03, 0.03, t), np.zeros(t), np.full(t, 0.45)], 1)
    beta = np.zeros(10)
    out = forward(data, theta, beta, transl)
    kp3d = out.keypoints
    kp2d = draw.project(kp3d, K.matrix)
    kp2d[bad] += 9.0  # one frame whose observation disagrees with the fit by 9*sqrt(2) px
    valid = np.ones(t, bool)
    valid[missed] = False
    for i in range(t):
        cv2.imwrite(str(tmp_path / f"f_{i:03d}.png"), np.full((240, 320, 3), 40 + 20 * i, np.uint8))
    track = HandTrack(
        side="right",
        theta=theta.astype(np.float32),
        beta=beta.astype(np.float32),
        transl=transl.astype(np.float32),
        kp2d=kp2d.astype(np.float32),
        kp3d=kp3d.astype(np.float32),
        frame_conf=np.where(valid, 0.9, 0.0).astype(np.float32),
        kp_conf=np.ones((t, 21), np.float32),
        valid=valid,
        rest_joints=rest_joints(data, beta).astype(np.float32),
    )
    cap = Capture(str(tmp_path / "f_%03d.png"), np.arange(t), 30.0, (320, 240), K, "builtin-v1", {"right": track})
    write_capture(tmp_path / "take.npz", cap)
    return cap


def test_errors_rank_missed_then_worst(tmp_path):
    cap = synthetic_capture(tmp_path)
    err = reprojection_errors(cap)["right"]
    assert np.isinf(err[3])
    np.testing.assert_allclose(err[5], 9 * np.sqrt(2), rtol=1e-4)
    assert np.all(err[[0, 1, 2, 4, 6, 7]] < 1e-3)


def test_report_files_and_order(tmp_path):
    cap = synthetic_capture(tmp_path)
    summary = build_capture_report(cap, tmp_path / "report", ReportOptions(max_frames=8, height=240))
    assert [e.frame for e in summary.entries[:2]] == [3, 5]
    assert summary.entries[0].errors_px["right"] == float("inf")
    page = summary.index.read_text()
    assert "missed" in page and "http" not in page  # no network resources
    for e in summary.entries:
        assert (tmp_path / "report" / e.image).is_file()
    assert summary.curves == ["curve_confidence.png", "curve_jitter.png", "curve_wrist_depth.png"]
    for c in summary.curves:
        assert cv2.imread(str(tmp_path / "report" / c)) is not None


def test_overlay_puts_the_fitted_keypoints_where_the_numbers_say(tmp_path):
    cap = synthetic_capture(tmp_path)
    summary = build_capture_report(cap, tmp_path / "report", ReportOptions(max_frames=8, height=240, mesh=False))
    entry = next(e for e in summary.entries if e.frame == 0)
    img = cv2.cvtColor(cv2.imread(str(tmp_path / "report" / entry.image)), cv2.COLOR_BGR2RGB)
    # Panel 2 (x in [320, 640)) holds the fitted keypoints; the wrist dot is white and drawn where projected.
    wrist = draw.project(cap.hands["right"].kp3d[0, 0].astype(float), cap.intrinsics.matrix)
    panel = img[:, 320:640].astype(int)
    white = np.argwhere(np.all(panel > 200, axis=-1))  # JPEG: near-white, not exactly white
    assert len(white)
    d = np.linalg.norm(white[:, ::-1] + 0.5 - wrist, axis=1)
    assert d.min() < 1.5, d.min()


def _cyan(panel: np.ndarray) -> np.ndarray:
    """(N, 2) x, y of the pixels near BRIDGED_COLOR (JPEG: near, not exact)."""
    p = panel.astype(int)
    hit = (p[..., 0] < 90) & (p[..., 1] > 200) & (p[..., 2] > 200)
    return np.argwhere(hit)[:, ::-1]


def test_a_bridged_frame_is_drawn_in_cyan_without_observations_and_named_in_the_table(tmp_path):
    cap = synthetic_capture(tmp_path, t=10, missed=3)
    track = cap.hands["right"]
    track.valid[6] = False  # frame 6: a gap the fit bridged from both sides; frame 3: missed, not bridged
    track.bridged = np.zeros(10, bool)
    track.bridged[6] = True
    summary = build_capture_report(cap, tmp_path / "report", ReportOptions(max_frames=10, height=240, mesh=False))
    entries = {e.frame: e for e in summary.entries}
    assert entries[6].bridged == {"right"} and entries[3].bridged == frozenset() and entries[0].bridged == frozenset()
    assert {e.frame for e in summary.entries[:2]} == {3, 6}  # neither observed: both rank first
    page = summary.index.read_text()
    assert re.search(r"<tr><td>6</td><td>missed</td><td>bridged</td>", page), page
    assert re.search(r"<tr><td>3</td><td>missed</td><td>missed</td>", page), page
    img = cv2.cvtColor(cv2.imread(str(tmp_path / "report" / entries[6].image)), cv2.COLOR_BGR2RGB)
    wrist = draw.project(track.kp3d[6, 0].astype(float), cap.intrinsics.matrix)
    fitted = _cyan(img[:, 320:640])
    assert len(fitted) > 50 and np.linalg.norm(fitted + 0.5 - wrist, axis=1).min() < 1.5
    assert len(_cyan(img[:, :320])) == 0  # no observed keypoints in a bridged frame
    seen = cv2.cvtColor(cv2.imread(str(tmp_path / "report" / entries[0].image)), cv2.COLOR_BGR2RGB)
    assert len(_cyan(seen[:, 320:640])) < 5  # an observed frame keeps the per-finger colours
    keyed = track.keyed
    assert frame_spans(cap.frames, ~keyed) == [(2.5, 3.5)]
    assert frame_spans(cap.frames, keyed & ~track.valid) == [(5.5, 6.5)]
