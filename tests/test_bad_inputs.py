"""Bad input and faults, one matrix: every kind gets a clear one-line message (no traceback), a non-zero exit from
the command line, and leaves every file the user had byte-identical.

The capture and report commands run in this process (``handcap.cli.main``, torch loaded once); ``convert`` runs in
a subprocess, since it registers HandCap's classes in bpy. A killed or cancelled Blender worker is covered in
tests/test_capture_operators.py (``test_killed_worker_*``, ``test_cancel_*``), the capture reader's fuzzing in
tests/test_capture_fuzz.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO
from .retarget_rigs import synthetic_capture

SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"


def _frame(index: int = 30) -> np.ndarray:
    """RGB frame of the project's own sample clip (two rendered hands)."""
    import cv2

    cap = cv2.VideoCapture(str(SAMPLE))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return bgr


def _imwrite(path: Path, image: np.ndarray, ext: str | None = None) -> Path:
    import cv2

    ok, buf = cv2.imencode(ext or path.suffix, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _truncated_avi(path: Path) -> Path:
    """30 frames of the sample clip as MJPG AVI, cut after about half of them (the header still says 30)."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(30):
        w.write(_frame(i))
    w.release()
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def _capture_file(path: Path, **kw) -> Path:
    from handcap.core.capture import write_capture

    write_capture(path, synthetic_capture(n_frames=3, **kw))
    return path


def _rewrite_member(path: Path, member: str, data: bytes) -> Path:
    """Replace one member of an .npz (valid zip checksums, the content is what is wrong)."""
    with zipfile.ZipFile(path) as z:
        items = {n: z.read(n) for n in z.namelist()}
    items[member] = data
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in items.items():
            z.writestr(name, blob)
    return path


def _npy(array: np.ndarray, header_shape: tuple | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    blob = buf.getvalue()
    if header_shape is not None:
        blob = blob.replace(repr(array.shape).encode(), repr(header_shape).encode(), 1)
    return blob


def _meta_json(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(bytes(z["meta"]).decode())


@dataclass
class Case:
    """argv with {d} for the case's folder; the exit code is checked non-zero unless ``rc`` says 0."""

    argv: list[str]
    message: str  # what stderr (or the progress log) must say, case-insensitive
    rc: int | None = None  # None: any non-zero
    outputs: list[str] = field(default_factory=list)  # files the run may create (relative to the folder)


def _setup(kind: str, d: Path) -> Case:  # noqa: C901 - one branch per kind is the point of the table
    if kind == "missing_input":
        return Case(["capture", "{d}/nothing.mp4", "-o", "{d}/t.npz"], "no such file")
    if kind == "empty_video":
        (d / "empty.mp4").write_bytes(b"")
        return Case(["capture", "{d}/empty.mp4", "-o", "{d}/t.npz"], "empty (0 bytes)")
    if kind == "text_as_video":
        (d / "notes.mp4").write_text("this is not a video\n" * 50)
        return Case(["capture", "{d}/notes.mp4", "-o", "{d}/t.npz"], "not a video opencv can open")
    if kind == "zero_frame_video":
        import cv2

        w = cv2.VideoWriter(str(d / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
        w.release()
        return Case(["capture", "{d}/zero.avi", "-o", "{d}/t.npz"], "frames")
    if kind == "truncated_video":
        # 30 frames cut to about half: the header still says 30, and the capture says how many it read and why
        _truncated_avi(d / "cut.avi")
        return Case(
            ["capture", "{d}/cut.avi", "-o", "{d}/t.npz"], "of the 30 selected frame(s)", rc=0, outputs=["t.npz"]
        )
    if kind == "frames_beyond_decodable":
        _truncated_avi(d / "cut.avi")
        return Case(["capture", "{d}/cut.avi", "-o", "{d}/t.npz", "--frames", "25:30"], "read 0 of the 5")
    if kind == "png_named_jpg":
        _imwrite(d / "photo.jpg", _frame(), ".png")
        return Case(["capture", "{d}/photo.jpg", "-o", "{d}/t.npz"], "hand: seen in 1/1", rc=0, outputs=["t.npz"])
    if kind == "webp":
        _imwrite(d / "photo.webp", _frame())
        return Case(["capture", "{d}/photo.webp", "-o", "{d}/t.npz"], "hand: seen in 1/1", rc=0, outputs=["t.npz"])
    if kind == "png_16bit":
        _imwrite(d / "photo.png", _frame().astype(np.uint16) * 257)
        return Case(["capture", "{d}/photo.png", "-o", "{d}/t.npz"], "hand: seen in 1/1", rc=0, outputs=["t.npz"])
    if kind == "gray":
        import cv2

        _imwrite(d / "photo.png", cv2.cvtColor(_frame(), cv2.COLOR_BGR2GRAY))
        return Case(["capture", "{d}/photo.png", "-o", "{d}/t.npz"], "hand: seen in 1/1", rc=0, outputs=["t.npz"])
    if kind == "rgba":
        import cv2

        _imwrite(d / "photo.png", cv2.cvtColor(_frame(), cv2.COLOR_BGR2BGRA))
        return Case(["capture", "{d}/photo.png", "-o", "{d}/t.npz"], "hand: seen in 1/1", rc=0, outputs=["t.npz"])
    if kind == "one_pixel":
        _imwrite(d / "dot.png", np.full((1, 1, 3), 128, np.uint8))
        return Case(["capture", "{d}/dot.png", "-o", "{d}/t.npz"], "no hand found")
    if kind == "huge_8000":
        import cv2

        _imwrite(d / "big.jpg", cv2.resize(_frame(), (8000, 6000), interpolation=cv2.INTER_LINEAR))
        return Case(["capture", "{d}/big.jpg", "-o", "{d}/t.npz"], "hand: seen in 1/1", rc=0, outputs=["t.npz"])
    if kind == "no_hand_image":
        _imwrite(d / "noise.png", np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
        return Case(["capture", "{d}/noise.png", "-o", "{d}/t.npz"], "no hand found")
    if kind == "folder_one_corrupt":
        (d / "frames").mkdir()
        for i in range(3):
            _imwrite(d / "frames" / f"f_{i:03d}.png", _frame(30 + i))
        (d / "frames" / "f_001b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        return Case(["capture", "{d}/frames", "-o", "{d}/t.npz"], "skipped f_001b.png", rc=0, outputs=["t.npz"])
    if kind == "frames_out_of_range":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--frames", "500:600"], "outside the source's 90")
    if kind == "frames_reversed":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--frames", "30:10"], "empty frame range")
    if kind == "frames_negative":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--frames=-5:"], "negative frames are refused")
    if kind == "stride_zero":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--stride", "0"], "stride must be a positive")
    if kind == "hands_eleven":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--hands", "11"], "hands must be a whole number 1..10")
    if kind == "output_folder_missing":
        return Case(["capture", str(SAMPLE), "-o", "{d}/no/such/t.npz"], "does not exist")
    if kind == "output_not_npz":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.blend"], "must end in .npz")
    if kind == "output_exists":
        _capture_file(d / "t.npz")
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--frames", "0:2"], "already exists")
    if kind == "output_is_input":
        _capture_file(d / "take.npz")
        return Case(["capture", "{d}/take.npz", "-o", "{d}/take.npz"], "is the input")
    if kind == "mano_without_folder":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--model", "mano"], "--mano-dir")
    if kind == "mano_wrong_files":
        (d / "mano").mkdir()
        (d / "mano" / "MANO_RIGHT.pkl").write_bytes(b"not a pickle at all")
        (d / "mano" / "MANO_LEFT.pkl").write_text("nor this")
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--model", "mano", "--mano-dir", "{d}/mano"], "mano")
    if kind == "unknown_fit_option":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--fit", "no_such_weight=1"], "no_such_weight")
    if kind == "bad_fit_value":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--fit", "polish_iterations=many"], "polish_iterations")
    if kind == "min_confidence_out_of_range":
        return Case(["capture", str(SAMPLE), "-o", "{d}/t.npz", "--min-confidence", "2"], "min_confidence")
    # -- capture files, through ``report`` (one report per input; the bad one fails with the reader's message)
    if kind == "capture_truncated":
        p = _capture_file(d / "bad.npz")
        p.write_bytes(p.read_bytes()[:-300])
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_pickled":
        p = _capture_file(d / "bad.npz")
        _rewrite_member(p, "right.theta.npy", _npy(np.array([{"a": 1}], dtype=object)))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_nan":
        p = _capture_file(d / "bad.npz")
        theta = np.zeros((3, 16, 3), np.float32)
        theta[1, 2, 0] = np.nan
        _rewrite_member(p, "right.theta.npy", _npy(theta))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_inf":
        p = _capture_file(d / "bad.npz")
        _rewrite_member(p, "right.transl.npy", _npy(np.full((3, 3), np.inf, np.float32)))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_wrong_shape":
        p = _capture_file(d / "bad.npz")
        _rewrite_member(p, "right.theta.npy", _npy(np.zeros((3, 15, 3), np.float32)))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_wrong_version":
        p = _capture_file(d / "bad.npz")
        meta = {**_meta_json(p), "version": 99}
        _rewrite_member(p, "meta.npy", _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "version")
    if kind == "capture_foreign_npz":
        np.savez(d / "bad.npz", weights=np.zeros(4))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_meta_not_json":
        p = _capture_file(d / "bad.npz")
        _rewrite_member(p, "meta.npy", _npy(np.frombuffer(b"{not json", np.uint8)))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "capture_absurd_size":
        p = _capture_file(d / "bad.npz")
        _rewrite_member(p, "right.theta.npy", _npy(np.zeros((3, 16, 3), np.float32), header_shape=(10**12, 16, 3)))
        return Case(["report", "{d}/bad.npz", "-o", "{d}/rep"], "failed:")
    if kind == "report_bad_then_good":
        p = _capture_file(d / "bad.npz")
        p.write_bytes(b"PK\x03\x04 not a zip")
        _capture_file(d / "good.npz")
        return Case(
            ["report", "{d}/bad.npz", "{d}/good.npz", "-o", "{d}/rep"], "1 of 2 inputs failed", outputs=["rep/"]
        )
    raise AssertionError(kind)


IN_PROCESS = [
    "missing_input", "empty_video", "text_as_video", "zero_frame_video", "truncated_video",
    "frames_beyond_decodable", "png_named_jpg", "webp", "png_16bit", "gray", "rgba", "one_pixel", "huge_8000",
    "no_hand_image", "folder_one_corrupt", "frames_out_of_range", "frames_reversed", "frames_negative",
    "stride_zero", "hands_eleven", "output_folder_missing", "output_not_npz", "output_exists", "output_is_input",
    "mano_without_folder", "mano_wrong_files", "unknown_fit_option", "bad_fit_value", "min_confidence_out_of_range",
    "capture_truncated", "capture_pickled", "capture_nan", "capture_inf", "capture_wrong_shape",
    "capture_wrong_version", "capture_foreign_npz", "capture_meta_not_json", "capture_absurd_size",
    "report_bad_then_good",
]  # fmt: skip


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _run_main(argv: list[str], capsys) -> tuple[int, str]:
    from handcap.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code if isinstance(exc.code, int) else 2
    out = capsys.readouterr()
    return rc, out.out + out.err


def _check_clean(kind: str, rc: int, text: str, case: Case) -> None:
    assert "Traceback" not in text, f"{kind}: traceback\n{text}"
    if case.rc is None:
        assert rc != 0, f"{kind}: exit 0\n{text}"
    else:
        assert rc == case.rc, f"{kind}: exit {rc}\n{text}"
    assert case.message.lower() in text.lower(), f"{kind}: expected {case.message!r} in\n{text}"
    if rc != 0:
        errors = [ln for ln in text.splitlines() if "error:" in ln or "failed:" in ln]
        assert len(errors) == 1, f"{kind}: not one error line\n{text}"


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_bad_input(kind, tmp_path, capsys):
    d = tmp_path / "case"
    d.mkdir()
    case = _setup(kind, d)
    before = _files(d)
    rc, text = _run_main([a.replace("{d}", str(d)) for a in case.argv], capsys)
    _check_clean(kind, rc, text, case)
    after = _files(d)
    for name, blob in before.items():
        assert after.get(name) == blob, f"{kind}: {name} changed or vanished"
    new = set(after) - set(before)
    allowed = {o for o in case.outputs if not o.endswith("/")}
    prefixes = tuple(o for o in case.outputs if o.endswith("/"))
    assert all(n in allowed or n.startswith(prefixes) for n in new), f"{kind}: unexpected files {new - allowed}"
    if kind == "report_bad_then_good":
        assert (d / "rep" / "good" / "index.html").is_file()


def test_photo_under_the_minimum_confidence_is_dropped(tmp_path, capsys):
    """A hand whose confidence is below --min-confidence is dropped with a warning; all of them: a clear error."""
    _imwrite(tmp_path / "photo.png", _frame())
    rc, text = _run_main(["capture", str(tmp_path / "photo.png"), "-o", str(tmp_path / "t.npz")], capsys)
    assert rc == 0 and "dropped" not in text, text
    rc, text = _run_main(
        ["capture", str(tmp_path / "photo.png"), "-o", str(tmp_path / "u.npz"), "--min-confidence", "0.999999"], capsys
    )
    assert rc == 2 and "no hand above the minimum confidence 0.999999" in text, text
    assert not (tmp_path / "u.npz").exists()


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to make a {options} folder ({proc.stderr.strip()})")


def _unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def test_read_only_output_folder_is_refused_before_any_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=64k")
    try:
        rc, text = _run_main(["capture", str(SAMPLE), "-o", str(ro / "t.npz")], capsys)
        assert rc == 2 and "cannot write to" in text and "Traceback" not in text, text
        assert "landmarks" not in text  # refused before the slow part
    finally:
        _unmount(ro)


def test_full_disk_during_the_write_keeps_the_old_capture(tmp_path, capsys):
    """The capture file is written to a temporary name and renamed: a full disk leaves the previous one intact
    and no temporary file behind."""
    full = tmp_path / "full"
    _mount_tmpfs(full, "size=12k")
    try:
        old = _capture_file(full / "t.npz", sides=("right",))
        blob = old.read_bytes()
        rc, text = _run_main(
            ["capture", str(SAMPLE), "-o", str(old), "--frames", "0:30", "--overwrite", "--quiet"], capsys
        )
        assert rc == 2 and "cannot write" in text and "Traceback" not in text, text
        assert old.read_bytes() == blob and sorted(p.name for p in full.iterdir()) == ["t.npz"]
    finally:
        _unmount(full)


# --------------------------------------------------------------------------- convert (subprocess, needs bpy)


def _convert(*args, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", "handcap", "convert", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc.returncode, proc.stdout + proc.stderr


def _blend_with(tmp_path: Path, script: str, name: str) -> Path:
    """A .blend made by a small bpy script (``out`` is its path)."""
    out = tmp_path / name
    save = f"bpy.ops.wm.save_as_mainfile(filepath={str(out)!r})"
    code = f"import bpy\nbpy.ops.wm.read_homefile(use_empty=True)\n{script}\n{save}"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    return out


@pytest.mark.blender
def test_convert_bad_runs_change_nothing(tmp_path):
    pytest.importorskip("bpy")
    inputs = tmp_path / "in"
    inputs.mkdir()
    _capture_file(inputs / "clip.npz", source="clip.mp4")
    empty = _blend_with(tmp_path, "", "empty.blend")
    out = tmp_path / "out"
    before = _files(tmp_path)
    for args, message in (
        (["--retarget", tmp_path / "missing.blend"], "no such rig file"),
        (["--retarget", empty, "--rig-object", "Rig"], "has no object named 'Rig'"),
        (["--format", "obj"], "invalid choice"),
        (["--fit", "bogus=1"], "bogus"),
    ):
        rc, text = _convert(inputs / "clip.npz", "-o", out, *args)
        assert rc == 2 and message in text and "Traceback" not in text, (args, text)
        assert _files(tmp_path) == before, args


@pytest.mark.blender
def test_convert_refuses_existing_outputs_and_mixes_photos_with_a_frame_range(tmp_path):
    pytest.importorskip("bpy")
    photo = _imwrite(tmp_path / "photo.png", _frame())
    out = tmp_path / "out"
    rc, text = _convert(SAMPLE, photo, "-o", out, "--frames", "0:3", "--no-mesh", "--format", "fbx")
    assert rc == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["photo.fbx", "two_hands.fbx"]
    assert text.count("apply to videos only") == 1, text  # said once for the batch
    before = _files(out)
    rc, text = _convert(SAMPLE, photo, "-o", out, "--frames", "0:3", "--no-mesh", "--format", "fbx")
    assert rc == 2 and "pass --overwrite" in text, text
    assert _files(out) == before
    rc, text = _convert(photo, "-o", out, "--no-mesh", "--format", "fbx", "--overwrite")
    assert rc == 0 and "ok -> photo.fbx" in text, text


@pytest.mark.blender
def test_convert_says_which_bones_a_rig_lacks(tmp_path):
    pytest.importorskip("bpy")
    _capture_file(tmp_path / "clip.npz", sides=("right",), source="clip.mp4")
    rig = _blend_with(
        tmp_path,
        "arm = bpy.data.armatures.new('R')\nobj = bpy.data.objects.new('Rig', arm)\n"
        "bpy.context.scene.collection.objects.link(obj)\nbpy.context.view_layer.objects.active = obj\n"
        "bpy.ops.object.mode_set(mode='EDIT')\nb = arm.edit_bones.new('hand.R')\nb.tail = (0, 0.1, 0)\n"
        "bpy.ops.object.mode_set(mode='OBJECT')",
        "rig.blend",
    )
    rc, text = _convert(tmp_path / "clip.npz", "-o", tmp_path / "out", "--retarget", rig, "--no-mesh")
    assert "Traceback" not in text, text
    assert "15 of 16 bones of HC_clip.R have no bone on 'Rig'" in text, text


CAPTURE_KINDS = [k for k in IN_PROCESS if k.startswith("capture_")]


@pytest.mark.blender
def test_blender_import_of_bad_captures_is_clean_and_changes_nothing(hc, tmp_path):
    """File > Import of each bad capture: the reader's message in the error report, no Python traceback, the
    scene as it was."""
    bpy = hc.bpy
    bpy.ops.wm.read_homefile(use_empty=True)
    kinds = ("objects", "collections", "actions", "meshes", "armatures", "materials")
    before = {k: sorted(x.name for x in getattr(bpy.data, k)) for k in kinds}
    for kind in CAPTURE_KINDS:
        d = tmp_path / kind
        d.mkdir()
        _setup(kind, d)
        with pytest.raises(RuntimeError) as err:
            bpy.ops.handcap.import_capture(filepath=str(d / "bad.npz"))
        assert "Traceback" not in str(err.value), (kind, str(err.value))
        assert {k: sorted(x.name for x in getattr(bpy.data, k)) for k in kinds} == before, kind
