"""The capture file: round trip and every kind of bad file rejected with a message naming the problem."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from handcap.core.capture import (
    FORMAT_VERSION,
    CameraIntrinsics,
    Capture,
    CaptureFormatError,
    CaptureWriteError,
    HandTrack,
    read_capture,
    track_key,
    write_capture,
)


def make_track(side: str, t: int, rng: np.random.Generator) -> HandTrack:
    valid = np.ones(t, bool)
    valid[t // 3] = False
    return HandTrack(
        side=side,
        theta=rng.normal(0, 0.3, (t, 16, 3)).astype(np.float32),
        beta=rng.normal(0, 1, 10).astype(np.float32),
        transl=(rng.normal(0, 0.05, (t, 3)) + [0, 0, 0.6]).astype(np.float32),
        kp2d=rng.uniform(0, 640, (t, 21, 2)).astype(np.float32),
        kp3d=rng.normal(0, 0.05, (t, 21, 3)).astype(np.float32),
        frame_conf=rng.uniform(0.5, 1, t).astype(np.float32),
        kp_conf=rng.uniform(0, 1, (t, 21)).astype(np.float32),
        valid=valid,
        rest_joints=rng.normal(0, 0.05, (16, 3)).astype(np.float32),
        joint_offsets=rng.normal(0, 0.003, (16, 3)).astype(np.float32),
    )


def make_capture(t: int = 12, sides=("right", "left")) -> Capture:
    rng = np.random.default_rng(7)
    return Capture(
        source="/footage/take 01.mp4",
        frames=np.arange(10, 10 + 2 * t, 2, dtype=np.int64),
        fps=29.97,
        image_size=(1280, 720),
        intrinsics=CameraIntrinsics(1000.0, 1000.0, 640.0, 360.0, 1280, 720),
        hand_model="builtin-v1",
        hands={s: make_track(s, t, rng) for s in sides},
        info={"fit": {"reproj_px": 1.25}},
    )


def test_round_trip_keeps_every_value(tmp_path):
    cap = make_capture()
    path = write_capture(tmp_path / "take.npz", cap)
    back = read_capture(path)
    assert back.source == cap.source and back.fps == pytest.approx(29.97)
    assert back.image_size == (1280, 720) and back.hand_model == "builtin-v1"
    assert back.intrinsics == cap.intrinsics
    np.testing.assert_array_equal(back.frames, cap.frames)
    assert back.info == {"fit": {"reproj_px": 1.25}}
    assert set(back.hands) == {"right", "left"}
    for side, track in cap.hands.items():
        for name in HandTrack.FIELDS:
            np.testing.assert_array_equal(getattr(back.hands[side], name), getattr(track, name), err_msg=name)
    assert back.hands["left"].valid.dtype == np.bool_
    # No pickle anywhere: every member loads with allow_pickle=False.
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(z["meta"].tobytes())["version"] == FORMAT_VERSION


def test_version_3_holds_any_number_of_tracks_each_with_its_side(tmp_path):
    rng = np.random.default_rng(3)
    cap = make_capture(t=4)
    for key in ("right_2", "left_2", "right_3"):
        cap.hands[key] = make_track(key.split("_")[0], 4, rng)
    back = read_capture(write_capture(tmp_path / "crowd.npz", cap))
    assert sorted(back.hands) == ["left", "left_2", "right", "right_2", "right_3"]
    assert {k: t.side for k, t in back.hands.items()} == {k: k.split("_")[0] for k in back.hands}
    assert back.tracks_of("right") == ["right", "right_2", "right_3"] and back.tracks_of("left") == ["left", "left_2"]
    for key, track in cap.hands.items():
        np.testing.assert_array_equal(back.hands[key].theta, track.theta)
    assert track_key("left", 0) == "left" and track_key("right", 9) == "right_10"
    # the key must name the track's side
    cap.hands["left_3"] = make_track("right", 4, rng)
    with pytest.raises(CaptureFormatError, match="key 'left_3' / side 'right'"):
        write_capture(tmp_path / "bad.npz", cap)


def test_version_2_files_still_read(tmp_path):
    path = write_capture(tmp_path / "take.npz", make_capture())
    _rewrite(path, lambda d: _set_meta(d, version=2))
    back = read_capture(path)
    assert sorted(back.hands) == ["left", "right"] and back.hands["left"].side == "left"


def test_single_photo_capture_with_one_hand(tmp_path):
    cap = make_capture(t=1, sides=("left",))
    cap.fps = 0.0
    back = read_capture(write_capture(tmp_path / "photo.npz", cap))
    assert back.num_frames == 1 and list(back.hands) == ["left"]


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "take.npz"
    write_capture(path, make_capture())
    before = path.read_bytes()
    bad = make_capture()
    bad.hands["right"].transl[3, 1] = np.nan
    with pytest.raises(CaptureFormatError, match="right.transl.*NaN"):
        write_capture(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz"]


def _rewrite(path, edit):
    """Load every member, let ``edit`` change the dict, write it back (for crafting bad files)."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    edit(data)
    np.savez(path, **data)


def _set_meta(data, **changes):
    meta = json.loads(data["meta"].tobytes())
    meta.update(changes)
    data["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: _set_meta(d, version=99), "version 99 is not supported"),
        (lambda d: _set_meta(d, format="something.else"), "format is 'something.else'"),
        (lambda d: d.pop("meta"), "no 'meta' entry"),
        (lambda d: d.update({"meta": np.frombuffer(b"{not json", np.uint8)}), "not valid JSON"),
        (lambda d: d.update({"right.theta": d["right.theta"][:, :15]}), r"right.theta: expected shape \(12, 16, 3\)"),
        (lambda d: d.update({"left.kp2d": d["left.kp2d"][:5]}), "left.kp2d: expected shape"),
        (lambda d: d["left.kp3d"].__setitem__((0, 0, 0), np.inf), "left.kp3d: contains NaN or inf"),
        (lambda d: d["right.beta"].__setitem__(0, np.nan), "right.beta: contains NaN or inf"),
        (lambda d: d.pop("left.valid"), r"hand 'left' lacks arrays \['valid'\]"),
        (lambda d: d.pop("left.joint_offsets"), r"hand 'left' lacks arrays \['joint_offsets'\]"),
        (lambda d: d.update({"frames": d["frames"][::-1].copy()}), "strictly increasing"),
        (lambda d: _set_meta(d, sides=["middle"]), "hand track key 'middle' is not valid"),
        (lambda d: _set_meta(d, sides=["right", "left", "right_2"]), "hand 'right_2' lacks arrays"),
        (lambda d: _set_meta(d, version=2, sides=["right", "left_2"]), "key 'left_2' is not valid in a version 2"),
        (lambda d: _set_meta(d, image_size=[0, 720]), "image size must be positive"),
        # read-time checks of everything the importer and the camera matching assume
        (lambda d: _set_meta(d, hand_model=None), "metadata field 'hand_model' must be a string, got None"),
        (lambda d: _set_meta(d, hand_model=""), "hand_model must be a non-empty string"),
        (lambda d: d.update({"frames": d["frames"] + 10**15}), r"frames must be 0\.\.1048574, got 1000000000000010"),
        (lambda d: d.update({"frames": d["frames"] - 11}), r"frames must be 0\.\.1048574, got -1\.\."),
        (lambda d: _set_meta(d, image_size=[10**12, 10**12]), "at most 65536 px a side, got 1000000000000x"),
        (lambda d: _set_meta(d, image_size=[1280.5, 720]), r"'image_size' must be \[width, height\]"),
        (lambda d: _set_meta(d, fps=-1), r"fps must be a finite number 0\.\.10000, got -1"),
        (lambda d: _set_meta(d, fps=float("nan")), "'fps' must be a finite number, got nan"),
        (lambda d: _set_meta(d, fps="30"), "'fps' must be a finite number, got '30'"),
        (lambda d: _set_meta(d, intrinsics={"fx": 0, "fy": 1000, "cx": 640, "cy": 360}), "positive focal lengths"),
        (lambda d: _set_meta(d, intrinsics={"fx": -1e3, "fy": -1e3, "cx": 640, "cy": 360}), "positive focal lengths"),
        (lambda d: _set_meta(d, intrinsics={"fx": 1e3, "fy": 1e3, "cx": 1e9, "cy": 360}), "widths off centre"),
        (lambda d: _set_meta(d, intrinsics={"fx": 1e3, "fy": 1e3}), "'intrinsics' must be {fx, fy, cx, cy} numbers"),
        (lambda d: _set_meta(d, sides=["right"]), r"members \['left.beta', .*\] do not belong to a capture of hands"),
        (lambda d: _set_meta(d, sides=["right", "right"]), "'sides' must be a list of distinct side names"),
        (lambda d: d["left.kp_conf"].__setitem__((0, 0), 1.5), r"left.kp_conf: values .*\.\.1\.5 are outside 0\.\.1"),
        (lambda d: d["right.frame_conf"].__setitem__(0, -0.1), r"right.frame_conf: values -0\.1.* outside 0\.\.1"),
        (
            lambda d: d.update({"right.rest_joints": d["right.rest_joints"] * 1000}),
            r"right.rest_joints: values .* -1\.\.1",
        ),
        (
            lambda d: d["right.rest_joints"].fill(0.01),
            r"right.rest_joints: bone lengths 0\.\.0 mm, expected 1\.\.500 mm",
        ),
        (lambda d: d.update({"left.rest_joints": _collinear()}), "knuckles are on one line"),
        (lambda d: d["left.transl"].__setitem__((0, 2), 1e30), r"left.transl: values .* outside -1000\.\.1000"),
        (lambda d: d.update({"right.theta": d["right.theta"].astype("U8")}), "right.theta: dtype <U8 is not one of"),
        (lambda d: d.update({"left.valid": d["left.valid"].astype(np.uint8)}), "left.valid: dtype |u1 is not one of"),
        (lambda d: d.update({"frames": d["frames"].astype(np.float64)}), "frames: dtype <f8 is not one of"),
        (lambda d: d.update({"meta": np.frombuffer(b"[1, 2]", np.uint8)}), "metadata is a JSON list, not an object"),
        (lambda d: d.update({"meta": np.frombuffer(b'"text"', np.uint8)}), "metadata is a JSON str, not an object"),
        (lambda d: d.update({"meta": np.zeros(4, np.float32)}), "meta: dtype <f4 is not one of the expected kinds 'u'"),
        (lambda d: _set_meta(d, version=True), "version True is not supported"),
        (lambda d: _set_meta(d, version=2.0), "version 2.0 is not supported"),
        (lambda d: _set_meta(d, source="a\x00b.mp4"), "source contains a NUL character"),
        (lambda d: _set_meta(d, info=[1]), "'info' must be an object"),
        (lambda d: d.update({"extra": np.zeros(1)}), r"members \['extra'\] do not belong"),
    ],
)
def test_bad_files_are_rejected_with_a_clear_message(tmp_path, edit, message):
    path = write_capture(tmp_path / "take.npz", make_capture())
    _rewrite(path, edit)
    with pytest.raises(CaptureFormatError, match=message):
        read_capture(path)


def _collinear():
    line = np.zeros((16, 3), np.float32)
    line[:, 0] = 0.01 * np.arange(1, 17)  # every bone has a length, but wrist, index and little MCP are in a row
    line[0, 0] = 0.0
    return line


def test_in_memory_captures_with_wrong_types_are_refused():
    """validate() (used by write_capture and the importer) names wrong types instead of raising TypeError."""
    edits = {
        "fps": (lambda c: setattr(c, "fps", "30"), "fps must be a finite number"),
        "image size": (lambda c: setattr(c, "image_size", (1280.0, 720)), "image size must be two integers"),
        "theta": (
            lambda c: setattr(c.hands["right"], "theta", np.full((12, 16, 3), "a")),
            "right.theta: expected float",
        ),
        "ragged": (lambda c: setattr(c.hands["left"], "beta", [[1], [1, 2]]), "left.beta: not an array"),
        "valid": (lambda c: setattr(c.hands["left"], "valid", np.ones(12, np.int8)), "left.valid: expected bool"),
        "model": (lambda c: setattr(c, "hand_model", None), "hand_model must be a non-empty string"),
        "hands": (lambda c: setattr(c, "hands", [1]), "hands must be a dict"),
    }
    for edit, message in edits.values():
        cap = make_capture()
        edit(cap)
        with pytest.raises(CaptureFormatError, match=message):
            cap.validate()


def test_version_1_files_read_with_zero_joint_offsets(tmp_path):
    """Captures written before the skeleton calibration (version 1) have no joint_offsets: they read as zeros."""
    cap = make_capture()
    path = write_capture(tmp_path / "old.npz", cap)

    def to_v1(d):
        _set_meta(d, version=1)
        for side in ("right", "left"):
            d.pop(f"{side}.joint_offsets")

    _rewrite(path, to_v1)
    back = read_capture(path)
    for side, track in cap.hands.items():
        assert back.hands[side].joint_offsets.shape == (16, 3) and not back.hands[side].joint_offsets.any()
        np.testing.assert_array_equal(back.hands[side].rest_joints, track.rest_joints)


def test_truncated_file(tmp_path):
    path = write_capture(tmp_path / "take.npz", make_capture())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CaptureFormatError, match="truncated or corrupt"):
        read_capture(path)


def test_not_a_capture_at_all(tmp_path):
    path = tmp_path / "movie.npz"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is a video")
    with pytest.raises(CaptureFormatError, match="not an .npz archive"):
        read_capture(path)
    with pytest.raises(CaptureFormatError, match="no such capture file"):
        read_capture(tmp_path / "missing.npz")


def test_pickled_members_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.npy", buf.getvalue())
    with pytest.raises(CaptureFormatError, match="refused to load"):
        read_capture(path)


def test_intrinsics_constructors():
    k = CameraIntrinsics.from_fov(1920, 1080, 90.0)
    assert k.fx == pytest.approx(960.0) and (k.cx, k.cy) == (960.0, 540.0)
    k = CameraIntrinsics.from_focal_mm(1920, 1080, 50.0, 36.0)
    assert k.fx == pytest.approx(50 / 36 * 1920)
    assert CameraIntrinsics.default(640, 480).fx == pytest.approx(320 / np.tan(np.radians(27.5)))
    with pytest.raises(ValueError, match="outside"):
        CameraIntrinsics.from_fov(640, 480, 0.0)


def test_full_disk_keeps_the_existing_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = write_capture(tmp_path / "take.npz", make_capture())
    before = path.read_bytes()

    def full_disk(fd):  # the data is written, the file system finds no room for it when it is flushed
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CaptureWriteError, match="No space left on device.*nothing there was changed"):
        write_capture(path, make_capture(t=5))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz"]


def test_file_size_limit_in_a_real_process(tmp_path):
    """``ulimit -f``: the OS refuses the write part way (EFBIG); the old capture survives byte for byte."""
    path = write_capture(tmp_path / "take.npz", make_capture())
    before = path.read_bytes()
    child = f"""
import resource, signal, sys
sys.path.insert(0, {str(os.path.dirname(__file__))!r})
from test_capture_file import make_capture
from handcap.core.capture import CaptureWriteError, write_capture
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get the error instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_capture({str(path)!r}, make_capture(t=200))
except CaptureWriteError as exc:
    print(exc)
    sys.exit(3)
"""
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "File too large" in run.stdout and "nothing there was changed" in run.stdout
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz"]


def test_missing_or_read_only_folder(tmp_path):
    with pytest.raises(CaptureWriteError, match="No such file or directory"):
        write_capture(tmp_path / "no" / "such" / "take.npz", make_capture())
    if os.geteuid() == 0:
        return  # root writes into read-only folders; the missing folder above is the same code path
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(CaptureWriteError, match="Permission denied"):
            write_capture(folder / "take.npz", make_capture())
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)
