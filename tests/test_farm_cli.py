"""The command-line pieces a Flamenco job runs: ``convert --frames A:B --chunk-out`` and ``merge``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO

pytest.importorskip("torch", reason="needs the inference requirements")
pytestmark = [pytest.mark.blender, pytest.mark.slow]
SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"
PLAN = ["--chunk-frames", "60", "--overlap", "15"]  # the sample's 90 frames: 0:60 and 45:90
# The fit of the same landmarks in two processes: a few keypoints of a few frames may end a rounding step
# apart (MKL's kernel choice; measured on an AMD EPYC: 1 merge in 12 ends 0.83 um off, the others alike).
RUN_TOL_M = 1e-5


def _handcap(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "handcap", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chunks")
    files = []
    for frames in ("0:60", "45:90"):
        path = folder / "sub" / f"chunk_{frames.replace(':', '_')}.npz"
        after = ["--after-chunk", files[-1]] if files else []  # the second goes on from the first's tracker
        code, log = _handcap("convert", SAMPLE, "-o", folder, "--frames", frames, *PLAN, "--chunk-out", path, *after)
        assert code == 0, log
        assert f"frames {frames}" in log and path.is_file()
        files.append(path)
    assert not list(folder.glob("*.blend")), "--chunk-out converts nothing"
    return files


def test_merge_converts_the_chunks_and_writes_the_same_capture_as_capture_out(chunk_files, tmp_path):
    from handcap.core.capture import read_capture

    code, log = _handcap("merge", *reversed(chunk_files), "-o", tmp_path / "out", "--format", "bvh", "--keep-captures")
    assert code == 0, log
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "two_hands.L.bvh",
        "two_hands.R.bvh",
        "two_hands.npz",
    ]
    code, log = _handcap("merge", *chunk_files, "--capture-out", tmp_path / "take.npz")
    assert code == 0, log
    a, b = read_capture(tmp_path / "out" / "two_hands.npz"), read_capture(tmp_path / "take.npz")
    assert a.num_frames == b.num_frames == 90 and sorted(a.hands) == sorted(b.hands) == ["left", "right"]
    for side in a.hands:
        np.testing.assert_allclose(a.hands[side].kp3d, b.hands[side].kp3d, rtol=0, atol=RUN_TOL_M)
        assert a.hands[side].valid.all()
    # chained chunks: the merged capture is the capture of the whole clip (the same landmarks, bit for bit)
    code, log = _handcap("capture", SAMPLE, "-o", tmp_path / "whole.npz")
    assert code == 0, log
    whole = read_capture(tmp_path / "whole.npz")
    assert whole.intrinsics == b.intrinsics
    for side in whole.hands:
        np.testing.assert_array_equal(whole.hands[side].kp2d, b.hands[side].kp2d)
        np.testing.assert_allclose(whole.hands[side].kp3d, b.hands[side].kp3d, rtol=0, atol=RUN_TOL_M)
        np.testing.assert_allclose(whole.hands[side].beta, b.hands[side].beta, rtol=0, atol=1e-6)


def test_bad_chunk_requests_are_refused_with_a_reason(chunk_files, tmp_path):
    code, log = _handcap(
        "convert", SAMPLE, "-o", tmp_path, "--frames", "0:50", *PLAN, "--chunk-out", tmp_path / "x.npz"
    )
    assert code == 2 and "is not a chunk of" in log and "0:60, 45:90" in log, log
    code, log = _handcap("convert", SAMPLE, "-o", tmp_path, *PLAN, "--chunk-out", tmp_path / "x.npz")
    assert code == 2 and "needs the chunk's range as --frames A:B" in log, log
    assert not (tmp_path / "x.npz").exists()
    code, log = _handcap(
        "convert",
        SAMPLE,
        "-o",
        tmp_path,
        "--frames",
        "45:90",
        *PLAN,
        "--chunk-out",
        tmp_path / "x.npz",
        "--after-chunk",
        chunk_files[1],
    )
    assert code == 2 and "is not the predecessor of chunk 2" in log, log
    code, log = _handcap("merge", chunk_files[1], "-o", tmp_path / "out")
    assert code == 2 and "chunk(s) 1 of 2 missing" in log, log
    not_a_chunk = tmp_path / "notes.npz"
    not_a_chunk.write_bytes(b"not a zip")
    code, log = _handcap("merge", chunk_files[0], not_a_chunk, "-o", tmp_path / "out")
    assert code == 2 and "not a HandCap chunk file" in log, log
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
