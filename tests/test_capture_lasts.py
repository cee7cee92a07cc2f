"""Captures made inside Blender last: kept out of the worker's temporary folder, moved beside the .blend when it
is first saved, found again after the .blend (with its folder) moves; footage found by absolute or ``//`` path;
``convert`` writes a .blend with the matched camera and its capture beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import REPO
from .retarget_rigs import synthetic_capture

pytestmark = pytest.mark.blender

SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"


@pytest.fixture
def worker_prefs(hc):
    prefs = hc.prefs
    saved = prefs.python_path
    prefs.python_path = ""  # the worker runs in this interpreter (torch is installed here)
    yield prefs
    prefs.python_path = saved


def _rigs(bpy):
    return [o for o in bpy.data.objects if o.type == "ARMATURE" and "handcap_side" in o]


def test_capture_hands_keeps_its_capture_and_it_follows_the_blend(hc, worker_prefs, tmp_path):
    bpy = hc.bpy
    store = hc.mod("builders.capture_store")
    camera = hc.mod("builders.camera")
    bpy.ops.wm.read_homefile(use_empty=True)
    project = tmp_path / "project"
    (project / "footage").mkdir(parents=True)
    clip = project / "footage" / "two_hands.mp4"
    shutil.copyfile(SAMPLE, clip)

    result = bpy.ops.handcap.capture_clip(
        source="FILE", filepath=str(clip), range_mode="CUSTOM", frame_first=1, frame_last=6, camera="FOV", fov=50.0
    )
    assert result == {"FINISHED"}
    rigs = _rigs(bpy)
    assert len(rigs) == 2
    kept = Path(store.resolve_capture(rigs[0]))
    user_store = Path(hc.mod("operators.capture").user_path("captures"))
    # unsaved .blend: the capture lives in the extension's user folder, not in a deleted temporary one
    assert kept.is_file() and kept.parent == user_store, kept
    assert {store.resolve_capture(r) for r in rigs} == {str(kept)}
    # Match Camera and Measure Overlay work right after the capture
    space = camera.camera_space_of(rigs[0])
    assert camera.match_camera(bpy.context, space, camera.MatchOptions()).clip is not None
    errors = camera.reprojection_errors(bpy.context, rigs)
    assert set(errors) == {r.name for r in rigs} and all(e.mean_px < 20 for e in errors.values()), errors
    # the footage is recorded absolute, whatever folder the capture ran from
    assert rigs[0]["handcap_source"] == str(clip.resolve())

    # First save: the capture moves beside the .blend, recorded with Blender's // prefix.
    blend = project / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    moved = project / "handcap" / kept.name
    assert moved.is_file() and not kept.exists()
    for rig in rigs:
        assert rig["handcap_capture_path"] == f"//handcap/{kept.name}"
        assert rig["handcap_source_rel"] == "//footage/two_hands.mp4"
    assert store.resolve_capture(rigs[0]) == str(moved.resolve())

    # The project folder moves (the old one is gone): capture and footage are found through the // paths.
    elsewhere = tmp_path / "moved" / "project"
    elsewhere.parent.mkdir()
    shutil.move(str(project), str(elsewhere))
    bpy.ops.wm.open_mainfile(filepath=str(elsewhere / "scene.blend"))
    rigs = _rigs(bpy)
    assert store.resolve_capture(rigs[0]) == str((elsewhere / "handcap" / kept.name).resolve())
    space = camera.camera_space_of(rigs[0])
    assert store.footage_path(space) == str((elsewhere / "footage" / "two_hands.mp4").resolve())
    matched = camera.match_camera(bpy.context, space, camera.MatchOptions())
    assert matched.clip is not None, matched.warnings
    assert set(camera.reprojection_errors(bpy.context, rigs)) == {r.name for r in rigs}

    # Save As into another folder takes the capture along (the first copy stays for the first file).
    other = tmp_path / "other"
    other.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(other / "copy.blend"))
    assert (other / "handcap" / kept.name).is_file() and (elsewhere / "handcap" / kept.name).is_file()
    assert store.resolve_capture(_rigs(bpy)[0]) == str((other / "handcap" / kept.name).resolve())


def test_a_capture_that_is_gone_gives_a_clear_message(hc, tmp_path):
    bpy = hc.bpy
    core = hc.mod("core.capture")
    importer = hc.mod("builders.importer")
    camera = hc.mod("builders.camera")
    bpy.ops.wm.read_homefile(use_empty=True)
    path = tmp_path / "take.npz"
    core.write_capture(path, synthetic_capture(n_frames=3, source=str(tmp_path / "clip.mp4")))
    result = importer.import_capture(bpy.context, str(path), importer.ImportOptions(with_mesh=False))
    path.unlink()
    rig = bpy.data.objects[result.armatures["right"]]
    with pytest.raises(camera.CameraAlignError, match="its capture file is gone"):
        camera.capture_of(rig)


def test_convert_writes_the_matched_camera_and_keeps_the_capture(hc, tmp_path):
    bpy = hc.bpy
    cli = hc.mod("blender_cli")
    out = tmp_path / "out"
    assert cli.main(["convert", str(SAMPLE), "-o", str(out), "--frames", "0:4", "--no-mesh", "--fov", "50"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["handcap", "two_hands.blend"]
    bpy.ops.wm.open_mainfile(filepath=str(out / "two_hands.blend"))
    scene = bpy.context.scene
    cam = scene.camera
    assert cam is not None and cam.type == "CAMERA"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (640, 480)
    assert scene.render.fps == 30 and (scene.frame_start, scene.frame_end) == (1, 4)
    clip = hc.mod("builders.camera").background_clip(cam)
    assert clip is not None and Path(bpy.path.abspath(clip.filepath)).resolve() == SAMPLE.resolve()
    for rig in _rigs(bpy):
        assert rig["handcap_capture_path"] == "//handcap/two_hands.npz"
        assert hc.mod("builders.capture_store").resolve_capture(rig) == str(out / "handcap" / "two_hands.npz")
    # a second run refuses to write over the first one's files, which stay as they were
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert cli.main(["convert", str(SAMPLE), "-o", str(out), "--frames", "0:4", "--no-mesh"]) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_users_own_capture_is_copied_beside_the_blend_never_moved(hc, tmp_path):
    """Only HandCap's own user-folder copies move on the first save; a capture the user imported from a folder
    of theirs is copied beside the .blend and stays where it was."""
    bpy = hc.bpy
    core = hc.mod("core.capture")
    importer = hc.mod("builders.importer")
    store = hc.mod("builders.capture_store")
    bpy.ops.wm.read_homefile(use_empty=True)
    takes = tmp_path / "takes"
    takes.mkdir()
    own = takes / "take.npz"
    core.write_capture(own, synthetic_capture(n_frames=3, source=str(tmp_path / "clip.mp4")))
    blob = own.read_bytes()
    result = importer.import_capture(bpy.context, str(own), importer.ImportOptions(with_mesh=False))
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot" / "shot.blend"))
    assert own.read_bytes() == blob
    rig = bpy.data.objects[result.armatures["right"]]
    assert rig["handcap_capture_path"] == "//handcap/take.npz"
    assert store.resolve_capture(rig) == str((tmp_path / "shot" / "handcap" / "take.npz").resolve())
