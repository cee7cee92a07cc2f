"""What a conversion writes: the output arguments ``convert`` and ``merge`` share, and the ``BatchOptions`` made
from them (``convert``, ``merge``, ``farm`` and ``blender -c``). A module of its own so that convert and merge,
which call each other's steps, both use it without importing each other."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.media import OUTPUT_FORMATS


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """--format, the retargeting options and the output switches."""
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="blend", help="output file type (default: blend)")
    g = p.add_argument_group("retargeting")
    g.add_argument("--retarget", metavar="RIG.blend", default="", help="retarget the hands onto a rig from this file")
    g.add_argument("--rig-object", default="", help="the rig's object name in RIG.blend (default: its only armature)")
    g.add_argument(
        "--mapping", default="", help="bone mapping: preset id (rigify, mixamo, ...) or preset .json (default: suggest)"
    )
    g.add_argument(
        "--wrist-location",
        choices=("NONE", "RELATIVE", "WORLD"),
        default="NONE",
        help="move the rig's hands too: by the captured wrist motion, or onto the captured wrists (default NONE)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--no-mesh", action="store_true", help="armatures only, no hand meshes")
    o.add_argument("--keep-captures", action="store_true", help="also write each capture (.npz) to OUTDIR")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    o.add_argument(
        "--no-smooth",
        action="store_true",
        help="keep each hand's raw capture (default: the default smoothing, which the capture's fit leaves to it; "
        "in a .blend the raw keys stay, ready to re-bake)",
    )


def batch_options(args: argparse.Namespace, inputs, media_exts: frozenset[str]):
    """``BatchOptions`` of ``inputs`` with the output arguments in ``args``."""
    from ..builders.batch import BatchOptions

    return BatchOptions(
        inputs=list(inputs),
        outdir=str(Path(args.outdir)),
        format=args.format,
        retarget_blend=args.retarget,
        rig_object=args.rig_object,
        mapping=args.mapping,
        wrist_location=args.wrist_location,
        with_mesh=not args.no_mesh,
        keep_captures=args.keep_captures,
        overwrite=args.overwrite,
        smooth=not args.no_smooth,
        media_exts=media_exts,
    )
