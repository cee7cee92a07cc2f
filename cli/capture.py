"""``python -m handcap capture INPUT -o take.npz``: landmarks + fitted hand model -> capture file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import CliError, add_fit_argument, fit_options_from_args


def _frame_range(text: str) -> tuple[int | None, int | None]:
    """ "A:B", "A:" or ":B" -> (start, stop), stop exclusive."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected A:B (e.g. 100:200), got {text!r}")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"frame numbers must be integers, got {text!r}") from None
    if (start or 0) < 0 or (stop or 0) < 0:
        raise argparse.ArgumentTypeError(f"frame numbers count from 0; negative frames are refused, got {text!r}")
    if start is not None and stop is not None and stop <= start:
        raise argparse.ArgumentTypeError(f"empty frame range {text!r} (B must be greater than A)")
    return start, stop


def add_capture_arguments(p) -> None:
    """The capture options (also used by ``handcap report`` for photo and video inputs)."""
    p.add_argument("--frames", type=_frame_range, metavar="A:B", help="source frames A..B-1, 0-based (default all)")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="use every N-th frame (default 1)")
    p.add_argument("--hands", type=int, choices=(1, 2), default=2, help="most hands to capture (default 2)")
    p.add_argument("--focal-mm", type=float, metavar="F", help="camera focal length in mm (with --sensor-mm)")
    p.add_argument("--sensor-mm", type=float, metavar="S", help="camera sensor width in mm (default 36)")
    p.add_argument("--focal-px", type=float, metavar="F", help="camera focal length in pixels")
    p.add_argument(
        "--fov",
        type=float,
        metavar="DEG",
        help="horizontal field of view in degrees (no camera option: the focal length is estimated from the hands)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--model", choices=("builtin", "mano"), default="builtin", help="hand model (default builtin)")
    p.add_argument("--mano-dir", metavar="DIR", help="folder with your MANO_RIGHT.pkl / MANO_LEFT.pkl (--model mano)")
    p.add_argument("--mirrored", action="store_true", help="the footage is a mirrored selfie view (swaps sides)")
    p.add_argument(
        "--min-confidence",
        type=float,
        default=0.2,
        metavar="C",
        help="drop a hand whose best frame's confidence (0..1) is below C (default 0.2)",
    )
    add_fit_argument(p)


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
    """Checked CaptureOptions from parsed capture arguments (CliError names a bad one)."""
    from ..inference.capture_job import CaptureJobError, CaptureOptions

    if getattr(args, "mano_dir", None) and args.model != "mano":
        raise CliError("--mano-dir is only used with --model mano")
    options = CaptureOptions(
        source=str(source),
        frames=args.frames,
        stride=args.stride,
        hands=args.hands,
        focal_mm=args.focal_mm,
        sensor_mm=args.sensor_mm,
        focal_px=args.focal_px,
        fov_deg=args.fov,
        device=args.device,
        model=args.model,
        mano_dir=args.mano_dir or None,
        mirrored=args.mirrored,
        min_confidence=args.min_confidence,
        fit=fit_options_from_args(args),
    )
    try:
        options.validate()
    except CaptureJobError as exc:
        raise CliError(str(exc)) from None
    return options


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
