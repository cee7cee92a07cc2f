"""Download the mediapipe 0.10.21 wheel (as a file, never installed) into <repo>/.cache/wheels.

Install-time step of the project's setup, used by tools/convert_mediapipe.py and the parity tests: this wheel
is the last one that carries palm_detection_full.tflite and hand_landmark_full.tflite as plain files. The
wheel is pinned by file name and sha256; the step is skipped when the verified file is already there.

    python tools/fetch_mediapipe_wheel.py [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSION = "0.10.21"
WHEEL_NAME = f"mediapipe-{VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
DEFAULT_DEST = REPO / ".cache" / "wheels"


class FetchError(RuntimeError):
    """The wheel could not be downloaded or is not the pinned file."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(dest: Path = DEFAULT_DEST) -> Path:
    """Return the path of the verified wheel in ``dest``, downloading it with pip first if needed."""
    dest = Path(dest)
    wheel = dest / WHEEL_NAME
    if wheel.is_file() and sha256_of(wheel) == WHEEL_SHA256:
        return wheel
    if wheel.is_file():
        raise FetchError(f"{wheel} exists but its sha256 differs from the pinned one; delete it and run again")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
           "--platform", "manylinux_2_28_x86_64", f"mediapipe=={VERSION}", "-d", str(dest)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"pip download failed (exit {result.returncode}):\n{result.stderr.strip()[-2000:]}")
    if not wheel.is_file():
        raise FetchError(f"pip download finished but {wheel} is not there:\n{result.stdout.strip()[-2000:]}")
    if sha256_of(wheel) != WHEEL_SHA256:
        raise FetchError(f"downloaded {wheel} but its sha256 differs from the pinned {WHEEL_SHA256}")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="download folder (default: .cache/wheels)")
    args = parser.parse_args(argv)
    try:
        wheel = fetch_wheel(args.dest)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
