"""Batch conversion from Blender's own command line, sharing ``builders.batch.run_batch`` with
``python -m handcap convert``:

* ``blender -b -c handcap convert INPUTS... -o OUTDIR [--format ...]`` (registered with
  ``bpy.utils.register_cli_command`` while the extension is enabled);
* ``blender -b -P tools/blender_batch.py -- convert INPUTS... -o OUTDIR`` (no install needed).

Inside Blender, videos and photos are captured by the inference worker (``python -m handcap capture``
in the interpreter chosen in the preferences), so Blender's own Python needs no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HANDLE = None


def worker_capture(request):
    """A capture function that runs each capture of the batch's ``CaptureRequest`` (its ``source`` is set per
    input) in the inference worker and waits for it."""

    def capture(src: Path, out: Path) -> None:
        import dataclasses
        import shutil

        import bpy

        from .operators.worker import CaptureJob

        job = CaptureJob(dataclasses.replace(request, source=str(src)), _interpreter(bpy.context)).start()
        try:
            state = job.wait()
            if state != job.FINISHED:
                raise RuntimeError(job.error or f"capture {state.lower()}")
            shutil.copyfile(job.output, out)
        finally:
            job.cleanup()

    return capture


def _interpreter(context):
    """The worker's interpreter per HandCap's preferences; without them (run from a checkout with -P, the
    extension not enabled) the same rules with no preferred interpreter."""
    import sys as _sys

    from .operators import interpreter as interp
    from .operators.settings import resolve_interpreter, venv_dir

    try:
        return resolve_interpreter(context)
    except KeyError:
        return interp.choose_interpreter("", _sys.executable, venv_dir(), interp.requirements_importable_here())


def build_parser(prog: str) -> argparse.ArgumentParser:
    from .cli.convert import add_arguments

    parser = argparse.ArgumentParser(prog=prog, description="HandCap batch conversion inside Blender")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_arguments(sub.add_parser("convert", help="videos/photos/captures -> .blend/.fbx/.bvh/.glb"))
    # --- farms (issue 17): `merge` of a clip's chunk files; `convert --chunk-out` is in add_arguments ---
    from .cli.merge import add_parser as add_merge

    add_merge(sub, "merge", "a clip's chunk files (convert --chunk-out) -> .blend/.fbx/.bvh/.glb")
    # --- end of farms ---
    return parser


def batch_request(args: argparse.Namespace):
    """The batch's capture options as one ``CaptureRequest`` (no source: each input sets its own), checked
    before the first input; the worker checks the fit options. CliError names a bad option."""
    from .cli import CliError
    from .core.request import CaptureRequest, CaptureRequestError

    try:
        return CaptureRequest.from_args("", args)
    except CaptureRequestError as exc:
        raise CliError(str(exc)) from None


def main(argv: list[str], prog: str = "blender -b -c handcap") -> int:
    """Parse ``argv`` (after the command id) and run the batch; returns the exit code (0, 1 or 2)."""
    from .cli import CliError
    from .cli.convert import run_batch
    from .core.media import MEDIA_EXTS

    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments
        return int(exc.code or 0)
    try:
        # --- farms (issue 17): chunks and merges run their inference in the worker, like captures ---
        if args.command == "merge":
            return _merge_in_blender(args)
        request = batch_request(args)
        if getattr(args, "chunk_out", ""):
            return _chunk_in_blender(args, request.to_argv())
        # --- end of farms ---
        return run_batch(args, worker_capture(request), MEDIA_EXTS)
    except CliError as exc:
        print(f"handcap {args.command}: error: {exc}", file=sys.stderr)
        return 2


# --- farms (issue 17) ---
class _WorkerCommand:
    """A request for ``operators.worker.CaptureJob`` running any ``python -m handcap`` command whose output
    file is the job's output (chunk files, merged captures)."""

    def __init__(self, source: str, make_argv):
        self.source = source
        self.make_argv = make_argv

    def argv(self, output, progress_json: bool = True) -> list[str]:
        return self.make_argv(str(output))


def _in_worker(request, dest: Path) -> None:
    import shutil

    import bpy

    from .operators.worker import CaptureJob

    job = CaptureJob(request, _interpreter(bpy.context)).start()
    try:
        state = job.wait()
        if state != job.FINISHED:
            raise RuntimeError(job.error or f"worker {state.lower()}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(job.output, tmp)
        tmp.replace(dest)
    finally:
        job.cleanup()


def _chunk_in_blender(args, capture_args: list[str]) -> int:
    """``convert INPUT --frames A:B --chunk-out CHUNK``: the worker writes the chunk file."""
    from .cli import CliError

    if len(args.inputs) != 1:
        raise CliError("--chunk-out takes exactly one INPUT (one chunk of one clip per call)")
    src = args.inputs[0]
    extra = ["--chunk-frames", str(args.chunk_frames), "--overlap", str(args.overlap)]
    request = _WorkerCommand(
        src, lambda out: ["convert", src, "-o", args.outdir, "--chunk-out", out, *extra, *capture_args]
    )
    try:
        _in_worker(request, Path(args.chunk_out))
    except (RuntimeError, OSError) as exc:
        print(f"handcap convert: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.chunk_out}")
    return 0


def _merge_in_blender(args) -> int:
    """``merge CHUNK... -o OUTDIR``: the worker merges and fits (torch), Blender converts."""
    import tempfile

    from .cli import CliError
    from .cli.outputs import batch_options
    from .core.capture import read_capture
    from .core.media import MEDIA_EXTS
    from .farm.jobs import merge_and_convert
    from .inference.chunks import ChunkError, chunk_source

    if not args.outdir or args.capture_out:
        raise CliError("inside Blender, merge converts: give -o OUTDIR (no --capture-out)")
    try:
        name = Path(chunk_source(args.chunks[0])).name  # numpy only: readable in Blender's Python
    except ChunkError as exc:
        raise CliError(str(exc)) from None
    chunks = [str(Path(c).resolve()) for c in args.chunks]
    with tempfile.TemporaryDirectory(prefix="handcap-merge-") as work:
        take = Path(work) / "merged.npz"
        try:
            _in_worker(_WorkerCommand(name, lambda out: ["merge", *chunks, "--capture-out", out]), take)
            outputs = merge_and_convert(
                read_capture(take),
                args.name or Path(name).stem,
                name,
                Path(args.outdir),
                batch_options(args, args.chunks, MEDIA_EXTS),
            )
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"handcap merge: FAILED: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
    print(f"merged {len(chunks)} chunk(s) of {name} -> {', '.join(Path(o).name for o in outputs)}")
    return 0


# --- end of farms ---


def register_cli() -> None:
    global _HANDLE
    import bpy

    if _HANDLE is None and hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+
        _HANDLE = bpy.utils.register_cli_command("handcap", main)


def unregister_cli() -> None:
    global _HANDLE
    import bpy

    if _HANDLE is not None:
        bpy.utils.unregister_cli_command(_HANDLE)
        _HANDLE = None
