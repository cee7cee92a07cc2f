"""Frame sources: every accepted input gives RGB uint8 frames with the right indices; every bad input a
SourceError naming the problem. All files are generated in tmp_path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from handcap.inference.sources import SourceError, open_source, read_image, to_rgb8


def _rgb_pattern(h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 200)], -1).astype(np.uint8)


def _write(path, rgb_or_gray) -> None:
    arr = rgb_or_gray
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), arr)


def test_image_formats_read_as_rgb8(tmp_path):
    rgb = _rgb_pattern()
    _write(tmp_path / "a.png", rgb)
    _write(tmp_path / "a.webp", rgb)
    _write(tmp_path / "a.jpg", rgb)
    _write(tmp_path / "a16.png", rgb.astype(np.uint16) * 257)
    _write(tmp_path / "gray.png", rgb[:, :, 0])
    _write(tmp_path / "rgba.png", np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    exact = {"a.png": rgb, "a16.png": rgb, "gray.png": np.repeat(rgb[:, :, :1], 3, 2), "rgba.png": rgb}
    for name, want in exact.items():
        got = read_image(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (48, 64, 3), name
        np.testing.assert_array_equal(got, want, err_msg=name)
    for name in ("a.webp", "a.jpg"):  # lossy: close, and in RGB (not BGR) order
        got = read_image(tmp_path / name).astype(int)
        assert np.abs(got - rgb).mean() < 4, name
    src = open_source(tmp_path / "a.png")
    assert (src.kind, src.size, src.num_frames, src.fps) == ("image", (64, 48), 1, 0.0)
    [(i, frame)] = list(src)
    assert i == 0 and np.array_equal(frame, rgb)


def test_numpy_arrays_of_any_common_type():
    rgb = _rgb_pattern()
    np.testing.assert_array_equal(to_rgb8(rgb.astype(np.float32) / 255), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb.astype(np.uint16) * 257), rgb)
    np.testing.assert_array_equal(to_rgb8(np.dstack([rgb, rgb[:, :, :1]])), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb[:, :, 1]), np.repeat(rgb[:, :, 1:2], 3, 2))
    stack = np.stack([rgb, 255 - rgb, rgb // 2])
    src = open_source(stack, frames=slice(1, None))
    got = list(src)
    assert [i for i, _ in got] == [1, 2] and src.kind == "array" and src.fps == 30.0
    np.testing.assert_array_equal(got[0][1], 255 - rgb)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((10, 0, 3), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.full((4, 4, 3), np.nan),
    ],
)
def test_bad_arrays_raise_source_error(bad):
    with pytest.raises(SourceError):
        list(open_source(bad))


def test_bad_files_raise_clear_source_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image at all")
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes())
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (tmp_path / "empty_dir").mkdir()
    cases = {
        "empty.jpg": "empty",
        "notes.jpg": "not an image",
        "noise.png": "not an image",
        "readme.txt": "neither an image nor a video",
        "empty.mp4": "empty",
        "junk.mp4": "video",
        "empty_dir": "no image files",
        "missing.png": "no such file",
        "frames_%04d.png": "no image files match",
    }
    for name, words in cases.items():
        with pytest.raises(SourceError, match=words) as info:
            list(open_source(tmp_path / name))
        assert name.split("%")[0] in str(info.value), f"message should name the file: {info.value}"


def _write_video(path, n=12, size=(64, 48), fps=25.0) -> bool:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not vw.isOpened():
        return False
    for i in range(n):
        vw.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    vw.release()
    return True


def test_video_frames_ranges_and_strides(tmp_path):
    path = tmp_path / "clip.mp4"
    if not _write_video(path):
        pytest.skip("this OpenCV build cannot write mp4v videos")
    src = open_source(path, frames=slice(2, 11), stride=3)
    assert (src.kind, src.size, src.total_frames) == ("video", (64, 48), 12)
    assert abs(src.fps - 25.0) < 1e-3
    got = list(src)
    assert [i for i, _ in got] == [2, 5, 8] and len(src) == 3
    for i, frame in got:  # each frame's grey level identifies it (lossy codec: tolerance)
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert abs(float(frame.mean()) - 20 * i) < 6
    assert [i for i, _ in open_source(path, frames=range(9, 12))] == [9, 10, 11]
    with pytest.raises(SourceError, match="outside"):
        open_source(path, frames=slice(20, 30))
    with pytest.raises(SourceError, match="outside"):
        open_source(path, frames=range(5, 13))
    with pytest.raises(SourceError, match="stride"):
        open_source(path, stride=0)


def test_video_without_frames_is_rejected(tmp_path):
    path = tmp_path / "none.mp4"
    if not _write_video(path, n=0):
        pytest.skip("this OpenCV build cannot write mp4v videos")
    with pytest.raises(SourceError, match="none.mp4"):
        list(open_source(path))


def test_image_sequences_folder_glob_and_printf(tmp_path):
    rgb = _rgb_pattern()
    for i in (1, 2, 10):  # natural order: 1, 2, 10 (not 1, 10, 2)
        _write(tmp_path / f"f_{i}.png", (rgb // (i + 1)).astype(np.uint8))
    (tmp_path / "ignore.txt").write_text("x")
    src = open_source(tmp_path)
    assert src.kind == "sequence" and src.size == (64, 48) and len(src) == 3
    frames = list(src)
    np.testing.assert_array_equal(frames[2][1], rgb // 11)
    assert [i for i, _ in open_source(str(tmp_path / "f_*.png"), stride=2)] == [0, 2]
    for i in range(3):
        _write(tmp_path / f"p_{i:03d}.png", rgb)
    assert len(open_source(str(tmp_path / "p_%03d.png"), fps=12)) == 3
    assert open_source(str(tmp_path / "p_%03d.png"), fps=12).fps == 12
    _write(tmp_path / "p_003.png", rgb[:20])  # a frame of another size
    with pytest.raises(SourceError, match="p_003.png"):
        list(open_source(str(tmp_path / "p_%03d.png")))


def test_prefetch_decodes_ahead_and_reraises():
    from handcap.inference.batching import prefetch

    assert list(prefetch(iter(range(20)), depth=3)) == list(range(20))

    def broken():
        yield 1
        raise SourceError("frame 2 is corrupt")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(SourceError, match="corrupt"):
        next(it)
    endless = prefetch(iter(int, 1), depth=2)  # never ends: closing must stop the thread
    assert next(endless) == 0
    endless.close()


def test_device_resolution():
    import torch

    from handcap.inference.batching import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
