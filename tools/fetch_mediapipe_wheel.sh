#!/usr/bin/env bash
# Setup step (called by tools/dev.sh): download the pinned mediapipe 0.10.21 wheel FILE into .cache/wheels.
# The work is done by tools/fetch_mediapipe_wheel.py (stdlib only, idempotent, sha256-pinned).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$py" ] || py=python3
exec "$py" "$repo/tools/fetch_mediapipe_wheel.py" "$@"
