"""Frame sources: photos, videos, image sequences and numpy arrays behind one iterator.

``open_source(src, frames=None, stride=1)`` returns a :class:`FrameSource`; iterating it yields
``(frame_index, rgb)`` with ``frame_index`` the 0-based index in the whole source and ``rgb`` an
(H, W, 3) uint8 array in RGB order. Every problem with the input is a :class:`SourceError` (a ValueError)
whose message names the file and the reason.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..core.media import IMAGE_EXTS, VIDEO_EXTS  # noqa: F401 - VIDEO_EXTS: the farm and CLI read it here

#: Frame rate reported for image sequences when the caller gives none.
DEFAULT_SEQUENCE_FPS = 30.0


class SourceError(ValueError):
    """The input cannot be read as an image, a video or an image sequence (message says why)."""


def to_rgb8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Any numpy image -> contiguous (H, W, 3) uint8 RGB.

    Accepts (H, W) or (H, W, 1) gray, (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped, as MediaPipe does);
    uint8, uint16 (scaled by 1/257), bool, or float (taken as [0, 1] when its maximum is <= 1, else [0, 255]).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise SourceError(f"{what}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SourceError(f"{what}: image has zero size ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
        f = arr.astype(np.float32)
        if not np.all(np.isfinite(f)):
            raise SourceError(f"{what}: image contains NaN or infinite values")
        scale = 255.0 if f.size and f.max() <= 1.0 else 1.0
        out = np.clip(np.rint(f * scale), 0, 255).astype(np.uint8)
    else:
        raise SourceError(f"{what}: unsupported pixel type {arr.dtype}")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        out = out[:, :, :3]
    return np.ascontiguousarray(out)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (8/16-bit, gray, RGB, RGBA; EXIF orientation applied) as (H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")
    # IMREAD_COLOR converts gray / 16-bit / alpha to 8-bit BGR and applies the EXIF orientation.
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode copes with non-ASCII paths
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"{path}: not an image OpenCV can decode (unknown format or corrupt file)")
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise SourceError(f"{path}: image has zero size")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _select(total: int, frames: slice | range | None, stride: int, what: str) -> range:
    """The source frame indices to deliver, checked against ``total`` frames."""
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise SourceError(f"{what}: stride must be a positive integer, got {stride!r}")
    if total <= 0:
        raise SourceError(f"{what}: contains no frames")
    if frames is None:
        return range(0, total, int(stride))
    if not isinstance(frames, slice | range):
        raise SourceError(f"{what}: frames must be a slice or range, got {type(frames).__name__}")
    step = 1 if frames.step is None else frames.step
    if step < 1:
        raise SourceError(f"{what}: frame ranges must go forward (step >= 1), got step {step}")
    if (frames.start or 0) < 0 or (frames.stop or 0) < 0:
        # Python's count-from-the-end would silently pick other frames than the user's numbers say
        raise SourceError(
            f"{what}: frame numbers count from 0; negative frames ({frames.start}:{frames.stop}) are refused"
        )
    start = 0 if frames.start is None else frames.start
    stop = total if frames.stop is None else frames.stop
    if not 0 <= start < total or not start < stop <= total:
        raise SourceError(
            f"{what}: frames {frames.start}:{frames.stop} are outside the source's {total} frames (0..{total - 1})"
        )
    return range(start, stop, step * int(stride))


class FrameSource:
    """Frames of one input. Iterate for ``(frame_index, rgb)``; ``len()`` is the number of frames delivered.

    Attributes:
        path: file, folder or pattern the frames come from ("<array>" for numpy input).
        kind: "image", "video", "sequence" or "array".
        fps: frames per second of the source (0.0 for a single photo); frame indices, not the stride,
            give timing: frame i is at i / fps seconds.
        size: (width, height) in pixels.
        total_frames: frames in the whole source (for a video, as reported by its container).
        indices: source frame indices that iteration delivers, in order.
    """

    kind = "base"

    def __init__(self, path: str, fps: float, size: tuple[int, int], total_frames: int, indices: range):
        self.path = path
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.total_frames = int(total_frames)
        self.indices = indices

    @property
    def num_frames(self) -> int:
        """Number of frames iteration delivers (after frame range and stride)."""
        return len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        w, h = self.size
        return f"<{type(self).__name__} {self.path!r} {w}x{h} {self.num_frames} frames @ {self.fps:g} fps>"


class ArraySource(FrameSource):
    """A single (H, W, C) image or a (T, H, W, C) stack held in memory."""

    kind = "array"

    def __init__(self, array: np.ndarray, frames=None, stride: int = 1, fps: float | None = None):
        arr = np.asarray(array)
        stack = arr[None] if arr.ndim in (2, 3) else arr
        if stack.ndim not in (3, 4):
            raise SourceError(f"<array>: expected an image (H, W[, C]) or frames (T, H, W[, C]), got {arr.shape}")
        if stack.shape[0] == 0:
            raise SourceError("<array>: contains no frames")
        self._frames = stack
        first = to_rgb8(stack[0], "<array>")
        rate = fps if fps is not None else (0.0 if arr.ndim in (2, 3) else DEFAULT_SEQUENCE_FPS)
        super().__init__(
            "<array>",
            rate,
            (first.shape[1], first.shape[0]),
            len(stack),
            _select(len(stack), frames, stride, "<array>"),
        )

    def __iter__(self):
        for i in self.indices:
            yield i, to_rgb8(self._frames[i], f"<array> frame {i}")


class ImageSource(FrameSource):
    """One photo (a single frame, index 0)."""

    kind = "image"

    def __init__(self, path: Path, frames=None, stride: int = 1):
        self._rgb = read_image(path)
        h, w = self._rgb.shape[:2]
        super().__init__(str(path), 0.0, (w, h), 1, _select(1, frames, stride, str(path)))

    def __iter__(self):
        for i in self.indices:
            yield i, self._rgb


class SequenceSource(FrameSource):
    """Numbered image files; all must have the size of the first one."""

    kind = "sequence"

    def __init__(self, pattern: str, files: Sequence[Path], frames=None, stride: int = 1, fps: float | None = None):
        if not files:
            raise SourceError(f"{pattern}: no image files match")
        self.files = list(files)
        indices = _select(len(self.files), frames, stride, pattern)
        first = None
        for i in indices:  # the size comes from the first image that can be read (damaged ones are skipped)
            try:
                first = read_image(self.files[i])
                break
            except SourceError as exc:
                error = exc
        if first is None:
            raise SourceError(f"{pattern}: none of the {len(indices)} selected images can be read ({error})")
        super().__init__(
            pattern,
            DEFAULT_SEQUENCE_FPS if fps is None else fps,
            (first.shape[1], first.shape[0]),
            len(self.files),
            indices,
        )

    def __iter__(self):
        self.skipped: list[tuple[Path, str]] = []
        for i in self.indices:
            try:
                rgb = read_image(self.files[i])
            except SourceError as exc:
                # one damaged photo must not cost the others: skipped, and the capture's warnings say so
                self.skipped.append((self.files[i], str(exc).split(": ", 1)[-1]))
                continue
            if (rgb.shape[1], rgb.shape[0]) != self.size:
                w, h = self.size
                raise SourceError(
                    f"{self.files[i]}: image is {rgb.shape[1]}x{rgb.shape[0]} but the sequence started at {w}x{h}"
                )
            yield i, rgb


class VideoSource(FrameSource):
    """A video file decoded with OpenCV (FFmpeg backend). Frames are decoded lazily, in order."""

    kind = "video"

    def __init__(self, path: Path, frames=None, stride: int = 1):
        if not path.is_file():
            raise SourceError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: the file is empty (0 bytes)")
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise SourceError(f"{path}: not a video OpenCV can open (unknown format or corrupt file)")
            ok, bgr = cap.read()
            if not ok or bgr is None or bgr.size == 0:
                raise SourceError(f"{path}: video contains no decodable frames")
            fps = cap.get(cv2.CAP_PROP_FPS)
            total = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            cap.release()
        fps = float(fps) if np.isfinite(fps) and fps > 0 else 0.0
        # Some containers do not report a count: count by decoding (grab only, no colour conversion).
        total = total if total > 0 else _count_frames(path)
        super().__init__(str(path), fps, (bgr.shape[1], bgr.shape[0]), total, _select(total, frames, stride, str(path)))

    def __iter__(self):
        self.decoded_until = None  # set to the frames actually decodable when the file ends early
        cap = cv2.VideoCapture(self.path)
        try:
            pos = 0
            first = self.indices[0]
            if first > 0:
                # Seek close, then grab forward: exact even where the container's seek lands on a keyframe.
                cap.set(cv2.CAP_PROP_POS_FRAMES, first)
                pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                if pos != first:
                    cap.release()
                    cap = cv2.VideoCapture(self.path)
                    pos = 0
            for i in self.indices:
                while pos < i:
                    if not cap.grab():
                        self.decoded_until = pos  # container over-reported its length: stop at the real end
                        return
                    pos += 1
                ok, bgr = cap.read()
                if not ok:
                    self.decoded_until = pos
                    return
                pos += 1
                yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


_PRINTF = re.compile(r"%0?(\d*)d")


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _pattern_files(pattern: str) -> list[Path]:
    """Files matching a printf pattern (``frame_%04d.png``) in numeric order, or a glob in natural order."""
    m = _PRINTF.search(pattern)
    if m:
        width = m.group(1)
        digits = rf"\d{{{int(width)}}}" if width else r"\d+"
        regex = re.compile(re.escape(pattern[: m.start()]) + f"({digits})" + re.escape(pattern[m.end() :]) + "$")
        hits = [(int(mm.group(1)), Path(p)) for p in glob.glob(_PRINTF.sub("*", pattern)) if (mm := regex.match(p))]
        return [p for _, p in sorted(hits)]
    return sorted((Path(p) for p in glob.glob(pattern) if Path(p).is_file()), key=_natural_key)


def open_source(src, frames: slice | range | None = None, stride: int = 1, fps: float | None = None) -> FrameSource:
    """Open ``src`` for reading frames.

    Args:
        src: a numpy array ((H, W[, C]) image or (T, H, W[, C]) frames), an image file, a video file,
            a folder of images (natural sort order), a glob pattern (``shots/*.png``) or a printf
            pattern (``frames/f_%05d.jpg``), or a FrameSource (returned as is).
        frames: source frame indices to read, as a slice or range (``slice(100, 200)``); None for all.
        stride: deliver every ``stride``-th frame of the selection.
        fps: frame rate for image sequences and frame stacks (default 30); ignored for videos and photos.

    Raises:
        SourceError: unreadable, empty or non-image/video input, zero-size image, frames out of range.
    """
    if isinstance(src, FrameSource):
        return src
    if isinstance(src, np.ndarray):
        return ArraySource(src, frames, stride, fps)
    if not isinstance(src, str | os.PathLike):
        raise SourceError(f"cannot read frames from a {type(src).__name__}; give a path or a numpy array")
    text = os.fspath(src)
    path = Path(text)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS), key=_natural_key)
        if not files:
            raise SourceError(f"{path}: folder contains no image files ({', '.join(sorted(IMAGE_EXTS))})")
        return SequenceSource(text, files, frames, stride, fps)
    if not path.exists() and (_PRINTF.search(text) or any(c in text for c in "*?[")):
        return SequenceSource(text, _pattern_files(text), frames, stride, fps)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file")
    ext = path.suffix.lower()
    if ext in VIDEO_EXTS:
        return VideoSource(path, frames, stride)
    if ext in IMAGE_EXTS:
        return ImageSource(path, frames, stride)
    # Unknown extension: try as an image, then as a video.
    try:
        return ImageSource(path, frames, stride)
    except SourceError:
        pass
    try:
        return VideoSource(path, frames, stride)
    except SourceError:
        raise SourceError(f"{path}: neither an image nor a video HandCap can read") from None


# --------------------------------------------------------------------------- live sources (live preview)


class LiveSource:
    """Frames as a camera delivers them: ``read()`` -> ``(frame_index, rgb, t_read)`` or None at the end.

    ``CameraSource`` opens a device by index (``0``, ``"0"``) or a stream / file path with
    ``cv2.VideoCapture``; ``VirtualCamera`` plays a video file at its own frame rate, so a consumer that
    is slower than the camera misses frames exactly as it would with a real one. ``t_read`` is
    ``time.monotonic()`` when the frame was handed over; frame indices count from the start.
    """

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        self.path = path
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.dropped = 0

    def read(self):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CameraSource(LiveSource):
    """A camera device (index) or stream/file (path) read as fast as it delivers (fps as it reports)."""

    def __init__(self, device: int | str):
        spec = int(device) if isinstance(device, int) or str(device).isdigit() else str(device)
        self._cap = cv2.VideoCapture(spec)
        if not self._cap.isOpened():
            raise SourceError(f"camera {spec!r}: cannot be opened (no such device, or in use by another program)")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._cap.release()
            raise SourceError(f"camera {spec!r}: opened but delivers no frames")
        self._first = bgr
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        super().__init__(str(spec), fps if np.isfinite(fps) and fps > 0 else 30.0, (bgr.shape[1], bgr.shape[0]))
        self._index = 0

    def read(self):
        import time

        if self._first is not None:
            bgr, self._first = self._first, None
        else:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                return None
        i, self._index = self._index, self._index + 1
        return i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic()

    def close(self) -> None:
        self._cap.release()


class VirtualCamera(LiveSource):
    """A video file played in real time at its own frame rate: ``read()`` waits until the next frame is
    due and skips the frames whose time has passed (counted in ``dropped``; grabbed, not decoded, as a
    camera's missed frames cost nothing). ``clock`` / ``sleep`` are injectable for tests; ``max_frames``
    ends the stream early."""

    def __init__(self, path, clock=None, sleep=None, max_frames: int | None = None):
        import time

        video = VideoSource(Path(path))  # checks the file and reads fps, size and length
        if video.fps <= 0:
            raise SourceError(f"{path}: the video reports no frame rate; it cannot be played in real time")
        super().__init__(str(path), video.fps, video.size)
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._cap = cv2.VideoCapture(str(path))
        self._pos = 0  # index of the next frame the decoder delivers
        self._last = -1
        self._t0 = None
        self._end = video.total_frames if max_frames is None else min(max_frames, video.total_frames)

    def read(self):
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        due = max(self._last + 1, int((now - self._t0) * self.fps + 1e-6))  # the frame the camera shows now
        if due >= self._end:
            return None
        wait = self._t0 + due / self.fps - now
        if wait > 0:
            self._sleep(wait)
        while self._pos < due:
            if not self._cap.grab():
                return None
            self._pos += 1
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        self._pos += 1
        self.dropped += due - self._last - 1
        self._last = due
        return due, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._clock()

    def close(self) -> None:
        self._cap.release()


def open_live(spec, virtual: bool = False, **kwargs) -> LiveSource:
    """A camera by index or path, or with ``virtual`` a video file played at its own frame rate."""
    return VirtualCamera(spec, **kwargs) if virtual else CameraSource(spec)
