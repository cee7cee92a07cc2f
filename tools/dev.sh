#!/usr/bin/env bash
# One entry point for a fresh clone:  bash tools/dev.sh demo | test | setup
#   setup: Python 3.11 venv at .venv with everything from pyproject.toml (torch 2.13.0 CPU, bpy 5.0.1, ...),
#          plus the MediaPipe wheel file for the weight converter and parity tests (.cache/, never installed).
#   demo:  setup, then capture the project's own sample clip and write out/demo.blend.
#   test:  setup, then the whole test suite (plain Python and Blender tests).
#   test-matrix: setup, then the release tests on Blender 4.2 LTS, 4.5 LTS and 5.0, each in its own venv
#          (.venv-bpy42 ...; tools/release_matrix.py stamps and updates them like setup does .venv).
# A second run reuses .venv (a stamp of pyproject.toml decides) and starts in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
STAMP=$VENV/.handcap-stamp

find_python311() {
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$c"; return 0
    fi
  done
  echo "error: Python 3.11 is required (bpy 5.0.1 is built for it)" >&2; return 1
}

quiet_pip() {
  local log=$1; shift
  if ! "$PY" -m pip "$@" >>"$log" 2>&1; then
    grep -v "WARNING: Location '.*' is ignored" "$log" >&2
    echo "error: pip $* failed (full log: $log)" >&2
    return 1
  fi
}

setup() {
  local want
  want=$(cat pyproject.toml tools/dev.sh | sha256sum | cut -d' ' -f1)
  if [ -x "$PY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "setup: .venv is up to date"
  else
    echo "setup: creating/updating .venv (first run downloads bpy and friends; torch 2.13.0 comes from disk)"
    [ -x "$PY" ] || "$(find_python311)" -m venv "$VENV"
    # pip's output goes to a log: its notes about this machine's unused package folders ("Location ... is
    # ignored") and setuptools' build chatter are noise; on a failure the log is shown whole.
    local log=$VENV/setup.log
    : > "$log"
    quiet_pip "$log" install --upgrade pip
    # torch first and pinned, so no other requirement can pull a multi-GB CUDA build.
    quiet_pip "$log" install torch==2.13.0
    quiet_pip "$log" install -e ".[inference,mano,test,dev,farm]"
    echo "$want" > "$STAMP"
  fi
  if [ -f tools/fetch_mediapipe_wheel.sh ]; then
    bash tools/fetch_mediapipe_wheel.sh
  fi
}

case "${1:-}" in
  setup) setup ;;
  test)
    setup
    shift
    rc=0
    "$PY" -m pytest "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
    exit "$rc"
    ;;
  test-matrix)
    setup
    shift
    exec "$PY" tools/release_matrix.py "$@"
    ;;
  demo)
    setup
    shift
    exec "$PY" tools/demo.py "$@"
    ;;
  *) echo "usage: bash tools/dev.sh setup|test|test-matrix|demo [args]" >&2; exit 2 ;;
esac
