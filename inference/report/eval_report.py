"""Report for an evaluation run: per-image overlays with the ground truth, failure categories, PCK curves.

Everything is computed from the per-image results of :func:`inference.evaluation.evaluate_set` (the same
``ImageScore`` objects ``evaluate --json`` aggregates), so the headline numbers are ``summary.to_json()``
verbatim and every derived figure (PCK curves, per-finger errors) agrees with them: the 2D PCK curve at 0.1
of the hand box IS ``pck_0.1``.

Failure categories, per ground-truth hand (a hand may fall in several):

* ``missed hand``: no prediction was matched to it;
* ``wrong handedness``: the ground truth and the prediction both name a side, and they differ;
* ``large 2D error``: mean 2D error over 2 x the median of the detected hands, or over 0.2 of the hand box;
* ``depth error``: absolute wrist-depth error of the fitted hand over 2 x the median, or over 15 % of the
  ground-truth wrist depth (only where a fitted hand and 3D ground truth exist);
* ``finger error``: one finger's mean 2D error over 0.2 of the hand box while the hand as a whole is not a
  large 2D error (the report also tabulates the mean error of every finger).

Fitted results (``inference.fitting.evaluation.add_fitted_metrics``) reach the report through
``ImageScore.extra["fitted"]``: per ground-truth hand a dict (None where unmatched) of ``pa_mpjpe_mm_fitted``,
``mpjpe_cam_mm_fitted``, ``reproj_err_px_fitted``, ``root_depth_err_mm`` (|fitted - true| wrist depth, mm)
and ``root_depth_err_pct`` (the same in % of the true depth). Each becomes a column of the per-image table;
the last two drive the depth error category. Wrong handedness needs the predictions to carry ``side``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...core.keypoints import KEYPOINT_FINGER
from ..evaluation import EvalSummary, GtHand, ImageScore, Prediction, procrustes_align
from ..sources import SourceError, read_image
from . import draw, plots

#: 2D PCK thresholds as a fraction of the hand box (longer side of the ground-truth keypoints' box);
#: k / 100 so that 0.1 is exactly the float ``evaluate`` uses for ``pck_0.1``.
PCK2D_THRESHOLDS = np.arange(41) / 100.0
#: 3D PCK thresholds in millimetres; the AUC is the curve's mean over this range.
PCK3D_THRESHOLDS_MM = np.arange(20, 51, dtype=np.float64)
LARGE_2D_MEDIAN_FACTOR = 2.0
LARGE_2D_BOX_FRACTION = 0.2
DEPTH_MEDIAN_FACTOR = 2.0
DEPTH_RELATIVE = 0.15
CATEGORIES = ("missed hand", "wrong handedness", "large 2D error", "depth error", "finger error")


@dataclass
class EvalReportOptions:
    """max_images: overlays for at most this many images (worst first); height: pixel height of each
    composite; crop: show the region around the hands (with a margin) instead of the whole image."""

    max_images: int = 200
    height: int = 256
    crop: bool = True


@dataclass
class HandRow:
    """One ground-truth hand and how the estimate did on it.

    Attributes:
        image: image path relative to the set folder; gt_index: index of the hand in that image.
        side_gt / side_pred: "left", "right" or None (unknown / not detected / predictor gives no side).
        box_px: hand box size (longer side of the ground-truth keypoints' box), pixels.
        kp2d_gt: (21, 2) ground-truth keypoints, pixels; kp2d_pred: (21, 2) matched estimate or None.
        kp2d_err_px, pck, pa_mpjpe_mm: the ``HandScore`` values ``evaluate`` averages (NaN where missed).
        joint_err_px: (21,) 2D error per joint, pixels; NaN where missed or the joint is not visible.
        joint_err_mm: (21,) 3D error per joint after Procrustes alignment, mm; NaN without 3D ground truth.
        root_rel_err_mm: (21,) 3D error per joint after moving the wrists together (no rotation, no scale), mm.
        fitted: per-hand fitted metrics found in the image's ``extra`` (name -> value), if any.
        categories: failure categories (see module docstring).
    """

    image: str
    gt_index: int
    side_gt: str | None
    side_pred: str | None
    box_px: float
    kp2d_gt: np.ndarray
    kp2d_pred: np.ndarray | None
    kp2d_err_px: float
    pck: float
    pa_mpjpe_mm: float
    joint_err_px: np.ndarray
    joint_err_mm: np.ndarray
    root_rel_err_mm: np.ndarray
    fitted: dict[str, float] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)

    @property
    def detected(self) -> bool:
        return not math.isnan(self.kp2d_err_px)

    @property
    def finger_err_px(self) -> np.ndarray:
        """(5,) mean 2D error per finger (thumb..pinky) over its visible joints, pixels (NaN if none)."""
        return np.array([_nanmean(self.joint_err_px[KEYPOINT_FINGER == f]) for f in range(5)])


@dataclass
class ImageEntry:
    """One image in the report: its overlay (path relative to the report folder), its hands, a worst-first
    score (inf when a hand was missed, else the largest 2D error as a fraction of the hand box) and the crop
    shown, (x0, y0, x1, y1) in image pixels."""

    file: str
    overlay: str | None
    score: float
    hands: list[HandRow]
    crop: tuple[int, int, int, int]


@dataclass
class Curve:
    """A PCK curve: thresholds (fraction of the hand box, or mm) and the fraction of joints within each."""

    label: str
    thresholds: np.ndarray
    values: np.ndarray

    def auc(self) -> float:
        """Normalised area under the curve over its threshold range (mean height, trapezoidal)."""
        t, v = self.thresholds, self.values
        if not np.all(np.isfinite(v)) or len(t) < 2:
            return float("nan")
        return float(np.trapz(v, t) / (t[-1] - t[0]))


@dataclass
class EvalReport:
    """What an evaluation report contains. ``metrics`` is ``summary.to_json()`` (the numbers of
    ``evaluate --json``); ``entries`` are sorted worst-first; ``categories`` maps each failure category to
    the (image, gt_index) pairs in it; ``finger_err_px`` / ``finger_err_mm`` are per-finger means over the
    detected hands (thumb..pinky); ``pck2d`` / ``pck3d`` the curves drawn in ``plots``."""

    out_dir: Path
    index: Path
    metrics: dict
    entries: list[ImageEntry]
    categories: dict[str, list[tuple[str, int]]]
    finger_err_px: np.ndarray
    finger_err_box: np.ndarray
    finger_err_mm: np.ndarray
    pck2d: list[Curve]
    pck3d: list[Curve]
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _nanmean(values) -> float:
    arr = np.asarray(values, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def _visible(g: GtHand) -> np.ndarray:
    # The rule evaluation.score_image applies: an annotation with no visible flag set counts every joint.
    return g.visible if g.visible.any() else np.ones(21, bool)


def _fitted_metrics(score: ImageScore, gt_index: int) -> dict[str, float]:
    """Numbers the fitting stage left for ground-truth hand ``gt_index`` in ``score.extra["fitted"]``."""
    per_hand = (score.extra or {}).get("fitted")
    hand = per_hand[gt_index] if isinstance(per_hand, list) and gt_index < len(per_hand) else None
    return {k: float(v) for k, v in (hand or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}


def hand_row(score: ImageScore, gi: int, root: Path) -> HandRow:
    """Per-joint errors of ground-truth hand ``gi`` of ``score`` (same matching and visibility as evaluate)."""
    g = score.image.hands[gi]
    s = score.hands[gi]
    nan21 = np.full(21, np.nan)
    err2d, err3d, rel3d = nan21.copy(), nan21.copy(), nan21.copy()
    side_pred, kp2d_pred = None, None
    if s.pred_index is not None:
        p: Prediction = score.predictions[s.pred_index]
        kp2d_pred = np.asarray(p.kp2d, np.float64)
        vis = _visible(g)
        err2d[vis] = np.linalg.norm(kp2d_pred[vis] - g.kp2d[vis], axis=-1)
        side_pred = getattr(p, "side", None)
        if g.kp3d_mm is not None and p.world is not None:
            world_mm = np.asarray(p.world, np.float64) * 1000.0
            err3d = np.linalg.norm(procrustes_align(world_mm, g.kp3d_mm) - g.kp3d_mm, axis=-1)
            rel3d = np.linalg.norm((world_mm - world_mm[0]) - (g.kp3d_mm - g.kp3d_mm[0]), axis=-1)
    try:
        name = str(score.image.path.relative_to(root))
    except ValueError:
        name = score.image.path.name
    return HandRow(
        image=name,
        gt_index=gi,
        side_gt=g.side,
        side_pred=side_pred,
        box_px=g.box_size,
        kp2d_gt=g.kp2d,
        kp2d_pred=kp2d_pred,
        kp2d_err_px=s.kp2d_err_px,
        pck=s.pck,
        pa_mpjpe_mm=s.pa_mpjpe_mm,
        joint_err_px=err2d,
        joint_err_mm=err3d,
        root_rel_err_mm=rel3d,
        fitted=_fitted_metrics(score, gi),
    )


def categorise(rows: list[HandRow]) -> dict[str, list[HandRow]]:
    """Fill ``row.categories`` and return category -> rows (see the module docstring for the rules)."""
    out: dict[str, list[HandRow]] = {c: [] for c in CATEGORIES}
    med2d = _nanmedian([r.kp2d_err_px for r in rows])
    depth = [abs(r.fitted["root_depth_err_mm"]) for r in rows if "root_depth_err_mm" in r.fitted]
    med_depth = _nanmedian(depth)
    for r in rows:
        r.categories = []
        if not r.detected:
            r.categories.append("missed hand")
        else:
            if r.side_gt and r.side_pred and r.side_gt != r.side_pred:
                r.categories.append("wrong handedness")
            large = r.kp2d_err_px > LARGE_2D_MEDIAN_FACTOR * med2d or r.kp2d_err_px > LARGE_2D_BOX_FRACTION * r.box_px
            if large:
                r.categories.append("large 2D error")
            d = r.fitted.get("root_depth_err_mm")
            pct = r.fitted.get("root_depth_err_pct", float("nan"))
            if d is not None and np.isfinite(d):
                if abs(d) > DEPTH_MEDIAN_FACTOR * med_depth or abs(pct) > 100 * DEPTH_RELATIVE:
                    r.categories.append("depth error")
            if not large and np.nanmax(np.append(r.finger_err_px, 0.0)) > LARGE_2D_BOX_FRACTION * r.box_px:
                r.categories.append("finger error")
        for c in r.categories:
            out[c].append(r)
    return out


def _nanmedian(values) -> float:
    arr = np.asarray(values, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else float("nan")


def pck_2d_curves(rows: list[HandRow], thresholds: np.ndarray = PCK2D_THRESHOLDS) -> list[Curve]:
    """Two curves: the mean over detected hands of each hand's PCK (``evaluate``'s averaging, so the value
    at 0.1 equals ``pck_0.1``), and the same over all hands counting a missed hand as 0."""
    detected, every = [], []
    for r in rows:
        if r.detected:
            err = r.joint_err_px[np.isfinite(r.joint_err_px)]
            per_t = (err[None, :] < thresholds[:, None] * r.box_px).mean(axis=1)
            detected.append(per_t)
            every.append(per_t)
        else:
            every.append(np.zeros(len(thresholds)))
    nan = np.full(len(thresholds), np.nan)
    return [
        Curve("detected hands", thresholds, np.mean(detected, axis=0) if detected else nan),
        Curve("all hands (missed = 0)", thresholds, np.mean(every, axis=0) if every else nan),
    ]


def pck_3d_curves(rows: list[HandRow], thresholds: np.ndarray = PCK3D_THRESHOLDS_MM) -> list[Curve]:
    """3D PCK over ``thresholds`` (mm) on hands with 3D ground truth: world landmarks after Procrustes
    alignment, and root-relative (wrists moved together, no rotation or scale). Empty without 3D data."""
    curves = []
    for label, attr in (("world, Procrustes-aligned", "joint_err_mm"), ("world, root-relative", "root_rel_err_mm")):
        errs = [getattr(r, attr) for r in rows if np.all(np.isfinite(getattr(r, attr)))]
        if errs:
            e = np.stack(errs)
            curves.append(Curve(label, thresholds, (e[None] < thresholds[:, None, None]).mean(axis=(1, 2))))
    return curves


def _crop_box(image: ImageScore, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The region around every ground-truth and predicted hand, with a 25 % margin (at least 48 px)."""
    pts = [g.kp2d[_visible(g)] for g in image.image.hands] + [np.asarray(p.kp2d) for p in image.predictions]
    pts = [p for p in pts if len(p)]
    w, h = size
    if not pts:
        return 0, 0, w, h
    allp = np.concatenate(pts)
    allp = allp[np.all(np.isfinite(allp), axis=1)]
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = max(48.0, 0.25 * float(np.max(hi - lo)))
    x0, y0 = (int(max(0, np.floor(v - pad))) for v in lo)
    x1, y1 = int(min(w, np.ceil(hi[0] + pad))), int(min(h, np.ceil(hi[1] + pad)))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0, 0, w, h
    return x0, y0, x1, y1


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    s = max(0.35, img.shape[0] / 600)
    cv2.putText(out, text, (4, int(16 * s / 0.35 * 0.7) + 4), cv2.FONT_HERSHEY_SIMPLEX, s, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, int(16 * s / 0.35 * 0.7) + 4), cv2.FONT_HERSHEY_SIMPLEX, s, (255, 255, 255), 1)
    return out


def composite(score: ImageScore, image: np.ndarray, rows: list[HandRow], height: int, crop) -> np.ndarray:
    """Panels left to right: ground truth (GT_COLOR) over the image, the estimate (finger colours) over the
    image, then per matched hand a side and a top view of the 3D skeleton with the 3D ground truth in
    GT_COLOR (world landmarks Procrustes-aligned to it; unaligned and alone without 3D ground truth).
    The two image panels show ``crop`` (x0, y0, x1, y1) scaled to ``height``."""
    x0, y0, x1, y1 = crop
    gt_color = tuple(int(c) for c in draw.GT_COLOR)
    scale = height / (y1 - y0)
    base = cv2.resize(image[y0:y1, x0:x1], (max(1, round((x1 - x0) * scale)), height), interpolation=cv2.INTER_AREA)

    def to_panel(kp):
        return (np.asarray(kp, np.float64) - [x0, y0]) * scale

    gt_panel, est_panel = base, base
    for g in score.image.hands:
        vis = g.visible.astype(np.float64) if g.visible.any() else None
        gt_panel = draw.draw_keypoints(gt_panel, to_panel(g.kp2d), vis, min_conf=0.5, color=gt_color)
    for p in score.predictions:
        est_panel = draw.draw_keypoints(est_panel, to_panel(p.kp2d))
    errs = ", ".join("missed" if not r.detected else f"{r.kp2d_err_px:.1f} px" for r in rows)
    panels = [_label(gt_panel, "ground truth"), _label(est_panel, f"estimate: {errs}")]
    for r, s in zip(rows, score.hands, strict=True):
        if s.pred_index is None:
            continue
        p = score.predictions[s.pred_index]
        if p.world is None:
            continue
        g = score.image.hands[r.gt_index]
        kp, gt3d = np.asarray(p.world, np.float64), None
        if g.kp3d_mm is not None:
            gt3d = g.kp3d_mm / 1000.0
            kp = procrustes_align(kp * 1000.0, g.kp3d_mm) / 1000.0
        # Centred on the middle of the hand (not the wrist) so a whole open hand fits the 25 cm view.
        centre = (kp.min(axis=0) + kp.max(axis=0)) / 2
        for rot, name in ((draw.rotation_y(90), "side"), (draw.rotation_x(-90), "top")):
            view = draw.skeleton_view(kp, rot, height, gt3d=gt3d, label=f"hand {r.gt_index}: {name}", centre=centre)
            panels.append(view)
    return draw.side_by_side(panels, height)


def _read(path: Path, size: tuple[int, int], notes: list[str]) -> np.ndarray:
    try:
        return read_image(path)
    except SourceError as exc:
        notes.append(f"{exc}; overlay drawn on a blank canvas")
        return np.full((size[1], size[0], 3), 96, np.uint8)


def _plots(report: EvalReport) -> None:
    series = [plots.Series(c.thresholds, c.values, c.label) for c in report.pck2d]
    plot = plots.Plot(
        "2D PCK", "threshold (fraction of hand box)", "PCK", series, ylim=(0.0, 1.0), legend_loc="lower right"
    )
    plots.save(plot, report.out_dir / "pck_2d.png")
    report.plots.append("pck_2d.png")
    if report.pck3d:
        series = [plots.Series(c.thresholds, c.values, f"{c.label} (AUC {c.auc():.3f})") for c in report.pck3d]
        plot = plots.Plot("3D PCK", "threshold (mm)", "PCK", series, ylim=(0.0, 1.0), legend_loc="lower right")
        plots.save(plot, report.out_dir / "pck_3d.png", size=(720, 400))
        report.plots.append("pck_3d.png")


def build_eval_report(
    summary: EvalSummary, root: Path, out_dir: Path, options: EvalReportOptions | None = None
) -> EvalReport:
    """Write overlays, PCK plots, ``report.json`` and ``index.html`` for an evaluation into ``out_dir``.

    ``summary`` is what ``evaluate_set`` returned (with ``per_image``); ``root`` the set folder (names images).
    """
    from .index import write_eval_index, write_eval_json

    options = options or EvalReportOptions()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    per_image_rows = [[hand_row(s, gi, Path(root)) for gi in range(len(s.hands))] for s in summary.per_image]
    rows = [r for image_rows in per_image_rows for r in image_rows]
    by_category = categorise(rows)
    detected = [r for r in rows if r.detected]

    def finger_mean(fn):
        return np.array([_nanmean([fn(r)[f] for r in detected]) if detected else np.nan for f in range(5)])

    report = EvalReport(
        out_dir=out_dir,
        index=out_dir / "index.html",
        metrics=summary.to_json(),
        entries=[],
        categories={c: [(r.image, r.gt_index) for r in rs] for c, rs in by_category.items()},
        finger_err_px=finger_mean(lambda r: r.finger_err_px),
        finger_err_box=finger_mean(lambda r: r.finger_err_px / r.box_px),
        finger_err_mm=finger_mean(
            lambda r: np.array([_nanmean(r.joint_err_mm[KEYPOINT_FINGER == f]) for f in range(5)])
        ),
        pck2d=pck_2d_curves(rows),
        pck3d=pck_3d_curves(rows),
    )
    if not any(r.side_pred for r in detected):
        report.notes.append("the predictor reports no hand sides: wrong handedness cannot be judged")
    if not any("root_depth_err_mm" in r.fitted for r in rows):
        report.notes.append("no fitted hand depths in these results: depth errors cannot be judged")
    for s, image_rows in zip(summary.per_image, per_image_rows, strict=True):
        scores = [math.inf if not r.detected else r.kp2d_err_px / r.box_px for r in image_rows]
        entry = ImageEntry(
            image_rows[0].image if image_rows else s.image.path.name,
            None,
            max(scores, default=0.0),
            image_rows,
            (0, 0, *s.image.size),
        )
        report.entries.append(entry)
    order = sorted(range(len(report.entries)), key=lambda i: -report.entries[i].score)
    report.entries = [report.entries[i] for i in order]
    for rank, i in enumerate(order[: options.max_images]):
        s, entry = summary.per_image[i], report.entries[rank]
        image = _read(s.image.path, s.image.size, report.notes)
        size = (image.shape[1], image.shape[0])
        entry.crop = _crop_box(s, size) if options.crop else (0, 0, *size)
        view = composite(s, image, entry.hands, options.height, entry.crop)
        entry.overlay = f"images/{i:05d}_{Path(entry.file).stem}.jpg"
        cv2.imwrite(str(out_dir / entry.overlay), cv2.cvtColor(view, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    _plots(report)
    write_eval_json(report, summary.name)
    write_eval_index(report, title=f"HandCap evaluation: {summary.name}")
    return report
