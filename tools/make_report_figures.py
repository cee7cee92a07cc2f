"""Run ``evaluate --json --report`` on ge2019_dev and the 2D sets of ../shared/data, print the numbers, and
copy a few of OUR renderings (PCK plots, downscaled overlays) into docs/images/.

    .venv/bin/python tools/make_report_figures.py [--out out/report_figures] [--device cpu] [--no-figures]

The shared images themselves are never copied: docs/images/ receives the PCK plots (no image content) and at
most two overlays, re-encoded as small JPEGs (``FIGURE_HEIGHT`` px high). ``--no-figures`` only measures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SETS = ("ge2019_dev", "freihand_2d", "panoptic_2d", "onehand10k_2d", "coco_wholebody_2d", "cmu_handlabels_2d")
FIGURE_HEIGHT = 160
DOCS_IMAGES = REPO / "docs" / "images"


def evaluate(set_dir: Path, report_dir: Path, device: str) -> dict:
    """``python -m handcap evaluate SET --json --report DIR``; returns the printed metrics."""
    cmd = [sys.executable, "-m", "handcap", "evaluate", str(set_dir), "--json", "--device", device]
    cmd += ["--report", str(report_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO.parent)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    metrics = json.loads(proc.stdout)
    stored = json.loads((report_dir / "report.json").read_text())["metrics"]
    if stored != metrics:  # the report must show exactly what evaluate printed
        raise SystemExit(f"{report_dir}: report metrics {stored} differ from evaluate --json {metrics}")
    return metrics


def _small_jpeg(src: Path, dst: Path, height: int = FIGURE_HEIGHT) -> None:
    img = cv2.imread(str(src))
    w = round(img.shape[1] * height / img.shape[0])
    cv2.imwrite(str(dst), cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 80])


def copy_figures(ge_report: Path) -> list[Path]:
    """docs/images/: ge2019_dev's 2D and 3D PCK plots, its worst and its median overlay (downscaled)."""
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    data = json.loads((ge_report / "report.json").read_text())
    images = [e for e in data["images"] if e["overlay"]]
    out = []
    for name in ("pck_2d.png", "pck_3d.png"):
        if (ge_report / name).is_file():
            dst = DOCS_IMAGES / f"eval_ge2019_{name}"
            dst.write_bytes((ge_report / name).read_bytes())
            out.append(dst)
    # Entries are worst first: the first is the worst image, the middle one a typical result. These overlays
    # contain ge2019 pixels, whose licence forbids committing them, so they go to the git-ignored out/ only.
    local = REPO / "out" / "report_figures"
    local.mkdir(parents=True, exist_ok=True)
    for label, entry in (("worst", images[0]), ("median", images[len(images) // 2])):
        dst = local / f"eval_ge2019_{label}.jpg"
        _small_jpeg(ge_report / entry["overlay"], dst)
        out.append(dst)
    return out


def fmt(v, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    return "n/a" if v is None else f"{v * scale:.{digits}f}{' ' + unit if unit else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "out" / "report_figures"), help="report folders go here")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    parser.add_argument("--no-figures", action="store_true", help="measure only, leave docs/images/ alone")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared data folder {SHARED} (absent on a fresh clone)")
    out = Path(args.out)
    results = {}
    for name in SETS:
        if not (SHARED / name / "hands.json").is_file():
            print(f"{name}: not in {SHARED}, skipped", file=sys.stderr)
            continue
        print(f"{name}: evaluating ...", file=sys.stderr, flush=True)
        results[name] = evaluate(SHARED / name, out / name, args.device)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    print("| set | images | hands | detected | 2D error (px) | PCK@0.1 | PA-MPJPE raw (mm) | PA-MPJPE fitted (mm) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in results.items():
        print(
            f"| {name} | {m['images']} | {m['hands']} | {fmt(m['detected_rate'], 100, 1, '%')} "
            f"| {fmt(m['kp2d_err_px'])} "
            f"| {fmt(m['pck_0.1'], 100, 1, '%')} | {fmt(m['pa_mpjpe_mm_raw'], digits=1)} "
            f"| {fmt(m.get('pa_mpjpe_mm_fitted'), digits=1)} |"
        )
    print(f"reports: {out}/<set>/index.html; metrics: {out / 'metrics.json'}")
    if not args.no_figures and "ge2019_dev" in results:
        for path in copy_figures(out / "ge2019_dev"):
            print(f"figure: {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
