"""``python -m handcap report INPUT... -o DIR``: overlays, curves and an HTML index to judge captures.

Each INPUT is a capture file (``.npz``), a photo or a video; photos and videos are captured first with the
same options as ``handcap capture`` (the capture is kept beside the report as ``capture.npz``). One input
writes its report straight into DIR; several inputs get one sub-folder each plus ``DIR/index.html`` linking
them. An input that fails is reported with the reason, the others are still done, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from . import CliError


def add_parser(subparsers, name: str, help_text: str):
    p = subparsers.add_parser(name, help=help_text, description=__doc__.split("\n\n", 1)[1])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="capture files (.npz), photos or videos")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder (created if missing)")
    p.add_argument("--max-frames", type=int, default=48, help="most frames with an overlay per input (default 48)")
    p.add_argument("--height", type=int, default=360, help="pixel height of each overlay row (default 360)")
    p.add_argument("--no-mesh", action="store_true", help="draw keypoints only, not the fitted hand mesh")
    _add_capture_arguments(p)
    p.set_defaults(run=run)
    return p


def _add_capture_arguments(p) -> None:
    """The options of ``handcap capture`` for photo and video inputs (same flags, same meaning)."""
    try:
        capture_parser = _capture_parser()
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.capture":
            raise
        return  # a build without the capture command: capture files (.npz) still work
    group = p.add_argument_group("capture options (photos and videos; as for `handcap capture`)")
    for action in capture_parser._actions:
        ours = any(o in p._option_string_actions for o in action.option_strings)  # the report's own flag wins
        if action.option_strings and action.dest not in ("help", "output") and not ours:
            group._add_action(action)


class _Subparsers:
    """Stands in for argparse's subparsers so that ``cli.capture.add_parser`` builds a parser whose options
    the report command takes over: one definition of the capture flags, whatever ``capture`` adds later."""

    parser: argparse.ArgumentParser

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        self.parser = argparse.ArgumentParser(prog=name, add_help=False)
        return self.parser


def _capture_parser() -> argparse.ArgumentParser:
    from . import capture as capture_cli

    subparsers = _Subparsers()
    capture_cli.add_parser(subparsers, "capture", "")
    return subparsers.parser


def _unique_folder(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "input"
    folder, n = base, 2
    while folder in taken:
        folder, n = f"{base}-{n}", n + 1
    taken.add(folder)
    return folder


def _capture_for(path: Path, out_dir: Path, args):
    """The capture of one input: read a capture file, or capture a photo / video into out_dir/capture.npz."""
    from ..core.capture import read_capture

    if path.suffix.lower() == ".npz":
        return read_capture(path)
    try:
        from . import capture as capture_cli
    except ModuleNotFoundError:
        raise ValueError("this build has no capture command: only capture files (.npz) can be reported") from None
    # ``handcap capture`` itself does the work (same options, checks and messages); its summary goes to stderr.
    target = out_dir / "capture.npz"
    # the report's own working copy: replaced on a re-run into the same folder
    job = argparse.Namespace(**{**vars(args), "input": str(path), "output": str(target), "overwrite": True})
    with contextlib.redirect_stdout(sys.stderr):
        capture_cli.run(job)
    return read_capture(target)


def _one_line(summary) -> str:
    missed = sum(1 for e in summary.entries if any(v == float("inf") for v in e.errors_px.values()))
    worst = max((e.score for e in summary.entries if e.score != float("inf")), default=0.0)
    return f"{len(summary.entries)} frames shown, {missed} with a missed hand, worst reprojection {worst:.1f} px"


def run(args) -> int:
    from ..core.capture import CaptureFormatError
    from ..inference.report.capture_report import ReportOptions, build_capture_report
    from ..inference.report.index import IndexEntry, write_multi_index

    if args.max_frames < 1 or args.height < 16:
        raise CliError("--max-frames must be >= 1 and --height >= 16")
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the report folder {out}: {exc}") from None
    options = ReportOptions(max_frames=args.max_frames, height=args.height, mesh=not args.no_mesh)
    inputs = [Path(p) for p in args.inputs]
    several = len(inputs) > 1
    taken: set[str] = set()
    entries: list[IndexEntry] = []
    failed = 0
    for path in inputs:
        folder = _unique_folder(path.stem, taken) if several else None
        target = out / folder if folder else out
        made = not target.exists()
        try:
            if not path.exists():
                raise FileNotFoundError(f"no such file: {path}")
            target.mkdir(parents=True, exist_ok=True)
            capture = _capture_for(path, target, args)
            summary = build_capture_report(capture, target, options)
        except (CliError, CaptureFormatError, ValueError, OSError) as exc:
            # Every HandCap input error derives from ValueError (SourceError, CaptureFormatError, ...).
            failed += 1
            if made and target.is_dir() and not any(target.iterdir()):
                target.rmdir()  # no empty folder for an input that produced nothing
            reason = str(exc) or type(exc).__name__
            print(f"handcap report: {path}: failed: {reason}", file=sys.stderr)
            entries.append(IndexEntry(str(path), None, error=reason))
            continue
        line = _one_line(summary)
        print(f"{path}: {summary.index} ({line})", file=sys.stderr)
        entries.append(IndexEntry(str(path), folder, summary=line))
    if several:
        index = write_multi_index(out, entries)
        print(f"index: {index}", file=sys.stderr)
    if failed:
        print(f"handcap report: {failed} of {len(inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def write_evaluation_report(summary, root: Path, out_dir: str | Path):
    """``evaluate --report DIR``: the evaluation report for ``summary`` (see inference/report/eval_report.py)."""
    from ..inference.report.eval_report import build_eval_report

    try:
        report = build_eval_report(summary, Path(root), Path(out_dir))
    except OSError as exc:
        # Keep the numbers the user waited for, even when the report cannot be written.
        metrics = json.dumps(summary.to_json())
        raise CliError(f"cannot write the report into {out_dir}: {exc}; metrics: {metrics}") from None
    print(f"report: {report.index}", file=sys.stderr)
    return report
