"""The farm's units of work as plain functions (no Ray here): what a Ray task, a Flamenco task and the
``merge`` command run.

* ``chunk_job``: one chunk's landmarks -> chunk file bytes (``inference.chunks``). The clip comes as bytes
  (from the driver, through Ray's object store: no shared disk between machines) or as a path;
* ``merge_job``: a clip's chunk files -> the merged capture -> the batch conversion's output files, returned
  as bytes so that the driver, not the worker, writes them;
* ``merge_and_convert``: the merged capture through ``builders.batch.convert_one`` into a folder (bpy).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=2)
def _landmarker(max_hands: int, device: str, mirrored: bool):
    """The landmark networks, loaded once per worker process (Ray reuses its workers across tasks) and never
    changed after loading; each capture makes its own tracker state."""
    from ..inference.landmarker import HandLandmarker, LandmarkerOptions

    return HandLandmarker(LandmarkerOptions(max_hands=max_hands, device=device, mirrored_input=mirrored))


def chunk_job(clip: bytes | str, name: str, options: dict, chunk: tuple, plan: list[tuple]) -> bytes:
    """Landmarks of one chunk as chunk-file bytes.

    clip: the clip's bytes or a path readable here; name: its file name (the suffix tells the decoder the
    container); options: ``CaptureOptions.to_json()`` of the clip; chunk / plan: ``ChunkSpec`` fields."""
    from ..inference.capture_job import resolve_device
    from ..inference.chunks import ChunkSpec, capture_chunk, capture_options_from_json, chunk_to_bytes

    opts = capture_options_from_json(options)
    spec = ChunkSpec(*chunk)
    specs = [ChunkSpec(*c) for c in plan]
    lm = _landmarker(opts.hands, resolve_device(opts.device), opts.mirrored)
    if isinstance(clip, str):
        return chunk_to_bytes(capture_chunk(opts, spec, specs, landmarker=lm, path=clip))
    with tempfile.TemporaryDirectory(prefix="handcap-chunk-") as work:
        local = Path(work) / Path(name).name
        local.write_bytes(clip)
        return chunk_to_bytes(capture_chunk(opts, spec, specs, landmarker=lm, path=str(local)))


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
        from .. import register  # bpy as a module: HandCap's classes hold what the saved files need

        register()
    options = dataclasses.replace(batch, outdir=str(outdir), inputs=[name])
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="handcap-clip-") as work:
        stand_in = Path(work) / Path(name).name  # the clip itself may live on another machine
        stand_in.write_bytes(b"")
        return convert_one(stand_in, stem, outdir, options, lambda _src, out: write_capture(out, capture), log)


def timed_chunk_job(*args) -> tuple[bytes, float]:
    """``chunk_job`` and its seconds on the worker (for the driver's progress lines)."""
    import time

    start = time.perf_counter()
    return chunk_job(*args), time.perf_counter() - start


def timed_merge_job(*args) -> tuple[dict[str, bytes], list[str], float]:
    """``merge_job`` and its seconds on the worker."""
    import time

    start = time.perf_counter()
    files, notes = merge_job(*args)
    return files, notes, time.perf_counter() - start
