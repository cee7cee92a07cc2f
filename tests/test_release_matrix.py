"""tools/release_matrix.py's own logic (no bpy): pytest's counts read from its junit report, and a release
passes only when nothing failed and nothing skipped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO
from .release.conftest import release_matrix_module


@pytest.fixture(scope="module")
def matrix():
    return release_matrix_module()


def test_counts_come_from_pytests_report_and_a_skip_fails_the_release(matrix, tmp_path):
    (tmp_path / "test_three.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert False\n"
        "def test_skip(): pytest.skip('no')\n"
        "@pytest.fixture\ndef broken(): raise RuntimeError\n"
        "def test_error(broken): pass\n"
    )
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_three.py"]
    subprocess.run(cmd, cwd=tmp_path, capture_output=True)
    assert matrix._counts(junit) == (1, 2, 1)
    assert not matrix.ReleaseResult("4.5", "4.5.15", 1, 0, 1, 3.0).ok
    assert not matrix.ReleaseResult("4.5", "4.5.15", 0, 0, 0, 3.0).ok
    assert not matrix.ReleaseResult("4.5", "4.5.15", 5, 0, 0, 3.0, note="killed after 1200 s").ok
    passed = matrix.ReleaseResult("4.5", "4.5.15", 5, 0, 0, 3.0)
    assert passed.ok and passed.line() == "Blender 4.5 (bpy 4.5.15): PASS: 5 passed, 0 failed, 0 skipped in 3 s"


def test_unknown_release_and_missing_capture_are_refused():
    tool = str(REPO / "tools" / "release_matrix.py")
    proc = subprocess.run([sys.executable, tool, "--releases", "4.3"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown release 4.3; choose from 4.2, 4.5, 5.0" in proc.stderr
    proc = subprocess.run([sys.executable, tool, "--capture", "/nonexistent.npz"], capture_output=True, text=True)
    assert proc.returncode == 2 and "/nonexistent.npz: no such capture file" in proc.stderr


def test_venv_names_and_stamps_follow_the_release(matrix):
    assert matrix.venv_dir("4.2").name == ".venv-bpy42" and matrix.venv_dir("5.0").name == ".venv-bpy50"
    stamps = {r: matrix._stamp(r) for r in matrix.RELEASES}
    assert len(set(stamps.values())) == len(stamps)  # each release's stamp names its own bpy
