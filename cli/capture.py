"""``python -m handcap capture INPUT -o take.npz``: landmarks + fitted hand model -> capture file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import CliError


def add_capture_arguments(p) -> None:
    """The capture options (``core.request.CaptureRequest``'s flags; also ``convert``, ``report``, ``farm``)."""
    from ..core.request import CaptureRequest

    CaptureRequest.add_arguments(p)


def add_parser(subparsers, name: str, help_text: str):
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    p.add_argument("input", metavar="INPUT", help="video, photo, image folder or pattern (frames/f_%%05d.png)")
    p.add_argument("-o", "--output", required=True, metavar="TAKE.npz", help="capture file to write")
    add_capture_arguments(p)
    p.add_argument(
        "--progress-json",
        action="store_true",
        help='progress as JSON lines on stdout ({"stage", "done", "total"}) instead of bars',
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--overwrite", action="store_true", help="replace TAKE.npz if it exists (default: refuse)")
    p.set_defaults(run=run)
    return p


def options_from_args(source, args):
    """The checked capture request from parsed capture arguments (CliError names a bad one), fit options
    included (this loads torch: the CLI reports a bad ``--fit`` before any frame is read)."""
    from ..core.request import CaptureRequest, CaptureRequestError
    from ..inference.capture_job import fit_options

    try:
        request = CaptureRequest.from_args(source, args)
    except CaptureRequestError as exc:
        raise CliError(str(exc)) from None
    try:
        fit_options(request)
    except ValueError as exc:  # FitError: an unknown fit option or a bad value
        raise CliError(str(exc)) from None
    return request


def capture_from_args(source, args, progress=None):
    """Run the capture of ``source`` with the parsed capture arguments; returns the Capture and prints the
    warnings on stderr. Bad input raises the library's ValueError subclasses (message for the user)."""
    from ..inference.capture_job import run_capture

    bars = progress or _Bars(enabled=not getattr(args, "quiet", False))
    try:
        result = run_capture(options_from_args(source, args), progress=bars)
    finally:
        if isinstance(bars, _Bars):
            bars.close()
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    result.capture.info["seconds"] = {k: round(v, 3) for k, v in result.seconds.items()}
    return result.capture


def run(args) -> int:
    from ..core.capture import CaptureFormatError, write_capture
    from ..inference.camera import describe
    from ..inference.nets import WeightsError

    out_path = Path(args.output)
    if out_path.suffix.lower() != ".npz":
        raise CliError(f"output {out_path} must end in .npz (the capture file format)")
    check_output_file(out_path, [Path(args.input)], args.overwrite)
    options_from_args(args.input, args)  # bad options fail before the slow part
    progress = _json_progress if args.progress_json else _Bars(enabled=not args.quiet)
    try:
        cap = capture_from_args(args.input, args, progress=progress)
    except (WeightsError, ValueError) as exc:  # SourceError, NoHandError, HandModelError, ... carry the reason
        raise CliError(str(exc)) from None
    finally:
        if isinstance(progress, _Bars):
            progress.close()
    try:
        write_capture(out_path, cap)
    except (CaptureFormatError, OSError) as exc:
        raise CliError(f"cannot write {out_path}: {exc}") from None
    w, h = cap.image_size
    print(f"{cap.source}: {cap.num_frames} frame(s), {w}x{h}, {cap.fps:g} fps; camera {describe(cap.intrinsics)}")
    for side, track in cap.hands.items():
        res = cap.info["fit"][side]
        depth = float(track.kp3d[track.valid, 0, 2].mean())
        print(
            f"  {side} hand: seen in {int(track.valid.sum())}/{cap.num_frames} frame(s); mean residuals "
            f"{res['err2d_px']['mean']} px (2D), {res['err3d_mm']['mean']} mm (3D); wrist at {depth:.2f} m"
        )
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in cap.info.get("seconds", {}).items())
    print(f"wrote {out_path} ({secs})")
    return 0


def check_output_file(out_path: Path, inputs: list[Path], overwrite: bool) -> None:
    """Before any work: the folder exists and takes files, no input is overwritten, an existing file only
    with ``overwrite`` (CliError otherwise)."""
    import os
    import tempfile

    folder = out_path.parent
    if not folder.is_dir():
        raise CliError(f"output folder {folder} does not exist")
    if any(out_path.resolve() == p.resolve() for p in inputs):
        raise CliError(f"output {out_path} is the input: it would be overwritten; choose another name")
    if out_path.exists() and not overwrite:
        raise CliError(f"{out_path} already exists: pass --overwrite to replace it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".handcap-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CliError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def _json_progress(stage: str, done: int, total: int) -> None:
    print(json.dumps({"stage": stage, "done": int(done), "total": int(total)}), flush=True)


class _Bars:
    """tqdm bars per stage on stderr (landmarks, fit)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            self.close()  # one stage at a time: finish the previous bar first
            unit = "frame" if stage == "landmarks" else "step"
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr, leave=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
