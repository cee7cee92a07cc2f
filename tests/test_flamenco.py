"""The Flamenco job type (farm/flamenco/handcap_convert.js): its node test suite, and its chunk plan against
inference/chunks.py's, so the Flamenco farm asks for exactly the chunks that `convert --chunk-out` accepts."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from handcap.inference.chunks import plan_chunks

from .conftest import REPO

NODE = shutil.which("node")
SCRIPT = REPO / "farm" / "flamenco" / "handcap_convert.js"
pytestmark = pytest.mark.skipif(NODE is None, reason="needs node (Flamenco job scripts are JavaScript)")


def test_the_job_types_node_tests_pass():
    proc = subprocess.run([NODE, "--test", str(SCRIPT.parent)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# fail 0" in proc.stdout and "# pass 5" in proc.stdout, proc.stdout


def test_the_job_type_plans_the_same_chunks_as_python():
    cases = [[1, 300, 30], [90, 60, 15], [90, 30, 10], [210, 60, 15], [1000, 300, 30], [301, 300, 30], [7, 4, 2]]
    js = (
        "const vm = require('node:vm'); const fs = require('node:fs');"
        "const ctx = vm.createContext({ author: {} });"
        f"vm.runInContext(fs.readFileSync({json.dumps(str(SCRIPT))}, 'utf8'), ctx);"
        f"const cases = {json.dumps(cases)};"
        "console.log(JSON.stringify(cases.map(([n, c, o]) => vm.runInContext(`planChunks(${n}, ${c}, ${o})`, ctx)"
        ".map((k) => [k.start, k.stop]))));"
    )
    proc = subprocess.run([NODE, "-e", js], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for (n, c, o), plan in zip(cases, got, strict=True):
        assert plan == [[k.start, k.stop] for k in plan_chunks(range(n), c, o)], (n, c, o)
