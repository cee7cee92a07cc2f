"""``python -m handcap evaluate SET_DIR``: landmark accuracy on an annotated set (hands.json + images/)."""

from __future__ import annotations

import json
import sys

from . import CliError, add_fit_argument, fit_options_from_args


def add_parser(subparsers, name: str, help_text: str):
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    p.add_argument("set_dir", metavar="SET_DIR", help="folder with hands.json and images/")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--max-hands", type=int, default=2, help="most hands per image (default 2)")
    p.add_argument(
        "--detect",
        choices=("tiled", "search", "full"),
        default="tiled",
        help="palm search: the full view plus a coarse view and overlapping tiles at finer scales (default), "
        "the same plus a landmark-network search for hands without a palm (search), "
        "or the full view only (MediaPipe's)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images / crops per network call (default 16)")
    p.add_argument(
        "--refine",
        choices=("average", "second", "off"),
        default="average",
        help="second landmark pass on each detected hand: average the two (default), keep the "
        "second, or off (MediaPipe's behaviour)",
    )
    p.add_argument("--mirrored", action="store_true", help="images are mirrored selfies (swaps sides)")
    p.add_argument("--per-image", action="store_true", help="with --json: add per-image rows")
    p.add_argument("--no-fit", action="store_true", help="skip fitting the hand model (the *_fitted keys)")
    add_fit_argument(p)
    p.add_argument(
        "--report",
        metavar="DIR",
        help="also write an HTML report into DIR: overlays with the ground"
        " truth, per-image errors, failure categories, PCK plots (numbers equal --json's)",
    )
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import torch

    from ..inference.evaluation import SetFormatError, evaluate_set, landmarker_predictor, load_annotated_set
    from ..inference.landmarker import HandLandmarker, LandmarkerOptions
    from ..inference.multiscale import detection_for_mode
    from ..inference.nets import WeightsError
    from ..inference.sources import SourceError

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    try:
        data = load_annotated_set(args.set_dir)
        options = LandmarkerOptions(
            max_hands=args.max_hands,
            device=args.device,
            tracking=False,
            batch_size=args.batch_size,
            refine=args.refine,
            mirrored_input=args.mirrored,
            detection=detection_for_mode(args.detect),
        )
        landmarker = HandLandmarker(options)
        progress = None
        if not args.json and sys.stderr.isatty():

            def progress(done, total):
                print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

        summary = evaluate_set(data, landmarker_predictor(landmarker), batch=args.batch_size, progress=progress)
        if not args.no_fit:
            from ..inference.fitting.evaluation import add_fitted_metrics

            device = str(landmarker.nets.device)
            add_fitted_metrics(summary, device=device, options=fit_options_from_args(args, device=device))
    except (SetFormatError, SourceError, WeightsError, ValueError) as exc:
        raise CliError(str(exc)) from None

    if args.report:  # keep last before printing: the report shows summary.to_json() as it is here
        from .report import write_evaluation_report

        write_evaluation_report(summary, data.root, args.report)
    if args.json:
        out = summary.to_json()
        if args.per_image:
            out["per_image"] = [
                {
                    "file": str(s.image.path.relative_to(data.root)),
                    "hands": [
                        {
                            "detected": h.pred_index is not None,
                            "kp2d_err_px": None if h.pred_index is None else round(h.kp2d_err_px, 3),
                        }
                        for h in s.hands
                    ],
                }
                for s in summary.per_image
            ]
        print(json.dumps(out, indent=2))
        return 0
    j = summary.to_json()

    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.4g}{unit}"

    print(f"set {summary.name}: {j['images']} images, {j['hands']} hands (device {landmarker.nets.device})")
    print(f"  detected        {fmt(None if j['detected_rate'] is None else 100 * j['detected_rate'], ' %')}")
    print(f"  2D error        {fmt(j['kp2d_err_px'], ' px')} (mean over detected hands)")
    print(f"  PCK@0.1         {fmt(None if j['pck_0.1'] is None else 100 * j['pck_0.1'], ' %')}")
    print(f"  PA-MPJPE (raw)  {fmt(j['pa_mpjpe_mm_raw'], ' mm')} (world landmarks, where 3D ground truth exists)")
    if not args.no_fit:
        print(f"  PA-MPJPE (fit)  {fmt(j['pa_mpjpe_mm_fitted'], ' mm')} (fitted hand model)")
        print(f"  MPJPE camera    {fmt(j['mpjpe_cam_mm_fitted'], ' mm')} (fitted, camera frame, where K is known)")
        print(f"  root depth err  {fmt(j['root_depth_err_mm'], ' mm')} ({fmt(j['root_depth_err_pct'], ' %')})")
        print(f"  reprojection    {fmt(j['reproj_err_px_fitted'], ' px')} (fitted keypoints vs ground-truth 2D)")
    return 0
