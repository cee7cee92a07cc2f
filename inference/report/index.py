"""HTML pages and JSON of the reports: the evaluation summary page and the index over several reports.

Pages use only local resources (no scripts, no network), so a report folder can be zipped and shared.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.keypoints import FINGERS

STYLE = (
    "body{font-family:sans-serif;margin:1em}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
    ".bad{color:#b00}"
)


def _num(v) -> float | None:
    """JSON-safe number: None for NaN/inf, else a float (not rounded: the report keeps full precision)."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _fmt(v, digits: int = 2, missing: str = "n/a") -> str:
    return missing if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}f}"


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def write_eval_json(report, name: str) -> Path:
    """``report.json``: the metrics of ``evaluate --json`` unchanged, then categories, per-finger errors,
    curves and one row per ground-truth hand (NaN written as null)."""
    rows = [
        {
            "image": r.image,
            "gt_index": r.gt_index,
            "detected": r.detected,
            "side_gt": r.side_gt,
            "side_pred": r.side_pred,
            "box_px": _num(r.box_px),
            "kp2d_gt": r.kp2d_gt.tolist(),
            "kp2d_pred": None if r.kp2d_pred is None else r.kp2d_pred.tolist(),
            "joint_err_px": [_num(v) for v in r.joint_err_px],
            "kp2d_err_px": _num(r.kp2d_err_px),
            "pck": _num(r.pck),
            "pa_mpjpe_mm": _num(r.pa_mpjpe_mm),
            "finger_err_px": [_num(v) for v in r.finger_err_px],
            "fitted": {k: _num(v) for k, v in r.fitted.items()},
            "categories": r.categories,
        }
        for e in report.entries
        for r in e.hands
    ]
    data = {
        "name": name,
        "metrics": report.metrics,
        "categories": {c: [{"image": i, "gt_index": g} for i, g in v] for c, v in report.categories.items()},
        "fingers": list(FINGERS),
        "finger_err_px": [_num(v) for v in report.finger_err_px],
        "finger_err_box": [_num(v) for v in report.finger_err_box],
        "finger_err_mm": [_num(v) for v in report.finger_err_mm],
        "pck2d": [
            {"label": c.label, "thresholds": c.thresholds.tolist(), "values": [_num(v) for v in c.values]}
            for c in report.pck2d
        ],
        "pck3d": [
            {
                "label": c.label,
                "thresholds_mm": c.thresholds.tolist(),
                "values": [_num(v) for v in c.values],
                "auc": _num(c.auc()),
            }
            for c in report.pck3d
        ],
        "images": [
            {"file": e.file, "overlay": e.overlay, "score": _num(e.score), "crop": list(e.crop)} for e in report.entries
        ],
        "hands": rows,
        "notes": report.notes,
    }
    path = report.out_dir / "report.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def _metrics_table(metrics: dict) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{'n/a' if v is None else v}</td></tr>" for k, v in metrics.items()
    )
    return f"<h2>Metrics</h2><p>The numbers of <code>evaluate --json</code>.</p><table>{cells}</table>"


def _categories_table(report) -> str:
    total = sum(len(e.hands) for e in report.entries)
    rows = []
    for cat, members in report.categories.items():
        links = " ".join(f'<a href="#{html.escape(i)}">{html.escape(Path(i).name)}#{g}</a>' for i, g in members[:40])
        more = f" (+{len(members) - 40} more)" if len(members) > 40 else ""
        rows.append(f"<tr><td>{cat}</td><td>{len(members)} / {total}</td><td>{links}{more}</td></tr>")
    return (
        "<h2>Failure categories</h2><p>Per ground-truth hand; a hand can be in several. Large 2D error: over 2 x "
        "the median error or 0.2 of the hand box. Depth error: fitted wrist depth off by over 2 x the median or "
        "15 % of the true depth. Finger error: one finger over 0.2 of the hand box in an otherwise fine hand.</p>"
        f"<table><tr><th>category</th><th>hands</th><th>which</th></tr>{''.join(rows)}</table>"
    )


def _fingers_table(report) -> str:
    head = "".join(f"<th>{f}</th>" for f in FINGERS)
    rows = [
        ("2D error (px)", report.finger_err_px, 2),
        ("2D error (fraction of hand box)", report.finger_err_box, 3),
        ("3D error after Procrustes (mm)", report.finger_err_mm, 1),
    ]
    body = "".join(
        f"<tr><td>{label}</td>{''.join(f'<td>{_fmt(v, d)}</td>' for v in values)}</tr>" for label, values, d in rows
    )
    return f"<h2>Per-finger mean errors (detected hands)</h2><table><tr><th></th>{head}</tr>{body}</table>"


def _curves(report) -> str:
    imgs = "".join(f'<img src="{html.escape(p)}"> ' for p in report.plots)
    aucs = "".join(f"<li>3D PCK AUC 20-50 mm, {html.escape(c.label)}: {_fmt(c.auc(), 3)}</li>" for c in report.pck3d)
    at01 = "".join(
        f"<li>2D PCK at 0.1 of the hand box, {html.escape(c.label)}: "
        f"{_fmt(c.values[np.argmin(np.abs(c.thresholds - 0.1))], 4)}</li>"
        for c in report.pck2d
    )
    return f"<h2>PCK</h2><div>{imgs}</div><ul>{at01}{aucs}</ul>"


def _image_rows(report) -> str:
    fitted_keys = sorted({k for e in report.entries for r in e.hands for k in r.fitted})
    head = "".join(f"<th>{html.escape(k)}</th>" for k in fitted_keys)
    out = []
    for e in report.entries:
        img = (
            f'<a href="{html.escape(e.overlay)}"><img src="{html.escape(e.overlay)}" height="128"></a>'
            if e.overlay
            else ""
        )
        for j, r in enumerate(e.hands or [None]):
            if r is None:
                out.append(
                    f'<tr id="{html.escape(e.file)}"><td>{html.escape(e.file)}</td><td colspan="8">'
                    f"no annotated hand</td><td>{img}</td></tr>"
                )
                continue
            anchor = f' id="{html.escape(e.file)}"' if j == 0 else ""
            cls = ' class="bad"' if r.categories else ""
            fitted = "".join(f"<td>{_fmt(r.fitted.get(k))}</td>" for k in fitted_keys)
            out.append(
                f"<tr{anchor}{cls}><td>{html.escape(e.file)}</td><td>{r.gt_index}</td>"
                f"<td>{r.side_gt or '-'} / {r.side_pred or '-'}</td><td>{_fmt(r.kp2d_err_px, 2, 'missed')}</td>"
                f"<td>{_fmt(r.kp2d_err_px / r.box_px, 3, 'missed')}</td><td>{_fmt(r.pck, 3)}</td>"
                f"<td>{_fmt(r.pa_mpjpe_mm, 1)}</td>{fitted}<td>{html.escape(', '.join(r.categories))}</td>"
                f"<td>{img if j == 0 else ''}</td></tr>"
            )
    return (
        "<h2>Images, worst first</h2><table><tr><th>image</th><th>hand</th><th>side (true / est.)</th>"
        "<th>2D error (px)</th><th>2D error / box</th><th>PCK@0.1</th><th>PA-MPJPE raw (mm)</th>"
        f"{head}<th>categories</th><th>overlay (ground truth | estimate | 3D)</th></tr>{''.join(out)}</table>"
    )


def write_eval_index(report, title: str) -> Path:
    """``index.html`` of an evaluation report: metrics, failure categories, per-finger errors, PCK, images."""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in dict.fromkeys(report.notes))
    body = (
        f"<ul>{notes}</ul>{_metrics_table(report.metrics)}{_categories_table(report)}{_fingers_table(report)}"
        f"{_curves(report)}{_image_rows(report)}"
    )
    report.index.write_text(_page(title, body), encoding="utf-8")
    return report.index


@dataclass
class IndexEntry:
    """One input of a multi-input report: its name, its report folder (relative to the index) or None when it
    failed, a one-line summary, and the error message if it failed."""

    name: str
    folder: str | None
    summary: str = ""
    error: str = ""


def write_multi_index(out_dir: Path, entries: list[IndexEntry], title: str = "HandCap reports") -> Path:
    """Top-level ``index.html`` linking each input's report, with failed inputs and why."""
    rows = []
    for e in entries:
        if e.folder is None:
            rows.append(
                f'<tr class="bad"><td>{html.escape(e.name)}</td><td>failed</td><td>{html.escape(e.error)}</td></tr>'
            )
        else:
            link = f'<a href="{html.escape(e.folder)}/index.html">{html.escape(e.folder)}</a>'
            rows.append(f"<tr><td>{html.escape(e.name)}</td><td>{link}</td><td>{html.escape(e.summary)}</td></tr>")
    body = f"<table><tr><th>input</th><th>report</th><th>summary</th></tr>{''.join(rows)}</table>"
    path = Path(out_dir) / "index.html"
    path.write_text(_page(title, body), encoding="utf-8")
    return path
