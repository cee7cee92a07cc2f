"""Command line: ``python -m handcap <subcommand>``.

Hook: each subcommand lives in ``cli/<name>.py`` exposing
``add_parser(subparsers, name, help_text)``, which must call
``p = subparsers.add_parser(name, help=help_text)``, add its arguments and
``p.set_defaults(run=run)`` with ``run(args) -> int`` (exit code). Keep heavy
imports (torch, cv2) inside ``run`` so ``--help`` stays fast. Raise ``CliError``
for user-facing errors (printed without a traceback, exit code 2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# Imported before any subcommand imports torch: the package sets OpenMP's wait policy, which only counts
# before torch loads OpenMP (see inference/__init__.py). It imports nothing heavy itself.
from .. import inference  # noqa: F401

# name -> (module, one-line help)
SUBCOMMANDS = {
    "capture": ("capture", "video/photo -> capture file (.npz): keypoints + fitted hand model"),
    "evaluate": ("evaluate", "accuracy on an annotated set (hands.json + images/)"),
    "benchmark": ("benchmark", "run the speed benchmarks"),
    "convert": ("convert", "capture/video -> .blend/.fbx/.bvh/.glb (needs bpy)"),
    "report": ("report", "overlays and an HTML index to judge a capture"),
    "farm": ("farm", "a library of videos converted on a Ray cluster, chunked and resumable (needs ray, bpy)"),
    "merge": ("merge", "a clip's chunk files (convert --chunk-out) -> one capture -> .blend/.fbx/.bvh/.glb"),
    "import-results": ("import_results", "results of HaMeR / WiLoR / MediaPipe / FreeMoCap -> capture file (.npz)"),
}


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def add_fit_argument(p) -> None:
    """``--fit NAME=VALUE`` (repeatable): any field of the fit's FitOptions (also used by ``handcap evaluate``)."""
    p.add_argument(
        "--fit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a fit option (FitOptions in inference/fitting/fit.py), e.g. --fit polish_iterations=3; repeatable",
    )


def fit_options_from_args(args, **base):
    """FitOptions from ``--fit`` pairs on top of ``base``; CliError on a bad name or value."""
    from ..inference.fitting.fit import FitError, FitOptions  # torch: loaded only when a command runs

    try:
        return FitOptions.parse(getattr(args, "fit", None) or [], **base)
    except FitError as exc:
        raise CliError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m handcap", description="HandCap: hands from video into Blender.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--capabilities",
        action="store_true",
        help="print what this build offers as one JSON line (Blender's worker asks it) and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = _load(module_name)
        if module is None:
            sub.add_parser(name, help=f"{help_text} [not available in this build]")
        else:
            module.add_parser(sub, name, help_text)
    return parser


def _load(module_name: str):
    try:
        return importlib.import_module(f".{module_name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{module_name}":
            return None
        raise


def _version() -> str:
    from ..core import __version__

    return __version__


def capabilities() -> dict:
    """What this build's command line offers: version, commands, the capture options' flags and whether
    ``capture`` writes JSON progress (``--progress-json``). Blender's worker reads it before each job."""
    from ..core.request import option_flags

    return {
        "version": _version(),
        "commands": list(SUBCOMMANDS),
        "capture_options": option_flags(),
        "progress_json": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.capabilities:
        print(json.dumps(capabilities()))
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    run = getattr(args, "run", None)
    if run is None:
        print(f"handcap: '{args.command}' is not available in this build", file=sys.stderr)
        return 2
    try:
        return int(run(args) or 0)
    except CliError as exc:
        print(f"handcap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"handcap {args.command}: interrupted", file=sys.stderr)
        return 130
