"""``python -m handcap import-results FILE -o take.npz``: results of another tool -> capture file.

MANO parameters (HaMeR, WiLoR, HandCap's layout) are converted exactly; 21-keypoint results (MediaPipe,
FreeMoCap) are fitted with HandCap's own fit. Layouts: docs/foreign-results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.request import MAX_HANDS
from . import CliError, add_fit_argument, fit_options_from_args


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 1920x1080), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return w, h


def add_parser(subparsers, name: str, help_text: str):
    from ..inference.foreign.common import LAYOUTS

    p = subparsers.add_parser(name, help=help_text, description=help_text)
    p.add_argument("input", metavar="FILE", help="results file: .npz / .json (MANO or MediaPipe), .csv, .npy")
    p.add_argument("-o", "--output", required=True, metavar="TAKE.npz", help="capture file to write")
    p.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="file layout (default: detected)")
    p.add_argument("--model", choices=("builtin", "mano"), default="builtin", help="hand model (default builtin)")
    p.add_argument(
        "--mano-dir",
        metavar="DIR",
        help="folder with your MANO_RIGHT.pkl / MANO_LEFT.pkl "
        "(needed for --model mano, PCA poses and mean-relative poses)",
    )
    p.add_argument("--pose-format", choices=("auto", "axis_angle", "rotmat", "pca"), default="auto")
    p.add_argument(
        "--pose-mean",
        choices=("auto", "flat", "mean"),
        default="auto",
        help="pose relative to the flat hand or to MANO's hands_mean (default: the file's, else PCA "
        "mean-relative, others flat)",
    )
    mirror = p.add_mutually_exclusive_group()
    mirror.add_argument(
        "--left-mirrored",
        dest="left_mirrored",
        action="store_true",
        default=None,
        help="left hands are given as the mirrored right hand (default for HaMeR / WiLoR)",
    )
    mirror.add_argument("--no-left-mirrored", dest="left_mirrored", action="store_false")
    p.add_argument("--image-size", type=_size, metavar="WxH", help="image size where the file does not say")
    p.add_argument("--fps", type=float, help="frame rate where the file does not say")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--focal-px", type=float, metavar="F", help="camera focal length in pixels")
    cam.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view in degrees")
    p.add_argument(
        "--hands",
        type=int,
        choices=range(1, MAX_HANDS + 1),
        default=2,
        metavar="N",
        help=f"most hand tracks to keep, 1..{MAX_HANDS} (default 2; more for several people's hands)",
    )
    p.add_argument(
        "--mirrored",
        action="store_true",
        help="keypoint files: the footage is a mirrored selfie view (MediaPipe's labels are then kept)",
    )
    p.add_argument("--device", default="cpu", help="keypoint fit device: cpu, cuda, auto (default cpu)")
    add_fit_argument(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..core.capture import write_capture
    from ..inference.foreign import ForeignOptions, ForeignResultsError, read_results

    options = ForeignOptions(
        layout=args.layout,
        model=args.model,
        mano_dir=args.mano_dir,
        pose_format=args.pose_format,
        pose_mean=args.pose_mean,
        left_mirrored=args.left_mirrored,
        image_size=args.image_size,
        fps=args.fps,
        focal_px=args.focal_px,
        fov_deg=args.fov,
        hands=args.hands,
        mirrored=args.mirrored,
        device=args.device,
        fit=fit_options_from_args(args) if args.fit else None,
    )
    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise CliError(f"the capture file must end in .npz, got {output.name}")
    try:
        result = read_results(args.input, options)
    except ForeignResultsError as exc:
        raise CliError(str(exc)) from None
    write_capture(output, result.capture)
    cap = result.capture
    summary = {
        "output": str(output),
        "layout": result.layout,
        "frames": cap.num_frames,
        "hands": {s: int(h.valid.sum()) for s, h in cap.hands.items()},
        "hand_model": cap.hand_model,
        "warnings": result.warnings,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        seen = ", ".join(f"{s} in {n} frames" for s, n in summary["hands"].items())
        print(f"{output}: {result.layout} results, {cap.num_frames} frames, {seen}")
        for w in result.warnings:
            print(f"  note: {w}")
    return 0
