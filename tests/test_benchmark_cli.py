"""``python -m handcap benchmark``: stage timings on the bundled sample clip, and clear errors for bad input.
(The figures' size depends on the machine: only their presence, sign and the detection share are asserted.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

from handcap.cli import main


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_benchmark_on_the_sample_clip_reports_every_stage():
    code, out, err = run_cli("benchmark", "--device", "cpu", "--max-frames", "6", "--rounds", "1", "--batch", "1", "2")
    assert code == 0, err
    assert not out.lstrip().startswith("{")  # plain text unless --json
    for label in ("decoding", "landmarks (tracking)", "fit", "landmark net, batch   2"):
        assert label in out, out
    code, out, err = run_cli(
        "benchmark", "--device", "cpu", "--max-frames", "6", "--rounds", "1", "--batch", "2", "--json"
    )
    assert code == 0, err
    fig = json.loads(out)
    assert fig["frames"] == 6 and fig["size"] == [640, 480] and fig["device"] == "cpu"
    # The sample clip shows both hands in every frame (rendered so by tools/render_sample.py).
    assert fig["two_hand_frames"] == 1.0
    assert fig["fit_frames_x_hands"] == 12 and fig["fit_s"] > 0
    assert fig["landmarks_fps"] > 0 and fig["decode_fps"] > 0
    assert set(fig["landmark_net_crops_per_s"]) == {"2"} and fig["landmark_net_crops_per_s"]["2"] > 0


def test_benchmark_bad_input_is_a_clear_error(tmp_path):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"not a video at all")
    code, _, err = run_cli("benchmark", str(junk), "--device", "cpu")
    assert code == 2 and "clip.mp4" in err and "Traceback" not in err
    code, _, err = run_cli("benchmark", "--rounds", "0")
    assert code == 2 and "--rounds" in err
    code, _, err = run_cli("benchmark", str(tmp_path / "missing.mp4"), "--device", "cpu")
    assert code == 2 and "missing.mp4" in err


def test_cli_sets_openmp_wait_policy_before_torch_loads():
    """Spinning OpenMP waits made the landmark pass 5-30x slower on a busy machine; the policy only counts when set
    before torch loads OpenMP, so the command line sets it on import, without importing torch itself."""
    code = "import os, sys, handcap.cli; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"], out.stdout + out.stderr
