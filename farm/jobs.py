"""The farm's units of work as plain functions (no Ray here): what a Ray task, a Flamenco task and the
``merge`` command run.

* ``chunk_job``: one chunk's landmarks -> chunk file bytes (``inference.chunks``), going on from its
  predecessor's tracker state (the predecessor's chunk file), so that the landmarks are the whole clip's. The
  clip comes as bytes (from the driver, through Ray's object store: no shared disk between machines) or as
  a path;
* ``merge_job``: a clip's chunk files -> the merged capture -> the batch conversion's output files, returned
  as bytes so that the driver, not the worker, writes them;
* ``merge_and_convert``: the merged capture through ``builders.batch.convert_one`` into a folder (bpy).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from pathlib import Path


def _landmarker(options: dict):
    """The landmarker of these capture options (``capture_job.landmarker_for``, as ``convert`` makes it), loaded
    once per worker process: Ray reuses its workers across tasks, and the networks are never changed after
    loading (each chunk has its own tracker state). Keyed on the options without the clip's own fields."""
    return _cached_landmarker(json.dumps({**options, "source": "", "frames": None}, sort_keys=True))


@functools.lru_cache(maxsize=2)
def _cached_landmarker(key: str):
    from ..inference.capture_job import landmarker_for
    from ..inference.chunks import capture_options_from_json

    return landmarker_for(capture_options_from_json(json.loads(key)))


def chunk_job(clip: bytes | str, name: str, options: dict, chunk: tuple, plan: list[tuple], previous=None) -> bytes:
    """Landmarks of one chunk as chunk-file bytes.

    clip: the clip's bytes or a path readable here; name: its file name (the suffix tells the decoder the
    container); options: ``CaptureOptions.to_json()`` of the clip; chunk / plan: ``ChunkSpec`` fields;
    previous: the chunk file (bytes) of chunk ``index - 1``, or ``timed_chunk_job``'s result for it (what
    Ray hands over from the predecessor task); None for the first chunk."""
    from ..inference.chunks import ChunkSpec, capture_chunk, capture_options_from_json, chunk_from_bytes, chunk_to_bytes

    opts = capture_options_from_json(options)
    spec = ChunkSpec(*chunk)
    specs = [ChunkSpec(*c) for c in plan]
    if isinstance(previous, tuple):
        previous = previous[0]
    before = None if previous is None else chunk_from_bytes(previous, f"{name} chunk {spec.index}")
    lm = _landmarker(options)
    if isinstance(clip, str):
        return chunk_to_bytes(capture_chunk(opts, spec, specs, landmarker=lm, path=clip, previous=before))
    with tempfile.TemporaryDirectory(prefix="handcap-chunk-") as work:
        local = Path(work) / Path(name).name
        local.write_bytes(clip)
        return chunk_to_bytes(capture_chunk(opts, spec, specs, landmarker=lm, path=str(local), previous=before))


def merge_job(chunks: list[bytes], stem: str, name: str, batch) -> tuple[dict[str, bytes], list[str]]:
    """A clip's chunk files (bytes) -> ({output path relative to OUTDIR: bytes}, notes): merged capture, fit,
    conversion. name: the clip's file name; batch: the run's ``builders.batch.BatchOptions`` (its ``outdir``
    is ignored: the outputs come back as bytes)."""
    from ..inference.chunks import chunk_from_bytes, merged_capture

    result = merged_capture([chunk_from_bytes(b, f"{stem} chunk") for b in chunks])
    with tempfile.TemporaryDirectory(prefix="handcap-merge-") as work:
        out = Path(work) / "out"
        out.mkdir()
        notes = list(result.warnings)
        merge_and_convert(result.capture, stem, name, out, batch, log=notes.append)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}, notes


def merge_and_convert(capture, stem: str, name: str, outdir: Path, batch, log=print) -> list[str]:
    """Convert a merged capture exactly as ``convert`` converts the clip's own capture: the clip's file name
    (``name``) stands for the input (its suffix makes it a video for ``builders.batch.convert_one``), and the
    capture step hands over the merged capture. Returns the files ``convert_one`` reports."""
    import bpy

    from ..builders.batch import convert_one
    from ..core.capture import write_capture

    if not hasattr(bpy.types.Object, "handcap_smoothing"):
        from ..registration import register  # bpy as a module: HandCap's classes hold what the saved files need

        register()
    options = dataclasses.replace(batch, outdir=str(outdir), inputs=[name])
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="handcap-clip-") as work:
        stand_in = Path(work) / Path(name).name  # the clip itself may live on another machine
        stand_in.write_bytes(b"")
        return convert_one(stand_in, stem, outdir, options, lambda _src, out: write_capture(out, capture), log)


def timed_chunk_job(*args) -> tuple[bytes, float, float]:
    """``chunk_job``, its seconds on the worker and the part of them spent loading torch and the networks (only a
    worker's first chunk pays it), for the driver's progress lines."""
    import time

    start = time.perf_counter()
    _landmarker(args[2])
    loaded = time.perf_counter()
    return chunk_job(*args), time.perf_counter() - start, loaded - start


def timed_merge_job(*args) -> tuple[dict[str, bytes], list[str], float]:
    """``merge_job`` and its seconds on the worker."""
    import time

    start = time.perf_counter()
    files, notes = merge_job(*args)
    return files, notes, time.perf_counter() - start
