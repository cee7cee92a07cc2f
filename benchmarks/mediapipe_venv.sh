#!/usr/bin/env bash
# Creates a throw-away virtual environment with MediaPipe 0.10.21 for the comparison benchmarks.
# MediaPipe is never a HandCap dependency: it lives only in <repo>/.cache/mediapipe-venv (git-ignored).
# Usage: bash benchmarks/mediapipe_venv.sh   -> prints the venv's python path on the last line.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HANDCAP_MEDIAPIPE_VENV:-$repo/.cache/mediapipe-venv}"
py="${PYTHON:-python3.11}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import mediapipe, sys; sys.exit(mediapipe.__version__ != '0.10.21')" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mediapipe==0.10.21" "numpy<2"
fi
echo "$venv/bin/python"
