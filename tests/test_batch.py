"""Headless batch conversion: ``python -m handcap convert``, the ``blender -c handcap`` command function and
``tools/blender_batch.py`` all run one core; failures of one input never stop the others."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import REPO, shared_path
from .retarget_rigs import build_mixamo_rig, synthetic_capture

pytestmark = pytest.mark.blender


def _convert(*args, cwd=None, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", "handcap", "convert", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def captures(tmp_path):
    """Two small capture files (a clip with both hands, a one-hand photo) written with the real writer."""
    from handcap.core.capture import write_capture

    folder = tmp_path / "in"
    folder.mkdir()
    write_capture(folder / "clip.npz", synthetic_capture(n_frames=5, source="clip.mp4"))
    write_capture(folder / "photo.npz", synthetic_capture(n_frames=1, sides=("left",), source="photo.jpg"))
    return folder


@pytest.mark.slow
@pytest.mark.shared_data
def test_two_videos_and_a_non_video_give_two_outputs_one_error_exit_1(tmp_path):
    videos = sorted(shared_path("videos").glob("*.mp4"))[:2]
    if len(videos) < 2:
        pytest.skip("needs two videos in ../shared/data/videos")
    notes = tmp_path / "notes.txt"
    notes.write_text("not footage")
    out = tmp_path / "out"
    code, stdout, stderr = _convert(*videos, notes, "-o", out, "--format", "blend", "--frames", "30:33", "--no-mesh")
    assert code == 1, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{v.stem}.blend" for v in videos] + ["handcap"])
    # each .blend's capture lasts beside it, for the overlay readouts
    assert sorted(p.name for p in (out / "handcap").iterdir()) == sorted(f"{v.stem}.npz" for v in videos)
    assert "[3/3] notes.txt: FAILED: not a video, photo or HandCap capture (.npz)" in stdout
    assert "converted 2 of 3 inputs" in stdout and "ETA" in stdout
    assert stdout.count("FAILED") == 1


def test_one_broken_capture_is_reported_and_the_rest_converted(captures, tmp_path):
    (captures / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "out"
    code, stdout, stderr = _convert(captures, "-o", out, "--format", "fbx", "--no-mesh")
    assert code == 1, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip.fbx", "photo.fbx"]
    assert "broken.npz: FAILED:" in stdout and "corrupt" in stdout
    assert "converted 2 of 3 inputs" in stdout and "failed: " in stdout


def test_bad_options_are_refused_before_anything_is_written(blender, captures, tmp_path, capsys):
    from handcap.cli import main

    def _convert(*args):  # in-process: these runs stop before any Blender data is touched
        code = main(["convert", *map(str, args)])
        out = capsys.readouterr()
        return code, out.out, out.err

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    code, _, stderr = _convert(captures, "-o", not_a_folder)
    assert code == 2 and "exists and is not a folder" in stderr
    code, _, stderr = _convert(captures, "-o", not_a_folder / "out")
    assert code == 2 and "cannot create the output folder (Not a directory)" in stderr
    code, _, stderr = _convert(captures, "-o", tmp_path / "o1", "--retarget", tmp_path / "missing.blend")
    assert code == 2 and "no such rig file" in stderr
    code, _, stderr = _convert(tmp_path / "nothing*.mp4", "-o", tmp_path / "o2")
    assert code == 2 and "no input files found" in stderr
    code, _, stderr = _convert(captures, "-o", tmp_path / "o3", "--mapping", "no_such_rig")
    assert code == 2 and "neither a built-in preset" in stderr
    if sys.platform.startswith("linux"):
        code, _, stderr = _convert(captures, "-o", "/proc/handcap-out")
        assert code == 2 and "cannot create the output folder" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "in", "o1", "o2", "o3"]
    assert all(not any((tmp_path / d).iterdir()) for d in ("o1", "o2", "o3"))


def test_blender_command_retargets_onto_a_rig_file(hc, captures, tmp_path):
    bpy = hc.bpy
    rig_name = build_mixamo_rig(bpy)
    rig_file = tmp_path / "character.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(rig_file), copy=True)
    out = tmp_path / "out"
    cli = hc.mod("blender_cli")  # the function ``blender -b -c handcap`` calls
    args = ["convert", str(captures), "-o", str(out), "--format", "blend", "--retarget", str(rig_file)]
    assert cli.main(args + ["--mapping", "mixamo"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.blend", "handcap", "photo.blend"]
    bpy.ops.wm.open_mainfile(filepath=str(out / "clip.blend"))
    rig = bpy.data.objects[rig_name]
    assert rig.animation_data.action.name.startswith(f"HC_{rig_name}_retarget")
    hands = [o for o in bpy.data.objects if o.get("handcap_side")]
    assert sorted(o["handcap_side"] for o in hands) == ["left", "right"]


def test_clips_are_smoothed_by_default_and_the_raw_keys_kept(hc, captures, tmp_path):
    """The fit leaves temporal smoothing to the smoothing step: batch output gets the default smoothing (the
    clip's hands, not the one-frame photo), the raw keys stay on the armature; --no-smooth keeps them raw."""
    bpy = hc.bpy
    smooth = hc.mod("builders.smooth")
    cli = hc.mod("blender_cli")
    for flags, smoothed in (([], True), (["--no-smooth"], False)):
        out = tmp_path / ("smoothed" if smoothed else "raw")
        assert cli.main(["convert", str(captures), "-o", str(out), "--format", "blend", "--no-mesh", *flags]) == 0
        for name, expect in (("clip", smoothed), ("photo", False)):
            bpy.ops.wm.open_mainfile(filepath=str(out / f"{name}.blend"))
            hands = [o for o in bpy.data.objects if o.get("handcap_side")]
            assert hands
            for arm in hands:
                assert arm.handcap_smoothing.is_smoothed == expect, (name, arm.name)
                raw = smooth.raw_action(arm, create=False)
                assert (raw is not None and raw != arm.animation_data.action) == expect, (name, arm.name)


def test_blender_batch_script_runs_from_the_checkout(captures, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "blender_batch.py"), "--", "convert", str(captures / "clip.npz")]
        + ["-o", str(out), "--format", "bvh"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip.L.bvh", "clip.R.bvh"]
    assert "converted 1 of 1 inputs" in proc.stdout


def test_capture_options_reach_the_worker_as_valid_capture_arguments():
    """Inside Blender each video is captured by ``python -m handcap capture`` in the worker; the batch's
    capture options become one CaptureRequest whose command line must parse there to the same request."""
    from handcap.cli import build_parser
    from handcap.core.request import CaptureRequest

    parser = build_parser()
    given = ["--frames", "30:", "--stride", "2", "--hands", "1", "--fov", "62.5", "--device", "cpu", "--mirrored"]
    given += ["--fit", "polish_iterations=4", "--fit", "w_rot_accel=1e-4", "--min-confidence", "0.35"]
    convert = parser.parse_args(["convert", "clip.mp4", "-o", "out", *given])
    request = CaptureRequest.from_args("clip.mp4", convert)
    worker_argv = request.argv("take.npz", progress_json=True)
    capture = parser.parse_args(worker_argv)
    assert CaptureRequest.from_args(capture.input, capture) == request
    assert capture.progress_json and capture.output == "take.npz"
    assert request.frames == (30, None) and request.mirrored and request.fov_deg == 62.5
    assert request.fit == {"polish_iterations": 4, "w_rot_accel": 1e-4} and request.min_confidence == 0.35
