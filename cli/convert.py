"""``python -m handcap convert INPUTS... -o OUTDIR --format blend|fbx|bvh|glb [--retarget RIG.blend ...]``.

Needs bpy (``pip install bpy==5.0.1`` on Python 3.11, as the dev environment has). Videos and photos are
captured in this process by the capture core function; ``.npz`` captures are imported directly. The
same arguments work inside Blender: ``blender -b -c handcap convert ...`` (``blender_cli.py``).
Exit code: 0 all converted, 1 some input failed, 2 the run could not start (bad options).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CliError
from .outputs import add_output_arguments, batch_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by every way of running the batch (also used by ``blender_cli``)."""
    from .capture import add_capture_arguments

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, photos, .npz captures, folders or globs")
    p.add_argument("-o", "--outdir", required=True, help="output folder (created if needed)")
    add_output_arguments(p)
    # The same capture options as ``python -m handcap capture``.
    add_capture_arguments(p.add_argument_group("capture (videos and photos)"))
    # --- chunked capture for farms (issue 17; farm/, inference/chunks.py) ---
    from ..inference.chunks import DEFAULT_CHUNK_FRAMES, DEFAULT_OVERLAP

    c = p.add_argument_group("chunks (farms: see `handcap merge` and docs/farm.md)")
    c.add_argument(
        "--chunk-out",
        metavar="CHUNK.npz",
        default="",
        help="capture only the landmarks of the chunk --frames A:B of the one INPUT into this chunk file "
        "(no conversion; A:B must be a chunk of the plan that --chunk-frames / --overlap make of the clip)",
    )
    c.add_argument(
        "--chunk-frames",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        metavar="N",
        help=f"captured frames per chunk (default {DEFAULT_CHUNK_FRAMES})",
    )
    c.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        metavar="N",
        help=f"frames shared by neighbouring chunks (default {DEFAULT_OVERLAP})",
    )
    c.add_argument(
        "--after-chunk",
        metavar="PREV.npz",
        default="",
        help="the chunk file of the chunk before this one: go on from its tracker state, so that the landmarks "
        "are the whole clip's (without it the chunk's tracker starts afresh)",
    )
    # --- end of chunked capture ---


def add_parser(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(
        name,
        help=help_text,
        description="Convert videos, photos and capture files into .blend / .fbx / .bvh / .glb files, optionally "
        "retargeted onto a rig. One failed input is reported and the rest still converted; exit code 1 when "
        "anything failed, 2 when the run could not start. Needs bpy (pip install bpy==5.0.1).",
    )
    add_arguments(p)
    p.set_defaults(run=run)


def run_batch(args: argparse.Namespace, capture_fn, media_exts: frozenset[str], log=print) -> int:
    """Run the batch with the given capture function; BatchError becomes CliError (exit code 2)."""
    import bpy

    from ..builders.batch import BatchError
    from ..builders.batch import run_batch as core

    registered = not hasattr(bpy.types.Object, "handcap_smoothing")
    if registered:
        # bpy as a module, or a script run from a checkout, without the extension enabled: register HandCap's
        # classes, whose properties hold what the saved files need (the smoothing's raw keys and settings)
        from ..registration import register

        register()
    try:
        return core(batch_options(args, args.inputs, media_exts), capture_fn, log).exit_code
    except BatchError as exc:
        raise CliError(str(exc)) from None
    finally:
        if registered:  # bpy 4.2 / 4.5 modules crash / hang at exit with Python classes still registered
            from ..registration import unregister

            unregister()


def in_process_capture(args: argparse.Namespace, log=print):
    """A capture function running inference in this process (torch, opencv); the landmark networks are
    loaded once and reused for every input."""
    from .capture import options_from_args

    options_from_args("check", args)  # option errors (CliError) before the first input
    state: dict = {}

    def capture(src: Path, out: Path) -> None:
        # torch loads on the first video, not for runs of .npz captures only
        from ..core.capture import write_capture
        from ..inference.capture_job import PHOTO_RANGE_NOTE, landmarker_for, run_capture

        options = options_from_args(src, args)
        if "landmarker" not in state:
            state["landmarker"] = landmarker_for(options)
        result = run_capture(options, progress=_throttled(log), landmarker=state["landmarker"])
        for warning in result.warnings:
            if warning == PHOTO_RANGE_NOTE:
                if state.get("said_photo_range"):
                    continue  # said once per batch
                state["said_photo_range"] = True
            log(f"  note: {warning}")
        write_capture(out, result.capture)

    return capture


def _throttled(log, every_s: float = 10.0):
    """progress(stage, done, total) -> a log line at most every ``every_s`` seconds per stage, and at the end."""
    import time

    last: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last.setdefault(stage, now) >= every_s:
            last[stage] = now
            log(f"  {stage}: {done}/{total}")

    return progress


def run(args: argparse.Namespace) -> int:
    # --- chunked capture for farms (issue 17): landmarks only, no bpy needed ---
    if getattr(args, "chunk_out", ""):
        from .merge import chunk_from_args

        return chunk_from_args(args)
    # --- end of chunked capture ---
    try:
        import bpy  # noqa: F401
    except ImportError:
        raise CliError(
            "convert needs bpy (pip install bpy==5.0.1 on Python 3.11), or run it inside Blender: "
            "blender -b -c handcap convert ..."
        ) from None
    try:
        from ..inference import sources  # noqa: F401 - opencv: decoding videos and photos
    except ImportError as exc:
        raise CliError(f"capturing needs the inference requirements ({exc}); pip install handcap[inference]") from None
    from ..core.media import MEDIA_EXTS

    return run_batch(args, in_process_capture(args), MEDIA_EXTS)
