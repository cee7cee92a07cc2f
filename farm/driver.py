"""The Ray driver behind ``python -m handcap farm``: a clip library converted on a Ray cluster.

Per clip: one chunk task per frame range (landmarks, ``jobs.chunk_job``; CPUs / GPUs declared), each going on
from its predecessor's tracker state (so a clip's chunks run in order, and clips in parallel), then one merge
task (merged capture, fit, conversion, ``jobs.merge_job``). No disk is shared: the driver puts each clip's
bytes into Ray's object store once (each node fetches it once), chunk results and output files come back as
bytes, and only the driver writes, atomically, into OUTDIR and its ``.handcap-farm/`` manifest. A worker that
dies mid-task is retried by Ray (``max_retries``); an input whose task raises is reported and the others go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..inference.chunks import DEFAULT_CHUNK_FRAMES, DEFAULT_OVERLAP, ChunkSpec, plan_chunks, write_bytes_atomic
from .manifest import Manifest, clip_key


class FarmError(ValueError):
    """The farm run cannot start (no Ray, no inputs, cluster unreachable, bad options)."""


@dataclass
class FarmOptions:
    """A farm run.

    Attributes:
        batch: ``builders.batch.BatchOptions`` of the conversion (inputs, outdir, format, retargeting ...).
        capture: the clip's ``CaptureOptions`` with an empty ``source`` (filled per input).
        chunk_frames / overlap: captured frames per chunk and shared between neighbours (``plan_chunks``).
        address: Ray cluster address ("auto", "host:port", "ray://host:port"); None starts a local Ray.
        num_cpus: CPUs of that local Ray (None: all); node_ip_address: this machine's address for Ray.
        cpus_per_chunk / gpus_per_chunk: resources a chunk task declares; max_retries: Ray's retries of a task
            whose worker died.
        check: a check of the options that may be slow (the fit's options load torch), run once the first
            tasks are sent, so it overlaps the workers' start; its ValueError stops the run (FarmError).
    """

    batch: object
    capture: object
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    overlap: int = DEFAULT_OVERLAP
    address: str | None = None
    num_cpus: int | None = None
    node_ip_address: str | None = None
    cpus_per_chunk: float = 1.0
    gpus_per_chunk: float = 0.0
    max_retries: int = 3
    check: Callable[[], None] | None = None


@dataclass(eq=False)  # one object per input: hashed by identity
class Clip:
    """One input in the run: its chunk plan and what is done."""

    number: int
    path: Path
    stem: str
    key: str = ""
    options: dict = field(default_factory=dict)
    plan: list[ChunkSpec] = field(default_factory=list)
    chunks: dict[int, bytes] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    reused: int = 0
    ref: object = None  # the clip's bytes in the object store while chunks are pending


@dataclass
class FarmReport:
    clips: list[Clip]
    unmatched: list[str]
    chunks_run: int = 0
    chunks_reused: int = 0

    @property
    def failed(self) -> list[Clip]:
        return [c for c in self.clips if c.error]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.unmatched else 0


def _fmt(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _task_error(exc: BaseException) -> str:
    """The user-facing cause of a failed Ray task (its own exception, not Ray's wrapper)."""
    cause = getattr(exc, "cause", None)
    return _one_line(cause) if isinstance(cause, BaseException) else _one_line(exc)


def _plan_clips(options: FarmOptions, log) -> tuple[list[Clip], list[str]]:
    from ..builders.batch import expand_inputs, output_stems
    from ..inference.sources import IMAGE_EXTS, VIDEO_EXTS, open_source

    files, unmatched = expand_inputs(options.batch.inputs, IMAGE_EXTS | VIDEO_EXTS)
    for pattern in unmatched:
        log(f"warning: {pattern}: matched no file")
    if not files:
        raise FarmError(f"no input files found in {', '.join(options.batch.inputs)}")
    clips = []
    for i, (path, stem) in enumerate(zip(files, output_stems(files), strict=True)):
        clip = Clip(i + 1, path, stem)
        clips.append(clip)
        try:
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            if path.suffix.lower() not in IMAGE_EXTS | VIDEO_EXTS:
                raise ValueError(f"not a video or photo ({path.suffix or 'no extension'}); convert takes captures")
            capture = dataclasses.replace(options.capture, source=str(path))
            capture.validate()
            frames = None if capture.frames is None else slice(*capture.frames)
            src = open_source(str(path), frames=frames, stride=capture.stride)
            clip.options = capture.to_json()
            clip.plan = plan_chunks(src.indices, options.chunk_frames, options.overlap)
            clip.key = clip_key(path, clip.options, [dataclasses.astuple(c) for c in clip.plan])
        except (ValueError, OSError) as exc:
            clip.error = _one_line(exc)
            log(f"[{clip.number}/{len(files)}] {path.name}: FAILED: {clip.error}")
    return clips, unmatched


def _init_ray(options: FarmOptions):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise FarmError('farm needs Ray: pip install "handcap[farm]" (or ray==2.60.0)') from None
    kwargs: dict = {"log_to_driver": False, "logging_level": "warning"}
    if options.node_ip_address:
        kwargs["_node_ip_address"] = options.node_ip_address
    if options.address:
        kwargs["address"] = options.address
    else:
        kwargs.update(num_cpus=options.num_cpus, include_dashboard=False)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FarmError(
            f"cannot reach the Ray cluster at {options.address or 'a new local instance'}: {_one_line(exc)}"
        ) from None
    return ray


def run_farm(options: FarmOptions, log: Callable[[str], None] = print) -> FarmReport:
    """Convert every input on the cluster; a failed input is reported and the others still converted."""
    from ..builders.batch import check_options

    batch = options.batch
    try:
        check_options(batch)
    except ValueError as exc:
        raise FarmError(str(exc)) from None
    clips, unmatched = _plan_clips(options, log)
    outdir = Path(batch.outdir)
    manifest = Manifest(outdir)
    convert_key = hashlib.sha256(
        json.dumps(
            dataclasses.asdict(dataclasses.replace(batch, inputs=[], outdir="")), sort_keys=True, default=sorted
        ).encode("utf-8")
    ).hexdigest()[:16]
    report = FarmReport(clips, unmatched)
    todo: list[tuple[Clip, ChunkSpec]] = []
    for clip in clips:
        if clip.error:
            continue
        done = manifest.finished_outputs(clip.key, clip.stem, convert_key, outdir)
        if done is not None:
            clip.outputs = done
            log(f"[{clip.number}/{len(clips)}] {clip.path.name}: up to date -> {', '.join(done)}")
            continue
        for spec in clip.plan:
            data = manifest.finished_chunk(clip.key, clip.stem, spec.index)
            if data is None:
                todo.append((clip, spec))
            else:
                clip.chunks[spec.index] = data
                clip.reused += 1
        report.chunks_reused += clip.reused
        if clip.reused:
            log(
                f"[{clip.number}/{len(clips)}] {clip.path.name}: {clip.reused} of {len(clip.plan)} chunk(s) "
                "already finished, reused"
            )
    _refuse_overwrite(clips, outdir, batch)
    pending_merge = [c for c in clips if not c.error and not c.outputs and len(c.chunks) == len(c.plan)]
    if todo or pending_merge:
        ray = _init_ray(options)
        try:
            _run(ray, options, clips, todo, pending_merge, manifest, convert_key, report, log)
        finally:
            ray.shutdown()
    ok = sum(1 for c in clips if not c.error)
    log(
        f"farm: converted {ok} of {len(clips)} inputs into {outdir}; chunks: {report.chunks_run} run, "
        f"{report.chunks_reused} reused"
    )
    for c in report.failed:
        log(f"  failed: {c.path}: {c.error}")
    return report


def _refuse_overwrite(clips: list[Clip], outdir: Path, batch) -> None:
    """As ``convert``: existing files the run would write are replaced only with ``overwrite`` (files this farm
    run's manifest recorded as its own, unchanged, count as up to date and are not written again)."""
    from ..builders.batch import planned_outputs

    todo = [c for c in clips if not c.error and not c.outputs]
    planned = planned_outputs([c.path for c in todo], [c.stem for c in todo], outdir, batch)
    existing = [p for p in planned if p.exists()]
    if existing and not batch.overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise FarmError(f"{existing[0]}{more} already exist(s) in {outdir}: pass --overwrite to replace them")


def _run(ray, options, clips, todo, pending_merge, manifest, convert_key, report, log) -> None:
    from . import jobs

    chunk_task = ray.remote(jobs.timed_chunk_job).options(
        num_cpus=options.cpus_per_chunk,
        num_gpus=options.gpus_per_chunk,
        max_retries=options.max_retries,
        retry_exceptions=False,
    )
    merge_task = ray.remote(jobs.timed_merge_job).options(
        num_cpus=1, max_retries=options.max_retries, retry_exceptions=False
    )
    batch, outdir, n = options.batch, Path(options.batch.outdir), len(clips)
    running: dict = {}  # object ref -> ("chunk", clip, spec) | ("merge", clip, None)
    total_new, done_new, start = len(todo), 0, time.monotonic()

    def submit_merge(clip: Clip) -> None:
        blobs = [clip.chunks[s.index] for s in clip.plan]
        running[merge_task.remote(blobs, clip.stem, clip.path.name, batch)] = ("merge", clip, None)

    # clips are sent a few at a time: the object store holds only the bytes of clips with chunks in flight
    waiting: dict[Clip, list[ChunkSpec]] = {}
    for clip, spec in todo:
        waiting.setdefault(clip, []).append(spec)
    active: set = set()
    limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

    def fill() -> None:
        while waiting and len(active) < limit:
            clip, specs = next(iter(waiting.items()))
            del waiting[clip]
            try:
                clip.ref = ray.put(clip.path.read_bytes())
            except OSError as exc:
                clip.error = f"cannot read the clip: {_one_line(exc)}"
                log(f"[{clip.number}/{n}] {clip.path.name}: FAILED: {clip.error}")
                continue
            active.add(clip)
            plan = [dataclasses.astuple(c) for c in clip.plan]
            # a clip's chunks form a chain: each goes on from its predecessor's tracker state (a finished
            # chunk's file, or the pending task's result, which Ray hands over when that task is done), so the
            # landmarks are the whole clip's; different clips' chains run in parallel
            previous = None
            for spec in clip.plan:
                if spec not in specs:
                    previous = clip.chunks[spec.index]
                    continue
                args = (clip.ref, clip.path.name, clip.options, dataclasses.astuple(spec), plan, previous)
                previous = chunk_task.remote(*args)
                running[previous] = ("chunk", clip, spec)

    for clip in pending_merge:
        submit_merge(clip)
    fill()
    if options.check is not None:
        try:
            options.check()
        except ValueError as exc:  # a bad option: nothing of this run is written (run_farm stops Ray)
            raise FarmError(str(exc)) from None
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        kind, clip, spec = running.pop(ready[0])
        if clip.error:  # an earlier chunk of this clip failed: the rest is moot
            fill()
            continue
        try:
            value = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - ray.get re-raises the task's own error: this input failed
            clip.error = f"{kind} task failed: {_task_error(exc)}"
            clip.ref = None
            active.discard(clip)
            fill()
            log(f"[{clip.number}/{n}] {clip.path.name}: FAILED: {clip.error}")
            continue
        if kind == "chunk":
            data, seconds, loading = value
            manifest.record_chunk(clip.key, clip.stem, spec.index, data)
            clip.chunks[spec.index] = data
            report.chunks_run += 1
            done_new += 1
            eta = (time.monotonic() - start) / done_new * (total_new - done_new)
            log(
                f"[{clip.number}/{n}] {clip.path.name}: chunk {spec.index + 1}/{spec.count} "
                f"(frames {spec.start}-{spec.stop - 1}) done in {seconds:.1f} s"
                + (f" ({loading:.1f} s of it loading the networks)" if loading >= 0.05 else "")
                + f", ETA {_fmt(eta)}"
            )
            if len(clip.chunks) == len(clip.plan):
                clip.ref = None  # no more chunk tasks need the clip's bytes
                active.discard(clip)
                submit_merge(clip)
                fill()
        else:
            files, notes, seconds = value
            for name, blob in sorted(files.items()):
                (outdir / name).parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(outdir / name, blob)
            manifest.record_outputs(clip.key, clip.stem, convert_key, files)
            clip.outputs = sorted(files)
            for note in notes:
                log(f"  note: {clip.path.name}: {note}")
            log(
                f"[{clip.number}/{n}] {clip.path.name}: ok -> {', '.join(clip.outputs)} "
                f"(merge and convert {seconds:.1f} s)"
            )
