"""``python -m handcap farm`` on a real local Ray cluster (a head and a worker node, 1 CPU each, 127.0.0.1 only)
started by these tests and stopped at the end: same outputs as ``convert``, a killed worker changes nothing,
a rerun after an interruption redoes no finished chunk."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO

pytest.importorskip("ray", reason="needs Ray (pip install 'handcap[farm]'; bash tools/dev.sh installs it)")
pytest.importorskip("bpy", reason="needs bpy 5.0.1 (the merge converts in bpy)")
pytest.importorskip("torch", reason="needs the inference requirements")

from .ray_cluster import LocalRayCluster  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]
SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"
CHUNKS = ["--chunk-frames", "30", "--overlap", "10"]  # the sample's 90 frames -> 4 chunks


@pytest.fixture(scope="module")
def cluster():
    c = LocalRayCluster(workers=1, cpus=1)
    try:
        yield c
    finally:
        c.stop()
    assert not c.processes(), "Ray processes of the test cluster are still running"


def _cmd(kind: str, *args) -> list[str]:
    return [sys.executable, "-m", "handcap", kind, *map(str, args)]


def _farm_args(cluster, *args) -> list[str]:
    return _cmd("farm", *args, "--address", cluster.address, "--node-ip-address", "127.0.0.1", "--format", "bvh")


def _run(cmd, env=None, timeout=900):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# A farm worker has one CPU, so its numpy/BLAS and torch run one thread where ``convert`` runs two; the
# summation order differs and the fit ends a hair apart. Measured on an AMD EPYC (farm vs convert): 99 % of
# keypoints within 0.002 mm and poses within 4e-5 rad, but a few ill-conditioned frames move by up to 0.8 mm /
# 0.011 rad (BVH channels 0.035 deg). So: tight on the 99th percentile, loose on the worst value. Bit
# equality holds only between like workers (the other tests here).
THREADS_TOL_M = (1e-4, 3e-3)  # (99th percentile, worst)
THREADS_TOL_RAD = (1e-3, 0.05)
THREADS_TOL_DEG = 1.0


def _assert_nearly_equal(a: np.ndarray, b: np.ndarray, tol: tuple[float, float], what: str) -> None:
    assert a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b)), what
    diff = np.abs(a - b)[~np.isnan(a)]
    p99, worst = np.percentile(diff, 99), diff.max()
    assert p99 <= tol[0] and worst <= tol[1], f"{what}: differs from convert's by {p99:.2e} (p99), {worst:.2e} (max)"


def _assert_same_bvh(
    got: bytes, ref: bytes, name: str, tol_m: float = THREADS_TOL_M[1], tol_deg: float = THREADS_TOL_DEG
) -> None:
    """Same hierarchy and frame count byte for byte, the same motion within the tolerance (default: the
    thread-count one; root positions in metres, angles in degrees, compared modulo 360)."""
    (g_head, g_motion), (r_head, r_motion) = (b.decode().split("MOTION", 1) for b in (got, ref))
    assert g_head == r_head, f"{name}: hierarchy differs from convert's"
    g_lines, r_lines = g_motion.strip().splitlines(), r_motion.strip().splitlines()
    assert g_lines[:2] == r_lines[:2], f"{name}: frame count or time differs from convert's"
    g, r = (np.array([[float(v) for v in line.split()] for line in lines[2:]]) for lines in (g_lines, r_lines))
    assert g.shape == r.shape and len(g) > 0, name
    np.testing.assert_allclose(g[:, :3], r[:, :3], rtol=0, atol=tol_m, err_msg=f"{name}: root position")
    turn = (g[:, 3:] - r[:, 3:] + 180.0) % 360.0 - 180.0
    assert np.abs(turn).max() <= tol_deg, f"{name}: angles differ by up to {np.abs(turn).max():.4f} deg"


def _assert_same_outputs(got: dict[str, bytes], ref: dict[str, bytes]) -> None:
    """The same files; BVH motion alike to a rounding step of the fit (two runs on like workers: MKL's kernel
    choice may move a few keypoints by a micrometre, see tests/test_farm_cli.py), everything else byte for byte."""
    assert sorted(got) == sorted(ref)
    for name, data in ref.items():
        if name.endswith(".bvh"):
            _assert_same_bvh(got[name], data, name, tol_m=1e-5, tol_deg=0.01)
        else:
            assert got[name] == data, name


def _sample_clip():
    spec = importlib.util.spec_from_file_location("sample_clip", REPO / "benchmarks" / "sample_clip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def second_clip(tmp_path_factory) -> Path:
    """A second clip: the sample's frames 20-79 backwards, written once for every run of the library."""
    return _sample_clip().write_reversed(tmp_path_factory.mktemp("library") / "backwards.mp4", 20, 80)


@pytest.fixture(scope="module")
def undisturbed(cluster, tmp_path_factory) -> dict[str, bytes]:
    """Outputs of an undisturbed farm run of the sample clip in 4 chunks."""
    out = tmp_path_factory.mktemp("undisturbed")
    code, log = _run(_farm_args(cluster, SAMPLE, "-o", out, *CHUNKS), env=cluster.env)
    assert code == 0, log
    assert log.count(" done in ") == 4 and "chunks: 4 run, 0 reused" in log, log
    loading = r"( \([\d.]+ s of it loading the networks\))?"  # a worker's first chunk says so
    assert re.search(r"chunk 1/4 \(frames 0-29\) done in [\d.]+ s" + loading + ", ETA", log), log
    return _outputs(out)


def test_two_clip_library_gives_the_same_outputs_as_convert_and_a_failing_input_is_reported(
    cluster, second_clip, tmp_path
):
    """One farm run of a library with a broken file among two clips (formerly two tests that each captured the
    sample clip whole on the cluster): the broken one is reported and fails the run (exit 1), the others are
    converted exactly as ``convert`` converts them, and nothing is written for the broken one."""
    library = [SAMPLE, second_clip]
    code, log = _run(_cmd("convert", *library, "-o", tmp_path / "convert", "--format", "bvh", "--keep-captures"))
    assert code == 0, log
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00 not a video")
    # whole clips in one chunk each: the farm runs exactly the capture convert runs, on two machines' workers
    farm = [broken, *library]
    code, log = _run(_farm_args(cluster, *farm, "-o", tmp_path / "farm", "--keep-captures"), env=cluster.env)
    assert code == 1, log
    assert "broken.mp4: FAILED:" in log and "farm: converted 2 of 3 inputs" in log, log
    assert "chunks: 2 run, 0 reused" in log, log
    ref, got = _outputs(tmp_path / "convert"), _outputs(tmp_path / "farm")
    assert (
        sorted(ref)
        == sorted(got)
        == sorted(f"{s}{e}" for s in ("two_hands", "backwards") for e in (".L.bvh", ".R.bvh", ".npz"))
    )
    for name in ref:
        if name.endswith(".bvh"):
            _assert_same_bvh(got[name], ref[name], name)
    from handcap.core.capture import read_capture

    for stem in ("two_hands", "backwards"):
        a, b = read_capture(tmp_path / "convert" / f"{stem}.npz"), read_capture(tmp_path / "farm" / f"{stem}.npz")
        assert sorted(a.hands) == sorted(b.hands) == ["left", "right"]
        ca, cb = a.info["camera"], b.info["camera"]
        assert ca["source"] == cb["source"] and abs(ca["focal_px"] - cb["focal_px"]) <= 0.05, (ca, cb)
        for side in a.hands:
            np.testing.assert_array_equal(a.hands[side].valid, b.hands[side].valid)
            _assert_nearly_equal(a.hands[side].kp3d, b.hands[side].kp3d, THREADS_TOL_M, f"{stem} {side} kp3d, m")
            _assert_nearly_equal(a.hands[side].theta, b.hands[side].theta, THREADS_TOL_RAD, f"{stem} {side} theta, rad")


def test_a_killed_worker_still_yields_identical_outputs(cluster, undisturbed, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _farm_args(cluster, SAMPLE, "-o", out, *CHUNKS),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=cluster.env,
    )
    killed = None
    try:
        deadline = time.monotonic() + 600
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            busy = cluster.workers_running("timed_chunk_job")
            if busy:
                time.sleep(1.0)  # well inside the task (its landmarks take seconds)
                if busy[0] in cluster.workers_running("timed_chunk_job"):
                    os.kill(busy[0], signal.SIGKILL)
                    killed = busy[0]
            time.sleep(0.05)
        log, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no chunk task was seen running to kill"
    assert proc.returncode == 0, log
    assert "chunks: 4 run, 0 reused" in log, log
    _assert_same_outputs(_outputs(out), undisturbed)


def test_a_rerun_after_an_interruption_redoes_no_finished_chunk(cluster, undisturbed, tmp_path):
    out = tmp_path / "out"
    manifest = out / ".handcap-farm" / "manifest.json"
    proc = subprocess.Popen(
        _farm_args(cluster, SAMPLE, "-o", out, *CHUNKS),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=cluster.env,
    )
    try:
        deadline = time.monotonic() + 600
        finished: dict = {}
        while len(finished) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            if manifest.is_file():
                clips = json.loads(manifest.read_text())["clips"]
                finished = next(iter(clips.values()))["chunks"] if clips else {}
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.kill()  # the driver dies mid-run: its remaining tasks die with it
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    clip_dir = next(p for p in manifest.parent.iterdir() if p.is_dir())
    kept = {p.name: p.stat().st_mtime_ns for p in clip_dir.glob("chunk_*.npz")}
    done = json.loads(manifest.read_text())["clips"]
    n_done = len(next(iter(done.values()))["chunks"])
    assert 2 <= n_done < 4 and len(kept) == n_done
    assert not list(out.glob("*.bvh")), "no output may exist before the merge"
    code, log = _run(_farm_args(cluster, SAMPLE, "-o", out, *CHUNKS), env=cluster.env)
    assert code == 0, log
    assert f"{n_done} of 4 chunk(s) already finished, reused" in log, log
    assert f"chunks: {4 - n_done} run, {n_done} reused" in log and log.count(" done in ") == 4 - n_done, log
    assert {p.name: p.stat().st_mtime_ns for p in clip_dir.glob("chunk_*.npz") if p.name in kept} == kept
    _assert_same_outputs(_outputs(out), undisturbed)
    code, log = _run(_farm_args(cluster, SAMPLE, "-o", out, *CHUNKS), env=cluster.env)
    assert code == 0 and "up to date" in log and "chunks: 0 run, 0 reused" in log, log
