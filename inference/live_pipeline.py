"""The live preview on two cores: the landmark stage in a child process, the pose stage in this one.

The landmark stage (camera reading, landmark network, tracker) must see the frames in order, one at a
time: each frame's ROIs come from the previous frame's landmarks. The pose stage (analytic fit, One-Euro
filters, the JSON message) depends only on the landmarks. So the two run as a pipeline: while the pose of
frame t is solved here, the child already runs the network on frame t + 1; each process holds one core
(one torch thread: on a shared 2-core machine, torch's two-thread kernels wait on each other and can
take several times longer than one thread).

Frames are dropped, never queued, so latency stays bounded: a reader thread keeps only the newest camera
frame (``LatestFrames``), and the pose stage takes only the newest landmarks waiting for it.

The messages between the processes are JSON (start, end, errors) and raw float64 rows (one per hand),
never pickled data; only the child's start arguments pass through multiprocessing's spawn.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .live_stages import LiveOptions, PoseStage, live_frame
from .sources import SourceError

#: One hand as a float64 row: track_id, presence, right?, side_score, p_right, roi (4), kp2d (42), kp_z (21),
#: world (63).
_ROW = 9 + 42 + 21 + 63
_FRAME = b"F"


@dataclass
class LiveStats:
    """A pipelined live run. frames: processed (posed); first / last: camera indices of the first and last
    processed frame (``dropped``: the camera's frames between them that were not processed); wall_s: from
    the first frame's read to the last pose; CPU time over the run: cpu_landmarks_s of the landmark stage
    (networks, tracker: the child's main thread), cpu_reading_s of the child's other threads (the reader
    thread and the decoder's threads: reading and decoding every frame the camera delivered), cpu_pose_s
    of the pose stage (fit, filters, messages: this process);
    skipped: camera indices of frames the landmark stage processed and the pose stage skipped (it takes
    only the newest landmarks waiting)."""

    frames: int = 0
    first: int = -1
    last: int = -1
    wall_s: float = 0.0
    cpu_landmarks_s: float = 0.0
    cpu_pose_s: float = 0.0
    cpu_reading_s: float = 0.0
    skipped: list[int] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return max(0, self.last - self.first + 1 - self.frames) if self.frames else 0

    def cpu_ms_per_frame(self) -> tuple[float, float, float]:
        """CPU milliseconds of the landmark stage and the pose stage per processed frame, and of reading
        per frame the camera delivered."""
        n, delivered = max(self.frames, 1), max(self.last - self.first + 1, 1)
        return 1000 * self.cpu_landmarks_s / n, 1000 * self.cpu_pose_s / n, 1000 * self.cpu_reading_s / delivered


def idle_fps(landmark_ms: float, pose_ms: float, reading_ms: float, camera_fps: float, cores: int = 2) -> float:
    """Frames per second the pipeline sustains on ``cores`` idle cores, from CPU milliseconds per frame:
    each stage is one thread (at most one core each), reading takes ``reading_ms`` for every camera frame,
    and all of it shares the cores; never more than the camera delivers."""
    per_second = cores * 1000.0 - reading_ms * camera_fps
    return max(0.0, min(camera_fps, 1000.0 / landmark_ms, 1000.0 / pose_ms, per_second / (landmark_ms + pose_ms)))


class LatestFrames:
    """A reader thread around a ``sources.LiveSource``: ``read()`` returns the newest frame it has
    delivered that was not returned yet (waiting for one), None once the source has ended. Frames that
    were overwritten before anyone took them are dropped (OpenCV decodes with the GIL released)."""

    def __init__(self, source):
        self.source = source
        self._cond = threading.Condition()
        self._latest = None
        self._ended = False
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="handcap-live-read", daemon=True)

    def start(self) -> LatestFrames:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop:
                got = self.source.read()
                with self._cond:
                    if got is None:
                        break
                    self._latest = got
                    self._cond.notify()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            with self._cond:
                self._error = exc
        with self._cond:
            self._ended = True
            self._cond.notify()

    def read(self):
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._ended)
            got, self._latest = self._latest, None
            if got is None and self._error is not None:
                raise self._error
            return got

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)


def _pack(frame: int, t_read: float, cpu: tuple[float, float], hands) -> bytes:
    head = np.array([frame, t_read, *cpu, len(hands)], np.float64)
    rows = np.zeros((len(hands), _ROW))
    for row, h in zip(rows, hands, strict=True):
        row[:9] = [h.track_id, h.presence, h.side == "right", h.side_score, h.p_right, *h.roi]
        row[9:] = np.concatenate([h.kp2d.ravel(), h.kp_z.ravel(), h.world.ravel()])
    return _FRAME + head.tobytes() + rows.tobytes()


def _unpack(data: bytes):
    from .landmarker import HandObservation

    head = np.frombuffer(data, np.float64, 5, 1)
    rows = np.frombuffer(data, np.float64, offset=1 + 40).reshape(int(head[4]), _ROW)
    hands = [
        HandObservation(
            int(r[0]),
            r[9:51].reshape(21, 2).copy(),
            r[51:72].copy(),
            r[72:].reshape(21, 3).copy(),
            float(r[1]),
            "right" if r[2] else "left",
            float(r[3]),
            r[5:9].copy(),
            float(r[4]),
        )
        for r in rows
    ]
    return int(head[0]), float(head[1]), (float(head[2]), float(head[3])), hands


def _send_json(conn, **message) -> None:
    conn.send_bytes(json.dumps(message).encode())


def _landmark_process(spec, virtual: bool, options: LiveOptions, conn, ready, max_seconds: float | None) -> None:
    """The child: open the source, load the networks, wait until the pose stage is ``ready`` (an event),
    then one message per processed frame."""
    import torch

    from .live_stages import LandmarkStage
    from .sources import open_live

    torch.set_num_threads(max(1, int(options.threads)))
    try:
        try:
            source = open_live(spec, virtual=virtual)
        except SourceError as exc:
            _send_json(conn, kind="error", message=str(exc))
            return
        with source:
            _send_json(conn, kind="start", size=list(source.size), fps=source.fps)
            stage = LandmarkStage(options)
            stage.warm_up(source.size, options.hands)
            while not ready.wait(1.0):
                if not mp.parent_process().is_alive():
                    return
            # A camera queues frames a slow reader has not taken: a reader thread keeps only the newest
            # (and decodes on the other core while the networks run here).
            frames = LatestFrames(source).start()
            t0 = None
            cpu0 = time.thread_time(), time.process_time()
            try:
                while (got := frames.read()) is not None:
                    index, rgb, t_read = got
                    t0 = t_read if t0 is None else t0
                    if max_seconds is not None and t_read - t0 > max_seconds:
                        break
                    hands = stage(index, rgb)
                    stage_s = time.thread_time() - cpu0[0]  # the others: reader, decoder threads
                    conn.send_bytes(_pack(index, t_read, (stage_s, time.process_time() - cpu0[1] - stage_s), hands))
            finally:
                frames.close()
        _send_json(conn, kind="end")
    except (BrokenPipeError, EOFError):
        pass  # the pose process has gone: nothing to report to
    finally:
        conn.close()


def run_pipelined(
    spec, virtual: bool = False, options: LiveOptions | None = None, on_frame=None, max_seconds: float | None = None
) -> LiveStats:
    """Stream ``spec`` (camera index or path; with ``virtual`` a video file at its own frame rate) through
    the two-process pipeline, passing each ``LiveFrame`` to ``on_frame``. Raises ``SourceError`` when the
    source cannot be opened and RuntimeError when the landmark process fails."""
    options = options or LiveOptions()
    ctx = mp.get_context("spawn")  # a fresh interpreter: no torch thread pools inherited through fork
    recv, send = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    child = ctx.Process(
        target=_landmark_process,
        args=(spec, virtual, options, send, ready, max_seconds),
        name="handcap-live-landmarks",
    )
    child.daemon = True
    child.start()
    send.close()
    stats, ended = LiveStats(), False
    try:
        start = _receive_json(recv, child)
        if start["kind"] == "error":
            raise SourceError(start["message"])
        pose = PoseStage(tuple(start["size"]), start["fps"], options)
        ready.set()  # the stream starts once both stages are loaded
        cpu_pose, t_first, pending = 0.0, 0.0, []
        while (data := _newest(recv, child, pending, stats.skipped)) is not None:
            frame, t_read, (cpu_landmarks, cpu_reading), hands = _unpack(data)
            c = time.process_time()
            out = live_frame(frame, t_read, pose(frame, hands), pose.fps, pose.size, pose.k)
            if on_frame is not None:
                on_frame(out)
            cpu_pose += time.process_time() - c
            if stats.frames == 0:
                stats.first, t_first = frame, t_read
            stats.frames, stats.last = stats.frames + 1, frame
            stats.wall_s, stats.cpu_pose_s = out.t_done - t_first, cpu_pose
            stats.cpu_landmarks_s, stats.cpu_reading_s = cpu_landmarks, cpu_reading
        ended = True
    finally:
        recv.close()
        if not ended:  # stopped (Blender's SIGTERM, an error): stop the landmark stage now, camera and all
            child.terminate()
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()
            child.join(timeout=5)
    return stats


def _receive_json(conn, child) -> dict:
    data = _receive(conn, child)
    if data[:1] == _FRAME:
        raise RuntimeError("the live landmark process sent a frame before its start message")
    return json.loads(data)


def _receive(conn, child) -> bytes:
    try:
        return conn.recv_bytes()
    except EOFError:
        child.join(timeout=5)
        raise RuntimeError(f"the live landmark process ended unexpectedly (exit code {child.exitcode})") from None


def _newest(conn, child, pending: list[bytes], skipped: list[int]) -> bytes | None:
    """The newest frame message waiting (older ones are dropped, their frames added to ``skipped``: latency
    stays bounded), None at the end. ``pending`` holds a message read ahead (the end, met while looking
    for newer frames)."""
    data = pending.pop() if pending else _receive(conn, child)
    while data[:1] == _FRAME and conn.poll():
        newer = _receive(conn, child)
        if newer[:1] != _FRAME:
            pending.append(newer)  # pose the last frame first; the end comes with the next call
            break
        skipped.append(int(np.frombuffer(data, np.float64, 1, 1)[0]))
        data = newer
    if data[:1] == _FRAME:
        return data
    message = json.loads(data)
    if message.get("kind") == "error":
        raise RuntimeError(message["message"])
    return None


__all__ = ["LatestFrames", "LiveStats", "idle_fps", "run_pipelined"]
