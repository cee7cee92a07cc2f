"""``python -m handcap merge CHUNK... -o OUTDIR [--format ...]``: a clip's chunk files (``convert --chunk-out``)
merged into one capture, fitted once over the clip and converted as ``convert`` converts a video
(``--capture-out TAKE.npz``: write the merged capture only, no bpy needed). Also ``chunk_from_args``, the
``convert --chunk-out`` step. These are the pieces a Flamenco job runs (farm/flamenco/handcap_convert.js).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CliError
from .outputs import add_output_arguments, batch_options


def add_parser(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(
        name,
        help=help_text,
        description="Merge the chunk files of one clip (written by `convert --frames A:B --chunk-out CHUNK.npz`) "
        "into one capture, fit it over the whole clip and convert it. The capture options are the ones the "
        "chunks were made with. Exit code 0 on success, 1 when the merge or conversion failed, 2 bad options.",
    )
    p.add_argument("chunks", nargs="+", metavar="CHUNK.npz", help="every chunk file of the clip (any order)")
    p.add_argument("-o", "--outdir", default="", help="output folder (created if needed)")
    p.add_argument("--capture-out", default="", metavar="TAKE.npz", help="write the merged capture here, no conversion")
    p.add_argument("--name", default="", help="output file name without extension (default: the clip's name)")
    add_output_arguments(p)
    p.set_defaults(run=run)


def merged_from_args(args: argparse.Namespace):
    """(CaptureResult, the clip's file name, output stem) of the chunks named on the command line."""
    from ..inference.chunks import ChunkError, merged_capture, read_chunk

    try:
        chunks = [read_chunk(p) for p in args.chunks]
        result = merged_capture(chunks)
    except ChunkError as exc:
        raise CliError(str(exc)) from None
    name = Path(chunks[0].source).name
    return result, name, args.name or Path(name).stem or "capture"


def run(args: argparse.Namespace) -> int:
    if bool(args.outdir) == bool(args.capture_out):
        raise CliError("give either -o OUTDIR (merge and convert) or --capture-out TAKE.npz (merge only)")
    try:
        from ..core.capture import write_capture
        from ..inference.sources import IMAGE_EXTS, VIDEO_EXTS
    except ImportError as exc:
        raise CliError(f"merging needs the inference requirements ({exc}); pip install handcap[inference]") from None
    if args.capture_out:
        try:
            result, name, _ = merged_from_args(args)
        except ValueError as exc:  # NoHandError, FitError: the chunks hold no usable hand
            print(f"handcap merge: FAILED: {exc}", file=sys.stderr)
            return 1
        write_capture(args.capture_out, result.capture)
        print(
            f"wrote {args.capture_out} ({result.capture.num_frames} frames, hands: {', '.join(result.capture.hands)})"
        )
        return 0
    try:
        import bpy  # noqa: F401
    except ImportError:
        raise CliError("converting needs bpy (pip install bpy==5.0.1), or use --capture-out") from None
    from ..builders.batch import BatchError, check_options
    from ..farm.jobs import merge_and_convert

    batch = batch_options(args, args.chunks, frozenset(IMAGE_EXTS | VIDEO_EXTS))
    try:
        check_options(batch)
    except BatchError as exc:
        raise CliError(str(exc)) from None
    try:
        result, name, stem = merged_from_args(args)
        for note in result.warnings:
            print(f"  note: {note}")
        outputs = merge_and_convert(result.capture, stem, name, Path(args.outdir), batch)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"handcap merge: FAILED: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"merged {len(args.chunks)} chunk(s) of {name} -> {', '.join(Path(o).name for o in outputs)}")
    return 0


def chunk_from_args(args: argparse.Namespace) -> int:
    """``convert INPUT --frames A:B --chunk-out CHUNK.npz [--after-chunk PREV.npz]``: the landmarks of one chunk
    into a chunk file, going on from the previous chunk's tracker state when it is given."""
    from ..inference.chunks import ChunkError, capture_chunk, plan_chunks, read_chunk, write_chunk
    from ..inference.sources import open_source
    from .capture import options_from_args

    if len(args.inputs) != 1:
        raise CliError("--chunk-out takes exactly one INPUT (one chunk of one clip per call)")
    if args.frames is None or None in args.frames:
        raise CliError("--chunk-out needs the chunk's range as --frames A:B")
    source = args.inputs[0]
    options = options_from_args(source, args)
    options.frames = None  # the chunk is a part of the whole clip
    try:
        options.validate()
        plan = plan_chunks(open_source(source, stride=options.stride).indices, args.chunk_frames, args.overlap)
        spec = next((c for c in plan if (c.start, c.stop) == tuple(args.frames)), None)
        if spec is None:
            listed = ", ".join(c.frames_arg for c in plan[:8]) + (" ..." if len(plan) > 8 else "")
            raise ChunkError(
                f"--frames {args.frames[0]}:{args.frames[1]} is not a chunk of {source} with --chunk-frames "
                f"{args.chunk_frames} --overlap {args.overlap} (its chunks: {listed})"
            )
        previous = read_chunk(args.after_chunk) if getattr(args, "after_chunk", "") else None
        result = capture_chunk(options, spec, plan, previous=previous)
        Path(args.chunk_out).parent.mkdir(parents=True, exist_ok=True)
        write_chunk(args.chunk_out, result)
    except (ValueError, OSError) as exc:  # SourceError, ChunkError, CaptureJobError carry the reason
        raise CliError(str(exc)) from None
    hands = sum(len(r.hands) for r in result.frames)
    print(
        f"wrote {args.chunk_out}: chunk {spec.index + 1}/{spec.count} of {source}, frames {spec.frames_arg}, "
        f"{hands} hand observation(s)"
    )
    return 0
