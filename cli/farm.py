"""``python -m handcap farm INPUTS... -o OUTDIR [--address ray://host:port | auto] [--chunk-frames N]
[--overlap N] --format ...``: the batch conversion spread over a Ray cluster (see docs/farm.md).

Needs Ray (``pip install "handcap[farm]"``) and, on every worker node, the same HandCap environment (torch,
bpy). Resumable: finished chunks are kept in ``OUTDIR/.handcap-farm/`` and a rerun does only what is
missing. Exit code: 0 all converted, 1 some input failed, 2 the run could not start.
"""

from __future__ import annotations

import argparse

from . import CliError


def add_parser(subparsers, name: str, help_text: str) -> None:
    from .convert import add_arguments  # with --chunk-frames / --overlap

    p = subparsers.add_parser(
        name,
        help=help_text,
        description="Convert a library of videos and photos on a Ray cluster: each clip is split into overlapping "
        "chunks, each going on from its predecessor's tracker state (so the landmarks are the whole clip's; the "
        "clips run in parallel), then merged and fitted once per clip and converted as `convert` does. Finished "
        "chunks are kept in OUTDIR/.handcap-farm/, so a rerun does only what is missing.",
    )
    add_arguments(p)
    g = p.add_argument_group("farm")
    g.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto (the cluster this machine belongs to), HOST:PORT or ray://HOST:PORT "
        "(default: a Ray instance on this machine only)",
    )
    g.add_argument("--cpus-per-chunk", type=float, default=1.0, metavar="N", help="CPUs a chunk task declares")
    g.add_argument(
        "--gpus-per-chunk",
        type=float,
        default=0.0,
        metavar="N",
        help="GPUs a chunk task declares (e.g. 0.5: two chunks share a GPU; default 0)",
    )
    g.add_argument(
        "--max-retries", type=int, default=3, metavar="N", help="retries of a task whose worker died (default 3)"
    )
    g.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs of the local Ray instance (without --address; default all)",
    )
    g.add_argument("--node-ip-address", default=None, metavar="IP", help="this machine's address for Ray")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "chunk_out", None) or getattr(args, "after_chunk", None):
        raise CliError("--chunk-out / --after-chunk belong to convert (one chunk per call); farm plans the chunks")
    try:
        import bpy  # noqa: F401

        from ..inference.sources import IMAGE_EXTS, VIDEO_EXTS
    except ImportError as exc:
        raise CliError(f"farm needs bpy and the inference requirements on the driver too ({exc})") from None
    from ..core.request import CaptureRequest, CaptureRequestError
    from ..farm.driver import FarmError, FarmOptions, run_farm
    from ..inference.chunks import ChunkError, plan_chunks
    from .outputs import batch_options

    try:
        plan_chunks(range(1), args.chunk_frames, args.overlap)  # option errors before Ray starts
    except ChunkError as exc:
        raise CliError(str(exc)) from None
    try:  # no torch here: the driver starts the cluster's work sooner (torch loads in check_fit, meanwhile)
        capture = CaptureRequest.from_args("", args)
    except CaptureRequestError as exc:
        raise CliError(str(exc)) from None

    def check_fit() -> None:
        from ..inference.capture_job import fit_options

        fit_options(capture)  # FitError (a ValueError) names a bad --fit

    options = FarmOptions(
        batch=batch_options(args, args.inputs, frozenset(IMAGE_EXTS | VIDEO_EXTS)),
        capture=capture,
        chunk_frames=args.chunk_frames,
        overlap=args.overlap,
        address=args.address,
        num_cpus=args.num_cpus,
        node_ip_address=args.node_ip_address,
        cpus_per_chunk=args.cpus_per_chunk,
        gpus_per_chunk=args.gpus_per_chunk,
        max_retries=args.max_retries,
        check=check_fit,
    )
    try:
        return run_farm(options, log=lambda line: print(line, flush=True)).exit_code
    except FarmError as exc:
        raise CliError(str(exc)) from None
