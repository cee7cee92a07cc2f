"""Small line plots drawn with OpenCV (no matplotlib dependency): PCK curves and per-frame curves."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
SPAN_SHADE = (235, 235, 235)  # RGB of shaded spans: light grey
SOFT_SPAN_SHADE = (253, 240, 205)  # the second kind: light amber


@dataclass
class Series:
    """One curve: x and y of equal length (NaN in y leaves a gap), a legend label and an RGB colour."""

    x: np.ndarray
    y: np.ndarray
    label: str
    color: tuple[int, int, int] | None = None


@dataclass
class Plot:
    """A line plot; ``spans`` are shaded x-intervals (e.g. frames where a hand was missing), ``soft_spans`` a
    second kind shaded lighter (e.g. gaps bridged from both sides), ``marks`` vertical
    lines (e.g. identity changes), each with a label for the legend; ``legend_loc`` "upper right" or
    "lower right"."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    span_label: str = ""
    soft_spans: list[tuple[float, float]] = field(default_factory=list)  # a second kind, shaded lighter
    soft_span_label: str = ""
    marks: list[float] = field(default_factory=list)
    mark_label: str = ""
    ylim: tuple[float, float] | None = None
    legend_loc: str = "upper right"  # or "lower right" (for rising curves such as PCK)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    span = max(hi - lo, 1e-9)
    step = 10 ** np.floor(np.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-6, step)


def render(plot: Plot, size: tuple[int, int] = (640, 400)) -> np.ndarray:
    """Render to an RGB uint8 image of ``size`` (width, height)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 30, 45
    xs = [s.x for s in plot.series if len(s.x)]
    ys = [s.y[np.isfinite(s.y)] for s in plot.series if np.isfinite(s.y).any()]
    x0, x1 = (min(x.min() for x in xs), max(x.max() for x in xs)) if xs else (0.0, 1.0)
    if plot.ylim:
        y0, y1 = plot.ylim
    elif ys:
        y0, y1 = min(y.min() for y in ys), max(y.max() for y in ys)
        pad = 0.05 * max(y1 - y0, 1e-6)
        y0, y1 = y0 - pad, y1 + pad
    else:
        y0, y1 = 0.0, 1.0
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def px(x, y):
        u = left + (np.asarray(x, float) - x0) / (x1 - x0) * (w - left - right)
        v = h - bottom - (np.asarray(y, float) - y0) / (y1 - y0) * (h - top - bottom)
        return u, v

    for spans, shade in ((plot.spans, SPAN_SHADE), (plot.soft_spans, SOFT_SPAN_SHADE)):
        for a, b in spans:
            ua, _ = px(a, y0)
            ub, _ = px(b, y0)
            cv2.rectangle(img, (int(ua), top), (max(int(ub), int(ua) + 1), h - bottom), shade, -1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in _nice_ticks(y0, y1):
        _, v = px(x0, t)
        cv2.line(img, (left, int(v)), (w - right, int(v)), (225, 225, 225), 1)
        cv2.putText(img, f"{t:g}", (4, int(v) + 4), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    for t in _nice_ticks(x0, x1):
        u, _ = px(t, y0)
        cv2.putText(img, f"{t:g}", (int(u) - 10, h - bottom + 16), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    for m in plot.marks:
        u, _ = px(m, y0)
        cv2.line(img, (int(u), top), (int(u), h - bottom), (214, 39, 40), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (80, 80, 80), 1)
    legend = []
    for i, s in enumerate(plot.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        u, v = px(s.x, s.y)
        ok = np.isfinite(v)
        # Break the line wherever y is missing, so gaps stay visible.
        for run in np.split(np.arange(len(v)), np.flatnonzero(~ok)):
            run = run[ok[run]]
            if len(run) > 1:
                pts = np.stack([u[run], v[run]], 1).round().astype(np.int32)
                cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
            elif len(run) == 1:
                cv2.circle(img, (int(u[run[0]]), int(v[run[0]])), 2, color, -1)
        legend.append((s.label, color))
    if plot.spans and plot.span_label:
        legend.append((plot.span_label, (200, 200, 200)))
    if plot.soft_spans and plot.soft_span_label:
        legend.append((plot.soft_span_label, (245, 215, 140)))
    if plot.marks and plot.mark_label:
        legend.append((plot.mark_label, (214, 39, 40)))
    # Legend box as wide as its longest label, so long labels are not cut at the border.
    text_w = max((cv2.getTextSize(label, font, 0.4, 1)[0][0] for label, _ in legend), default=0)
    x_line = w - right - text_w - 36
    first = top + 14 if plot.legend_loc == "upper right" else h - bottom - 8 - 16 * (len(legend) - 1)
    for i, (label, color) in enumerate(legend):
        y = first + 16 * i
        cv2.line(img, (x_line, y - 4), (x_line + 20, y - 4), color, 3)
        cv2.putText(img, label, (x_line + 25, y), font, 0.4, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.putText(img, plot.title, (left, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, plot.xlabel, (w // 2 - 40, h - 8), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, plot.ylabel, (4, top - 8), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def save(plot: Plot, path, size: tuple[int, int] = (640, 400)) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(render(plot, size), cv2.COLOR_RGB2BGR))
