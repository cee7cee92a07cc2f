"""Report for one capture: per-frame overlays, worst-first index, and per-frame curves for videos.

For each reported frame the composite shows, left to right: the observed 2D keypoints over the image, the
fitted mesh with the fitted keypoints re-projected over the image, and the fitted 3D skeleton seen from the
side and from above. Frames are ranked worst-first by ``score``: a missed hand ranks first, then the mean
reprojection error (px) between observed and fitted keypoints.

A bridged frame (``HandTrack.bridged``: a short gap filled from both sides, keyed by the importer though
not observed) has no error, so it ranks with the missed ones; its fitted hand is drawn in ``BRIDGED_COLOR``
with no observed keypoints, the table says "bridged", and the curves shade it apart from the frames where
the hand is missing (its wrist depth and jitter are drawn: the rig has them).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...core.capture import Capture
from ...core.handmodel import HandModelData, forward, load_builtin
from ..sources import SourceError, open_source
from . import draw, plots

MISSED = float("inf")
BRIDGED_COLOR = (0, 255, 255)  # RGB: cyan, a hue none of the fingers (draw.FINGER_COLORS) or the truth has


@dataclass
class ReportOptions:
    """max_frames: at most this many frames get an overlay (evenly spaced; the worst are always included);
    height: pixel height of each composite row; mesh: draw the fitted mesh when the hand model is at hand."""

    max_frames: int = 48
    height: int = 360
    mesh: bool = True


@dataclass
class FrameEntry:
    """One reported frame. errors_px: track key -> mean reprojection error (px), inf when the hand was not
    observed; bridged: the keys whose hand was bridged there (not observed, filled from both sides)."""

    frame: int
    image: str
    score: float
    errors_px: dict[str, float]
    confidence: dict[str, float]
    bridged: frozenset[str] = frozenset()


@dataclass
class ReportSummary:
    """What a report contains; ``entries`` are sorted worst-first."""

    out_dir: Path
    index: Path
    entries: list[FrameEntry] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reprojection_errors(capture: Capture) -> dict[str, np.ndarray]:
    """side -> (T,) mean px distance between observed kp2d and the projection of fitted kp3d (inf if missed)."""
    K = capture.intrinsics.matrix
    out = {}
    for side, track in capture.hands.items():
        proj = draw.project(track.kp3d.astype(np.float64), K)
        err = np.linalg.norm(proj - track.kp2d, axis=-1).mean(axis=-1)
        out[side] = np.where(track.valid, err, MISSED)
    return out


def _hand_models(capture: Capture, options: ReportOptions, notes: list[str]) -> dict[str, HandModelData]:
    if not options.mesh:
        return {}
    if not capture.hand_model.startswith("builtin"):
        notes.append(f"mesh not drawn: hand model {capture.hand_model!r} needs its own files; keypoints only")
        return {}
    return {side: load_builtin(side) for side in capture.hands}


def _frames(source: str, capture: Capture, wanted: np.ndarray, notes: list[str]) -> dict[int, np.ndarray]:
    """Source frames by index; a missing source gives grey canvases and a note."""
    images: dict[int, np.ndarray] = {}
    try:
        src = open_source(source, frames=range(int(wanted.min()), int(wanted.max()) + 1))
        keep = set(int(f) for f in wanted)
        for index, rgb in src:
            if index in keep:
                images[index] = rgb
    except SourceError as exc:
        notes.append(f"source frames unavailable ({exc}); overlays drawn on a blank canvas")
    w, h = capture.image_size
    return {int(f): images.get(int(f), np.full((h, w, 3), 96, np.uint8)) for f in wanted}


def composite(image: np.ndarray, capture: Capture, t: int, models: dict[str, HandModelData], height: int):
    """The 4-panel view of captured frame ``t`` (row index into the capture)."""
    K = capture.intrinsics.matrix
    observed, fitted = image, image
    views_side, views_top = [], []
    for side, track in capture.hands.items():
        bridged = bool(track.bridged[t])  # never a seen frame (the capture format checks it)
        if not track.keyed[t]:
            continue
        color = BRIDGED_COLOR if bridged else None
        if not bridged:
            observed = draw.draw_keypoints(observed, track.kp2d[t], track.kp_conf[t], min_conf=0.05)
        if side in models:
            out = forward(models[side], track.theta[t], track.beta, track.transl[t], track.joint_offsets)
            fitted = draw.draw_mesh(fitted, out.vertices[0], models[side].faces, K)
        fitted = draw.draw_keypoints(fitted, draw.project(track.kp3d[t].astype(np.float64), K), color=color)
        # Centred on the middle of the hand, not the wrist, so a whole open hand fits the 25 cm view.
        mid = (track.kp3d[t].min(axis=0) + track.kp3d[t].max(axis=0)) / 2
        name = f"{side} (bridged)" if bridged else side
        views_side.append(draw.skeleton_view(track.kp3d[t], draw.rotation_y(90), label=f"{name}: side", centre=mid))
        views_top.append(draw.skeleton_view(track.kp3d[t], draw.rotation_x(-90), label=f"{name}: top", centre=mid))
    blank = draw.skeleton_view(np.zeros((21, 3)), np.eye(3), label="no hand")
    panels = [observed, fitted, *(views_side or [blank]), *(views_top or [blank])]
    return draw.side_by_side(panels, height)


def _pick(order: np.ndarray, count: int, limit: int) -> np.ndarray:
    """The worst third of ``limit`` plus evenly spaced frames, as sorted row indices."""
    worst = order[: max(1, limit // 3)]
    even = np.linspace(0, count - 1, num=min(count, limit - len(worst))).round().astype(int)
    return np.unique(np.concatenate([worst, even]))


def frame_spans(frames: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """(first - 0.5, last + 0.5) of each run of True in mask (T,), in frame numbers."""
    out = []
    for run in np.split(np.arange(len(mask)), np.flatnonzero(np.diff(mask.astype(int))) + 1):
        if len(run) and mask[run[0]]:
            out.append((float(frames[run[0]]) - 0.5, float(frames[run[-1]]) + 0.5))
    return out


def video_curves(capture: Capture, out_dir: Path) -> list[str]:
    """confidence, jitter (mm/frame^2) and wrist depth per frame; missing frames shaded, bridged ones shaded
    apart (their depth and jitter drawn), suspected identity changes (wrist jumps over 8 cm between
    consecutive frames) marked."""
    frames = capture.frames.astype(float)
    conf, jitter, depth = [], [], []
    spans, bridged, marks = [], [], []
    for i, (side, track) in enumerate(capture.hands.items()):
        color = plots.PALETTE[i % len(plots.PALETTE)]
        valid, keyed = track.valid, track.keyed
        conf.append(plots.Series(frames, np.where(valid, track.frame_conf, np.nan), side, color))
        kp = np.where(keyed[:, None, None], track.kp3d, np.nan).astype(np.float64)
        acc = np.full(len(frames), np.nan)
        if len(frames) >= 3:
            acc[1:-1] = np.linalg.norm(kp[2:] - 2 * kp[1:-1] + kp[:-2], axis=-1).mean(axis=-1) * 1000
        jitter.append(plots.Series(frames, acc, side, color))
        depth.append(plots.Series(frames, kp[:, 0, 2], side, color))
        spans += frame_spans(frames, ~keyed)
        bridged += frame_spans(frames, track.bridged)
        jump = np.linalg.norm(np.diff(kp[:, 0], axis=0), axis=-1)
        marks.extend(frames[1:][jump > 0.08].tolist())
    names = []
    for name, series, ylabel in (
        ("curve_confidence.png", conf, "confidence"),
        ("curve_jitter.png", jitter, "mm/frame^2"),
        ("curve_wrist_depth.png", depth, "m"),
    ):
        plot = plots.Plot(
            title=name[6:-4].replace("_", " "),
            xlabel="frame",
            ylabel=ylabel,
            series=series,
            spans=spans,
            span_label="hand missing",
            soft_spans=bridged,
            soft_span_label="gap bridged",
            marks=marks,
            mark_label="wrist jump",
        )
        plots.save(plot, out_dir / name)
        names.append(name)
    return names


def build_capture_report(capture: Capture, out_dir: Path, options: ReportOptions | None = None) -> ReportSummary:
    """Write overlays, curves and ``index.html`` for ``capture`` into ``out_dir``."""
    options = options or ReportOptions()
    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    summary = ReportSummary(out_dir=out_dir, index=out_dir / "index.html")
    errors = reprojection_errors(capture)
    score = np.max(np.stack(list(errors.values())), axis=0) if errors else np.zeros(capture.num_frames)
    order = np.argsort(-score, kind="stable")
    rows = _pick(order, capture.num_frames, options.max_frames)
    models = _hand_models(capture, options, summary.notes)
    images = _frames(capture.source, capture, capture.frames[rows], summary.notes)
    for t in rows:
        frame = int(capture.frames[t])
        view = composite(images[frame], capture, int(t), models, options.height)
        name = f"frames/frame_{frame:06d}.jpg"
        cv2.imwrite(str(out_dir / name), cv2.cvtColor(view, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        summary.entries.append(
            FrameEntry(
                frame=frame,
                image=name,
                score=float(score[t]),
                errors_px={s: float(e[t]) for s, e in errors.items()},
                confidence={s: float(tr.frame_conf[t]) if tr.valid[t] else 0.0 for s, tr in capture.hands.items()},
                bridged=frozenset(s for s, tr in capture.hands.items() if tr.bridged[t]),
            )
        )
    summary.entries.sort(key=lambda e: -e.score)
    if capture.num_frames > 1:
        summary.curves = video_curves(capture, out_dir)
    write_index(summary, title=f"HandCap report: {Path(capture.source).name}")
    return summary


def _fmt(v: float, bridged: bool = False) -> str:
    if bridged:
        return "bridged"
    return "missed" if not np.isfinite(v) else f"{v:.2f}"


def write_index(summary: ReportSummary, title: str, extra_html: str = "") -> None:
    """index.html with only local resources: notes, curves, then one row per frame, worst first."""
    sides = sorted({s for e in summary.entries for s in e.errors_px})
    head = "".join(f"<th>{s} error (px)</th><th>{s} conf</th>" for s in sides)
    rows = []
    for e in summary.entries:
        cells = "".join(
            f"<td>{_fmt(e.errors_px.get(s, np.nan), s in e.bridged)}</td><td>{e.confidence.get(s, 0.0):.2f}</td>"
            for s in sides
        )
        rows.append(
            f'<tr><td>{e.frame}</td><td>{_fmt(e.score)}</td>{cells}<td><a href="{html.escape(e.image)}">'
            f'<img src="{html.escape(e.image)}" height="120"></a></td></tr>'
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.notes)
    curves = "".join(f'<img src="{html.escape(c)}">' for c in summary.curves)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style>
</head><body><h1>{html.escape(title)}</h1><ul>{notes}</ul>{extra_html}<div>{curves}</div>
<p>Frames sorted worst first (score: a hand not observed, missed or bridged, then mean reprojection error in
px). A bridged hand (a short gap filled from both sides, keyed in Blender) is drawn in cyan.</p>
<table><tr><th>frame</th><th>score</th>{head}<th>overlay</th></tr>{"".join(rows)}</table></body></html>"""
    summary.index.write_text(page, encoding="utf-8")
