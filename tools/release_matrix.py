"""The tested Blender release matrix: HandCap's release tests (tests/release/) on bpy 4.2 LTS, 4.5 LTS and 5.0.

    bash tools/dev.sh test-matrix                     # set up .venv, then this script with .venv's Python
    .venv/bin/python tools/release_matrix.py --releases 4.5 --no-setup

The tests: tests/release/ and the torch-free Blender-side suites (``TESTS``), marked ``blender``.

1. Each release gets its own venv (``.venv-bpy42`` ...) with that release's bpy, numpy < 2, pytest and HandCap
   itself (editable, no other dependencies: no torch). A stamp of the requirements decides whether a venv is
   up to date, as ``tools/dev.sh setup`` does for ``.venv``.
2. The main venv (this Python, which has torch) captures the sample clip once into ``.cache/release-matrix/``;
   every release imports that same capture (``HANDCAP_RELEASE_CAPTURE``).
3. Each release runs the tests in its venv, one test path per process (see ``run_release``), one release
   after the other, each process under a time limit (a hang at exit fails instead of blocking CI). A
   skipped test counts as a failure: a release test that skipped proved nothing about that release.

Prints one line per release (passed / failed / skipped, wall time) and the load average, and exits non-zero
unless every release passed every test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"
CACHE = REPO / ".cache" / "release-matrix"
#: The release tests, then the Blender-side suites that need no torch (keys, actions, smoothing, camera,
#: retarget, export), without those that need ../shared/data (their captures need torch).
TESTS = ["tests/release"] + [
    f"tests/test_{name}.py" for name in ("blender_import", "blender_smoothing", "blender_camera", "retarget", "export")
]
SELECT = "blender and not shared_data"
#: What every release venv needs besides bpy: numpy and pytest, and opencv for the camera tests' test videos.
REQUIREMENTS = ["numpy>=1.24,<2", "pytest>=8", "opencv-python-headless>=4.8,<4.13"]
#: The newest bpy of each supported release line on PyPI for Python 3.11.
RELEASES = {"4.2": "4.2.23", "4.5": "4.5.15", "5.0": "5.0.1"}
TIME_LIMIT_S = 600


@dataclass
class ReleaseResult:
    """One release's run. Counts are pytest's (junit XML); wall_s in seconds, venv set-up excluded."""

    release: str
    bpy: str
    passed: int
    failed: int
    skipped: int
    wall_s: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.skipped == 0 and self.passed > 0 and not self.note

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        note = f" ({self.note})" if self.note else ""
        return (
            f"Blender {self.release} (bpy {self.bpy}): {verdict}: {self.passed} passed, {self.failed} failed, "
            f"{self.skipped} skipped in {self.wall_s:.0f} s{note}"
        )


def venv_dir(release: str) -> Path:
    return REPO / f".venv-bpy{release.replace('.', '')}"


def venv_python(release: str) -> Path:
    return venv_dir(release) / "bin" / "python"


def _stamp(release: str) -> str:
    wanted = "\n".join([f"bpy=={RELEASES[release]}", *REQUIREMENTS, (REPO / "pyproject.toml").read_text()])
    return hashlib.sha256(wanted.encode()).hexdigest()


def _pip(python: Path, log: Path, *args: str) -> None:
    with log.open("a") as out:
        proc = subprocess.run([str(python), "-m", "pip", *args], stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text())
        raise SystemExit(f"release matrix: error: pip {' '.join(args)} failed (full log: {log})")


def ensure_venv(release: str) -> None:
    """Create or update ``release``'s venv unless its stamp says it is up to date."""
    venv, python = venv_dir(release), venv_python(release)
    stamp_file = venv / ".handcap-stamp"
    want = _stamp(release)
    if python.is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == want:
        print(f"setup: {venv.name} is up to date")
        return
    print(f"setup: creating/updating {venv.name} (bpy {RELEASES[release]}; the first run downloads it)")
    if not python.is_file():
        # The base interpreter (3.11), not .venv's: a venv made from inside a venv would still be plain.
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    log = venv / "setup.log"
    log.write_text("")
    _pip(python, log, "install", "--upgrade", "pip")
    _pip(python, log, "install", f"bpy=={RELEASES[release]}", *REQUIREMENTS)
    # HandCap itself, so the tests' helpers import ``handcap``; its own dependency is numpy only.
    _pip(python, log, "install", "--no-deps", "-e", str(REPO))
    stamp_file.write_text(want + "\n")


def make_capture(out: Path) -> Path:
    """Capture the sample clip into ``out`` with this (the main venv's) Python; every release imports it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # The sample clip is rendered with a 50 degree horizontal field of view (tools/render_sample.py).
    cmd = [sys.executable, "-m", "handcap", "capture", str(SAMPLE), "--fov", "50", "--overwrite", "-o", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"release matrix: error: the capture failed:\n{proc.stdout}{proc.stderr}")
    print(f"capture: {out} in {time.monotonic() - t0:.0f} s (made once, read by every release)")
    return out


def _counts(junit: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from pytest's junit XML; failures and errors both count as failed."""
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return total - failed - skipped, failed, skipped


def _run_file(release: str, test: str, index: int, capture: Path, cache: Path, limit_s: float):
    """pytest on one test path in ``release``'s venv: ((passed, failed, skipped), note)."""
    junit = cache / f"junit-{release}-{index}.xml"
    junit.unlink(missing_ok=True)
    cmd = [str(venv_python(release)), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    cmd += ["-m", SELECT, test]
    env = dict(os.environ, HANDCAP_RELEASE_CAPTURE=str(capture))
    print(f"--- Blender {release}: {test}", flush=True)
    try:
        rc = subprocess.run(cmd, cwd=REPO, env=env, timeout=limit_s).returncode
    except subprocess.TimeoutExpired:
        return (0, 0, 0), f"{test}: killed after {limit_s:.0f} s"
    if not junit.is_file():
        return (0, 0, 0), f"{test}: pytest exit {rc}, no report"
    counts = _counts(junit)
    return counts, (f"{test}: pytest exit {rc}" if rc != 0 and counts[1] == 0 else "")


def run_release(release: str, capture: Path, cache: Path, tests: list[str], limit_s: float) -> ReleaseResult:
    """Each test path in a process of its own: bpy 4.2 as a module can abort in ``read_homefile`` after many
    files were loaded and glTF round trips made in one process (seen twice in nine runs), a crash that would
    otherwise take the whole release's report with it."""
    t0 = time.monotonic()
    totals, notes = [0, 0, 0], []
    for index, test in enumerate(tests):
        counts, note = _run_file(release, test, index, capture, cache, limit_s)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        notes += [note] if note else []
    return ReleaseResult(release, RELEASES[release], *totals, time.monotonic() - t0, "; ".join(notes))


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run HandCap's release tests on every supported Blender release")
    parser.add_argument("--releases", default=",".join(RELEASES), help=f"comma list of {', '.join(RELEASES)}")
    parser.add_argument("--no-setup", action="store_true", help="use the release venvs as they are")
    parser.add_argument("--capture", type=Path, help="an existing capture of the sample clip (default: capture it)")
    parser.add_argument("--capture-only", type=Path, metavar="OUT.npz", help="only capture the sample clip to OUT")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds per test process")
    parser.add_argument("tests", nargs="*", default=TESTS, help="test paths (default: TESTS above)")
    args = parser.parse_args(argv)
    if args.capture_only is not None:
        make_capture(args.capture_only.resolve())
        return 0
    releases = [r.strip() for r in args.releases.split(",") if r.strip()]
    unknown = [r for r in releases if r not in RELEASES]
    if unknown or not releases:
        parser.error(f"unknown release {', '.join(unknown) or '(none)'}; choose from {', '.join(RELEASES)}")
    if args.capture is not None and not args.capture.is_file():
        parser.error(f"{args.capture}: no such capture file")
    t0 = time.monotonic()
    print(f"release matrix: {', '.join(releases)}; start {_load()}")
    if not args.no_setup:
        for release in releases:
            ensure_venv(release)
    missing = [venv_dir(r).name for r in releases if not venv_python(r).is_file()]
    if missing:
        raise SystemExit(f"release matrix: error: no venv {', '.join(missing)} (run without --no-setup)")
    capture = args.capture.resolve() if args.capture else make_capture(CACHE / "two_hands.npz")
    results = [run_release(r, capture, CACHE, args.tests, args.time_limit) for r in releases]
    print("=== release matrix")
    for res in results:
        print(res.line())
    passed = sum(r.ok for r in results)
    print(f"{passed} of {len(results)} releases pass; matrix wall time {time.monotonic() - t0:.0f} s; end {_load()}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
