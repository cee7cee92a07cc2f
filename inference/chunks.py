"""Chunked captures for farms: a clip split into overlapping frame ranges, each one's landmarks computed on its
own (any machine), then one deterministic merge per clip.

* ``plan_chunks``: the frame ranges (``ChunkSpec``), consecutive ones sharing ``overlap`` captured frames;
* ``capture_chunk``: one range's landmarks (the per-frame stage of a capture: decoding, palm detection,
  landmarks, tracking) as a ``ChunkResult``; ``chunk_to_bytes`` / ``chunk_from_bytes`` / ``write_chunk`` /
  ``read_chunk`` store it as an ``.npz`` (format ``handcap.chunk``, no pickle, written atomically). A chunk
  given its predecessor (``previous``) goes on from the tracker state that one had after its last frame
  (``chunk_tracker``) and computes only the frames after it (the overlap is the predecessor's): its
  landmarks are then the whole clip's, bit for bit, and the chunks of one clip run one after another (clips
  in parallel). Without it the chunk's tracker starts afresh at the chunk's first frame (chunks in parallel,
  landmarks pixels away from the whole clip's: the tracker does not converge back);
* ``merge_chunks``: the chunks' frames joined into one list of frame results: track ids of chained chunks
  are the clip's already; for independent chunks the overlap decides which chunk-local track is which hand
  of the clip (same keypoints in the shared frames). Shared frames whose two observations differ (only
  independent chunks, or machines whose networks round differently) are blended linearly from the earlier
  chunk to the later one; each hand's side is decided once from all its frames of the clip;
* ``merged_capture``: tracks and the hand-model fit over the merged clip (``capture_job``), so the clip gets
  one fit: one shape beta and one set of joint offsets per hand, whole-track steps, temporal priors exact.

Why the fit is per clip and not per chunk: the fit is one optimisation over the whole clip (identity shared by
all frames, depth and translation priors coupling neighbours, steps accepted on the track's total cost), so
fits of the chunks on their own are a different optimum; see docs/farm.md for the measured difference.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the landmarker loads torch: chunk files must be readable without it (Blender's Python)
    from .landmarker import FrameResult, HandObservation

CHUNK_FORMAT = "handcap.chunk"
CHUNK_VERSION = 2  # 2: the tracker state handed to the next chunk
DEFAULT_CHUNK_FRAMES = 300
DEFAULT_OVERLAP = 30


class ChunkError(ValueError):
    """A chunk plan, chunk file or set of chunks that cannot be used (the message says why)."""


@dataclass(frozen=True)
class ChunkSpec:
    """One frame range of a clip: source frames ``start`` .. ``stop - 1`` (0-based) at the clip's stride.

    index: position in the plan (0-based); count: chunks in the plan.
    """

    index: int
    count: int
    start: int
    stop: int

    @property
    def frames_arg(self) -> str:
        """The range as the command line's ``--frames A:B``."""
        return f"{self.start}:{self.stop}"


def plan_chunks(
    indices: range, chunk_frames: int = DEFAULT_CHUNK_FRAMES, overlap: int = DEFAULT_OVERLAP
) -> list[ChunkSpec]:
    """Split the captured frames ``indices`` (source frame indices, e.g. ``FrameSource.indices``) into chunks
    of at most ``chunk_frames`` captured frames, consecutive chunks sharing ``overlap`` of them.

    A frame is in at most two chunks (``2 * overlap <= chunk_frames``); the last chunk is shorter. A clip of
    at most ``chunk_frames`` frames is one chunk."""
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 2:
        raise ChunkError(f"chunk length must be an integer >= 2 frames, got {chunk_frames!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1 or 2 * overlap > chunk_frames:
        raise ChunkError(f"overlap must be 1 .. {chunk_frames // 2} frames (half a chunk at most), got {overlap!r}")
    n = len(indices)
    if n == 0:
        raise ChunkError("the clip has no frames to split")
    step = chunk_frames - overlap
    count = max(1, math.ceil((n - overlap) / step))
    out = []
    for k in range(count):
        a = k * step
        b = n if k == count - 1 else min(a + chunk_frames, n)
        out.append(ChunkSpec(k, count, int(indices[a]), int(indices[b - 1]) + 1))
    return out


@dataclass
class ChunkResult:
    """The landmarks of one chunk and what the merge needs to know about its clip.

    Attributes:
        source: the clip's path as given to the capture (names the merged capture's source).
        fps: the clip's frame rate; image_size: (width, height) pixels.
        chunk: this chunk's range; plan: every chunk of the clip (so the merge can tell a missing one).
        options: the clip's capture options (``CaptureOptions.to_json()``, frames = the clip's range).
        frames: one ``FrameResult`` per captured frame of the chunk, in order; track ids are the chunk's own.
            A chunk that ``follows`` holds only the frames after its predecessor's range, with the clip's ids.
        follows: the chunk went on from its predecessor's tracker state (``capture_chunk(previous=...)``).
        handoff: the tracker state after the chunk's last frame as ``chunk_tracker`` (meta, arrays); None
            for the last chunk, or when the clip's frames ended before the chunk's range did.
    """

    source: str
    fps: float
    image_size: tuple[int, int]
    chunk: ChunkSpec
    plan: list[ChunkSpec]
    options: dict
    frames: list = field(default_factory=list)  # FrameResult
    follows: bool = False
    handoff: tuple[dict, dict] | None = None


def capture_options_from_json(data: dict):
    """``CaptureOptions`` from its ``to_json()`` form (as stored in chunks and captures)."""
    from .capture_job import CaptureJobError, CaptureOptions

    try:
        return CaptureOptions.from_json(data)
    except (CaptureJobError, TypeError) as exc:  # an option this version does not have
        raise ChunkError(f"capture options from another HandCap version ({exc}): capture the chunks again") from None


def capture_chunk(
    options,
    chunk: ChunkSpec,
    plan: list[ChunkSpec],
    landmarker=None,
    progress=None,
    path: str | None = None,
    previous: ChunkResult | None = None,
) -> ChunkResult:
    """Landmarks of the source frames ``chunk.start .. chunk.stop - 1`` at ``options.stride``.

    options: the clip's ``CaptureOptions`` (its ``frames`` = the whole clip's range); landmarker: a ready
    ``HandLandmarker`` to reuse; progress(done, total) per frame; path: where this machine reads the clip
    (default ``options.source``, which still names the clip in the result); previous: the clip's chunk
    ``chunk.index - 1``, whose tracker state this chunk goes on from, from the frame after its range (None:
    a fresh tracker from ``chunk.start``)."""
    from .capture_job import resolve_device
    from .chunk_tracker import TrackerStateError, tracker_from_arrays, tracker_to_arrays
    from .landmarker import HandLandmarker, LandmarkerOptions
    from .sources import open_source
    from .tracking import TrackerState

    options.validate()
    state = None
    if previous is not None:
        same_clip = previous.plan == list(plan) and previous.options == options.to_json()
        if not same_clip or previous.chunk.index != chunk.index - 1:
            raise ChunkError(
                f"chunk {previous.chunk.index + 1} of {previous.chunk.count} is not the predecessor of chunk "
                f"{chunk.index + 1} of {len(plan)} of this clip with these options"
            )
        if previous.handoff is None:
            raise ChunkError(f"chunk {previous.chunk.index + 1} holds no tracker state (the clip ended in it)")
        try:
            state = tracker_from_arrays(*previous.handoff)
        except TrackerStateError as exc:
            raise ChunkError(f"chunk {previous.chunk.index + 1}: {exc}") from None
    source = open_source(path or options.source, frames=slice(chunk.start, chunk.stop), stride=options.stride)
    if landmarker is None:
        device = resolve_device(options.device)
        landmarker = HandLandmarker(
            LandmarkerOptions(max_hands=options.hands, device=device, mirrored_input=options.mirrored)
        )
    if state is None:
        state = TrackerState(landmarker.options.max_hands, tracking=landmarker.options.tracking)
    else:  # the frames up to the predecessor's end are its own: go on after them
        source.indices = source.indices[len(range(chunk.start, previous.chunk.stop, options.stride)) :]
    results = list(landmarker.iter_source(source, progress=progress, state=state))  # one tracker, in order
    whole = len(results) == len(source)  # the clip did not end early
    handoff = tracker_to_arrays(state) if whole and chunk.index + 1 < len(plan) else None
    return ChunkResult(
        str(options.source),
        source.fps,
        tuple(source.size),
        chunk,
        list(plan),
        options.to_json(),
        results,
        follows=previous is not None,
        handoff=handoff,
    )


# -- storage -----------------------------------------------------------------------------------------------
_OBS_FIELDS = {  # array name -> (HandObservation attribute, dtype, per-row shape)
    "obs.kp2d": ("kp2d", np.float64, (21, 2)),
    "obs.kp_z": ("kp_z", np.float64, (21,)),
    "obs.world": ("world", np.float64, (21, 3)),
    "obs.roi": ("roi", np.float64, (4,)),
    "obs.presence": ("presence", np.float64, ()),
    "obs.p_right": ("p_right", np.float64, ()),
}


def chunk_to_bytes(result: ChunkResult) -> bytes:
    """The chunk as ``.npz`` bytes: JSON ``meta`` plus one row per hand observation (float64, so a chunk read
    back is bit for bit the chunk computed)."""
    rows = [(i, h) for i, r in enumerate(result.frames) for h in r.hands]
    meta = {
        "format": CHUNK_FORMAT,
        "version": CHUNK_VERSION,
        "source": result.source,
        "fps": float(result.fps),
        "image_size": [int(v) for v in result.image_size],
        "chunk": [result.chunk.index, result.chunk.count, result.chunk.start, result.chunk.stop],
        "plan": [[c.index, c.count, c.start, c.stop] for c in result.plan],
        "options": result.options,
        "follows": bool(result.follows),
        "handoff": None if result.handoff is None else result.handoff[0],
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "frames": np.array([r.frame_index for r in result.frames], np.int64),
        "obs.row": np.array([i for i, _ in rows], np.int64),
        "obs.track": np.array([h.track_id for _, h in rows], np.int64),
    }
    for name, (attr, dtype, shape) in _OBS_FIELDS.items():
        arrays[name] = np.array([getattr(h, attr) for _, h in rows], dtype).reshape((len(rows), *shape))
    if result.handoff is not None:
        arrays.update(result.handoff[1])
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _load(data: bytes, name: str) -> tuple[dict, dict]:
    """(meta, arrays) of a chunk file's bytes (numpy only)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays["meta"]).decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # zip, npz, JSON, missing entries
        raise ChunkError(f"{name}: not a HandCap chunk file ({exc})") from None
    if meta.get("format") != CHUNK_FORMAT or meta.get("version") != CHUNK_VERSION:
        raise ChunkError(f"{name}: not a {CHUNK_FORMAT} v{CHUNK_VERSION} file (format {meta.get('format')!r})")
    return meta, arrays


def chunk_source(path: str | os.PathLike) -> str:
    """The clip a chunk file belongs to, read without the landmarker (so without torch)."""
    path = Path(path)
    if not path.is_file():
        raise ChunkError(f"{path}: no such chunk file")
    return str(_load(path.read_bytes(), str(path))[0]["source"])


def chunk_from_bytes(data: bytes, name: str = "chunk") -> ChunkResult:
    """Read ``chunk_to_bytes`` output; ChunkError names the problem (not a chunk, wrong version, bad shapes)."""
    meta, arrays = _load(data, name)
    from .landmarker import FrameResult, HandObservation

    frames, row = arrays.get("frames"), arrays.get("obs.row")
    n = 0 if row is None else len(row)
    for key, (_, _, shape) in {"obs.track": (None, None, ()), **_OBS_FIELDS}.items():
        if key not in arrays or arrays[key].shape != (n, *shape):
            raise ChunkError(f"{name}: entry {key} is missing or has the wrong shape")
    if frames is None or frames.ndim != 1 or (n and (row.min() < 0 or row.max() >= len(frames))):
        raise ChunkError(f"{name}: frame table and observation rows disagree")
    size = tuple(int(v) for v in meta["image_size"])
    results = [FrameResult(int(f), size) for f in frames]
    for j in range(n):
        values = {attr: arrays[key][j] for key, (attr, _, _) in _OBS_FIELDS.items()}
        values = {k: float(v) if v.ndim == 0 else v.copy() for k, v in values.items()}
        p_right = values["p_right"]
        side = "right" if p_right >= 0.5 else "left"
        obs = HandObservation(int(arrays["obs.track"][j]), side=side, side_score=max(p_right, 1 - p_right), **values)
        results[int(row[j])].hands.append(obs)
    spec = lambda v: ChunkSpec(*(int(x) for x in v))  # noqa: E731
    return ChunkResult(
        meta["source"],
        float(meta["fps"]),
        size,
        spec(meta["chunk"]),
        [spec(c) for c in meta["plan"]],
        meta["options"],
        results,
        follows=bool(meta["follows"]),
        handoff=None if meta["handoff"] is None else (meta["handoff"], _tracker_arrays(arrays)),
    )


def _tracker_arrays(arrays: dict) -> dict:
    from .chunk_tracker import PREFIX

    return {k: v for k, v in arrays.items() if k.startswith(PREFIX)}


def write_chunk(path: str | os.PathLike, result: ChunkResult) -> Path:
    """Write the chunk file atomically (temporary name in the same folder, then a rename)."""
    return write_bytes_atomic(path, chunk_to_bytes(result))


def read_chunk(path: str | os.PathLike) -> ChunkResult:
    path = Path(path)
    if not path.is_file():
        raise ChunkError(f"{path}: no such chunk file")
    return chunk_from_bytes(path.read_bytes(), str(path))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` into ``path`` through a temporary file in the same folder and a rename: a reader sees the
    old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# -- merge -------------------------------------------------------------------------------------------------
def check_chunks(chunks: list[ChunkResult]) -> list[ChunkResult]:
    """The chunks of one clip in plan order; ChunkError when they are not exactly one clip's whole plan."""
    if not chunks:
        raise ChunkError("no chunks to merge")
    first = chunks[0]
    for c in chunks[1:]:
        for what in ("source", "fps", "image_size", "plan", "options"):
            if getattr(c, what) != getattr(first, what):
                raise ChunkError(
                    f"chunks {first.chunk.index} and {c.chunk.index} come from different clips or captures ({what})"
                )
    by_index: dict[int, ChunkResult] = {}
    for c in chunks:
        if c.chunk.index in by_index:
            raise ChunkError(f"chunk {c.chunk.index + 1} of {c.chunk.count} given twice")
        if c.chunk not in first.plan:
            raise ChunkError(f"chunk {c.chunk.frames_arg} is not in its own plan")
        by_index[c.chunk.index] = c
    missing = [s.index + 1 for s in first.plan if s.index not in by_index]
    if missing:
        raise ChunkError(f"{first.source}: chunk(s) {', '.join(map(str, missing))} of {len(first.plan)} missing")
    return [by_index[s.index] for s in first.plan]


def _blend(a: HandObservation, b: HandObservation, w: float, track_id: int) -> HandObservation:
    """(1 - w) a + w b for the continuous quantities; the crop of the heavier one."""
    from .landmarker import HandObservation

    mix = lambda x, y: (1.0 - w) * np.asarray(x, np.float64) + w * np.asarray(y, np.float64)  # noqa: E731
    heavy = b if w >= 0.5 else a
    return HandObservation(
        track_id,
        mix(a.kp2d, b.kp2d),
        mix(a.kp_z, b.kp_z),
        mix(a.world, b.world),
        float(mix(a.presence, b.presence)),
        heavy.side,
        heavy.side_score,
        np.asarray(heavy.roi, np.float64).copy(),
        float(mix(a.p_right, b.p_right)),
    )


def _equal(a: HandObservation, b: HandObservation) -> bool:
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in ("kp2d", "kp_z", "world", "presence", "p_right"))


def _same_hand(h: HandObservation, g: HandObservation) -> bool:
    from .tracking import DUPLICATE_KP_FRACTION

    d = np.linalg.norm(np.asarray(h.kp2d) - np.asarray(g.kp2d), axis=-1).mean()
    return bool(d < DUPLICATE_KP_FRACTION * min(float(h.roi[2]), float(g.roi[2])))


def merge_chunks(chunks: list[ChunkResult]) -> list[FrameResult]:
    """One clip's frame results from its chunks (any order; ChunkError unless exactly the whole plan).

    Track identity across a seam: a chunk that ``follows`` its predecessor keeps its ids (they are the
    clip's); otherwise each later-chunk track takes the clip track it matches in the most shared frames
    (same hand = nearly the same keypoints; ties by track id, so the result is deterministic); a track seen
    only in its chunk gets a new id. Shared frames keep observations the two chunks agree on bit for bit and
    blend differing ones with weights rising linearly across the overlap; a hand seen by only one chunk there
    is kept as seen. Sides are then decided per clip track from all its frames, as for a whole-clip capture."""
    from .landmarker import FrameResult, finalize_sides

    chunks = check_chunks(chunks)
    merged: dict[int, FrameResult] = {}  # source frame -> merged result (global track ids)
    next_id = 0
    for c in chunks:
        shared = [r for r in c.frames if r.frame_index in merged]
        votes: dict[tuple[int, int], int] = {}
        for r in shared:
            for h in r.hands:
                for g in merged[r.frame_index].hands:
                    if _same_hand(h, g):
                        votes[(h.track_id, g.track_id)] = votes.get((h.track_id, g.track_id), 0) + 1
        mapping: dict[int, int] = {}
        if c.follows:  # its tracker went on from its predecessor's: the ids are the clip's already
            mapping = {h.track_id: h.track_id for r in c.frames for h in r.hands}
        for (local, glob), _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])):
            if local not in mapping and glob not in mapping.values():
                mapping[local] = glob
        for local in sorted({h.track_id for r in c.frames for h in r.hands}):
            if local not in mapping:
                mapping[local] = next_id
                next_id += 1
        next_id = max([next_id, *(v + 1 for v in mapping.values())])
        position = {r.frame_index: i for i, r in enumerate(shared)}
        for r in c.frames:
            hands = [_blend(h, h, 0.0, mapping[h.track_id]) for h in r.hands]  # copies with clip track ids
            old = merged.get(r.frame_index)
            if old is None:
                merged[r.frame_index] = FrameResult(r.frame_index, tuple(r.image_size), hands)
                continue
            # the later chunk's weight, rising across the overlap
            w = (position[r.frame_index] + 1) / (len(shared) + 1)
            mine = {h.track_id: h for h in hands}
            out = []
            for g in old.hands:
                h = mine.pop(g.track_id, None)
                if h is None or _equal(g, h):  # equal evidence stays bit for bit what it was
                    out.append(g)
                else:
                    out.append(_blend(g, h, w, g.track_id))
            out += mine.values()
            old.hands = sorted(out, key=lambda h: h.track_id)
    results = [merged[f] for f in sorted(merged)]
    for r in results:
        r.hands.sort(key=lambda h: h.track_id)
    return finalize_sides(results)


def merged_capture(chunks: list[ChunkResult], progress=None):
    """``CaptureResult`` of the whole clip from its chunks: ``merge_chunks``, then tracks and one fit over the
    clip with the capture options the chunks were made with (``capture_job.capture_from_landmarks``)."""
    from .capture_job import capture_from_landmarks

    chunks = check_chunks(chunks)
    first = chunks[0]
    options = capture_options_from_json(first.options)
    results = merge_chunks(chunks)
    return capture_from_landmarks(results, first.source, first.fps, first.image_size, options, progress=progress)
