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

#: Fallback when opencv is not importable here (Blender's Python): the worker decodes, not Blender.
_MEDIA_EXTS = frozenset(
    {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
    | {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
)
_HANDLE = None


def media_extensions() -> frozenset[str]:
    try:
        from .inference.sources import IMAGE_EXTS, VIDEO_EXTS
    except ImportError:
        return _MEDIA_EXTS
    return frozenset(IMAGE_EXTS | VIDEO_EXTS)


class _ForwardedRequest:
    """What ``operators.worker.CaptureJob`` needs from a request: the capture command's arguments, here
    the batch's own capture options forwarded as given."""

    def __init__(self, source: str, capture_args: list[str]):
        self.source = source
        self.capture_args = capture_args

    def argv(self, output, progress_json: bool = True) -> list[str]:
        return ["capture", self.source, "-o", str(output), *self.capture_args] + (
            ["--progress-json"] if progress_json else []
        )


def worker_capture(capture_args: list[str]):
    """A capture function that runs each capture in the inference worker and waits for it."""

    def capture(src: Path, out: Path) -> None:
        import shutil

        import bpy

        from .operators.worker import CaptureJob

        job = CaptureJob(_ForwardedRequest(str(src), capture_args), _interpreter(bpy.context)).start()
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
    from .operators.capture import resolve_interpreter, venv_dir

    try:
        return resolve_interpreter(context)
    except KeyError:
        return interp.choose_interpreter("", _sys.executable, venv_dir(), interp.requirements_importable_here())


def build_parser(prog: str) -> argparse.ArgumentParser:
    from .cli.convert import add_arguments

    parser = argparse.ArgumentParser(prog=prog, description="HandCap batch conversion inside Blender")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_arguments(sub.add_parser("convert", help="videos/photos/captures -> .blend/.fbx/.bvh/.glb"))
    return parser


def main(argv: list[str], prog: str = "blender -b -c handcap") -> int:
    """Parse ``argv`` (after the command id) and run the batch; returns the exit code (0, 1 or 2)."""
    from .cli import CliError
    from .cli.convert import capture_argv, run_batch

    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments
        return int(exc.code or 0)
    try:
        return run_batch(args, worker_capture(capture_argv(args)), media_extensions())
    except CliError as exc:
        print(f"handcap {args.command}: error: {exc}", file=sys.stderr)
        return 2


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
