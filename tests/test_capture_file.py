"""The capture file: round trip and every kind of bad file rejected with a message naming the problem."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from handcap.core.capture import (
    FORMAT_VERSION,
    CameraIntrinsics,
    Capture,
    CaptureFormatError,
    HandTrack,
    read_capture,
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
        (lambda d: _set_meta(d, sides=["middle"]), "hand 'middle' lacks arrays"),
        (lambda d: _set_meta(d, image_size=[0, 720]), "image size must be positive"),
    ],
)
def test_bad_files_are_rejected_with_a_clear_message(tmp_path, edit, message):
    path = write_capture(tmp_path / "take.npz", make_capture())
    _rewrite(path, edit)
    with pytest.raises(CaptureFormatError, match=message):
        read_capture(path)


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
