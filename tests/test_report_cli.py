"""``python -m handcap report``: one folder per input plus an index, failing inputs named and skipped (exit 1),
photos captured with the capture options on the way."""

from __future__ import annotations

import contextlib
import io
import shutil

import cv2
import numpy as np
import pytest

from handcap.cli import main
from handcap.core.capture import read_capture

from .conftest import shared_path
from .test_report_capture import synthetic_capture


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def test_single_capture_report_goes_straight_into_the_folder(tmp_path):
    synthetic_capture(tmp_path)
    code, err = run_cli("report", tmp_path / "take.npz", "-o", tmp_path / "rep", "--max-frames", "4", "--no-mesh")
    assert code == 0, err
    assert (tmp_path / "rep" / "index.html").is_file()
    frames = sorted((tmp_path / "rep" / "frames").glob("*.jpg"))
    assert 1 <= len(frames) <= 4
    assert cv2.imread(str(frames[0])).shape[0] == 360  # the default --height
    assert "1 with a missed hand" in err  # frame 3 of the synthetic capture has no hand


def test_several_inputs_failures_are_named_and_the_rest_is_done(tmp_path):
    synthetic_capture(tmp_path)
    shutil.copyfile(tmp_path / "take.npz", tmp_path / "again.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip archive")
    inputs = [tmp_path / "take.npz", tmp_path / "broken.npz", tmp_path / "missing.mp4", tmp_path / "again.npz"]
    code, err = run_cli("report", *inputs, "-o", tmp_path / "rep", "--height", "200", "--no-mesh")
    assert code == 1
    assert f"{tmp_path / 'broken.npz'}: failed: " in err and "not an .npz archive" in err
    assert f"{tmp_path / 'missing.mp4'}: failed: no such file" in err
    assert "2 of 4 inputs failed" in err
    for name in ("take", "again"):
        page = (tmp_path / "rep" / name / "index.html").read_text()
        assert "<td>missed</td>" in page
        assert cv2.imread(str(next((tmp_path / "rep" / name / "frames").glob("*.jpg")))).shape[0] == 200
    assert not (tmp_path / "rep" / "broken").exists()  # no empty folder for a failed input
    index = (tmp_path / "rep" / "index.html").read_text()
    assert '<a href="take/index.html">' in index and '<a href="again/index.html">' in index
    assert index.count("failed") == 2 and "not an .npz archive" in index


def test_same_stem_gets_its_own_folder(tmp_path):
    synthetic_capture(tmp_path)
    (tmp_path / "b").mkdir()
    shutil.copyfile(tmp_path / "take.npz", tmp_path / "b" / "take.npz")
    code, _ = run_cli("report", tmp_path / "take.npz", tmp_path / "b" / "take.npz", "-o", tmp_path / "r", "--no-mesh")
    assert code == 0
    assert (tmp_path / "r" / "take" / "index.html").is_file() and (tmp_path / "r" / "take-2" / "index.html").is_file()


def test_bad_options_are_user_errors(tmp_path):
    synthetic_capture(tmp_path)
    code, err = run_cli("report", tmp_path / "take.npz", "-o", tmp_path / "r", "--max-frames", "0")
    assert code == 2 and "--max-frames" in err


@pytest.mark.shared_data
def test_photos_are_captured_then_reported(tmp_path):
    """A real photo is captured (capture options passed through) and reported; a blank photo fails with the
    capture's own message while the other input is still done."""
    photo = tmp_path / "hand.jpg"
    shutil.copyfile(shared_path("ge2019_dev", "images", "00000.jpg"), photo)  # copied at test time only
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((128, 128, 3), 128, np.uint8))
    code, err = run_cli(
        "report", photo, tmp_path / "blank.png", "-o", tmp_path / "rep", "--device", "cpu", "--hands", "1",
        "--fov", "30", "--quiet",
    )  # fmt: skip
    assert code == 1, err
    assert f"{tmp_path / 'blank.png'}: failed: " in err and "no hand" in err
    cap = read_capture(tmp_path / "rep" / "hand" / "capture.npz")
    assert cap.num_frames == 1 and len(cap.hands) == 1
    assert cap.info["options"]["hands"] == 1 and cap.info["options"]["fov_deg"] == 30.0
    # f from a 30 degree horizontal field of view on a 256 px wide image
    assert cap.intrinsics.fx == pytest.approx(128 / np.tan(np.radians(15)), rel=1e-6)
    (track,) = cap.hands.values()
    assert track.valid[0]
    page = (tmp_path / "rep" / "hand" / "index.html").read_text()
    assert "frames/frame_000000.jpg" in page
    index = (tmp_path / "rep" / "index.html").read_text()
    assert '<a href="hand/index.html">' in index and "no hand" in index
