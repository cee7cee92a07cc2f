"""Accuracy of hand landmarks on annotated sets (``<set>/hands.json`` + ``<set>/images/``).

Metrics (all per ground-truth hand, then averaged over the hands a prediction was matched to):

* ``detected_rate``: fraction of ground-truth hands matched by a predicted hand. Matching is a minimum-cost
  assignment on the mean 2D distance over the visible joints; a pair counts only when that distance is
  below ``MATCH_FRACTION`` of the ground-truth hand box (else the prediction is another hand).
* ``kp2d_err_px``: mean over visible joints of the 2D distance, pixels.
* ``pck_0.1``: fraction of visible joints within 0.1 x the hand box size (the longer side of the bounding
  box of the ground-truth 2D keypoints).
* ``pa_mpjpe_mm_raw``: mean per-joint 3D error in millimetres of the network's world landmarks after a
  similarity Procrustes alignment (scale, rotation, translation) to ``kp3d_cam_mm``; hands with 3D ground
  truth only.

Predictions are anything with ``kp2d`` (21, 2) pixels and ``world`` (21, 3) metres, so the same code scores
HandCap and MediaPipe (see benchmarks/bench_landmarks.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

#: A prediction matches a ground-truth hand when its mean visible-joint distance is below this fraction of
#: the hand box size.
MATCH_FRACTION = 0.5
PCK_THRESHOLD = 0.1


class SetFormatError(ValueError):
    """An annotated set folder is missing or its hands.json does not follow the format."""


@dataclass
class GtHand:
    """One annotated hand: kp2d (21, 2) pixels; visible (21,) bool; kp3d_mm (21, 3) camera-frame mm or None."""

    side: str | None
    kp2d: np.ndarray
    visible: np.ndarray
    kp3d_mm: np.ndarray | None

    @property
    def box_size(self) -> float:
        """Longer side of the bounding box of the visible 2D keypoints, pixels."""
        p = self.kp2d[self.visible] if self.visible.any() else self.kp2d
        return float(max(np.ptp(p[:, 0]), np.ptp(p[:, 1]), 1e-6))


@dataclass
class GtImage:
    """One annotated image: path, size (width, height), intrinsics K (3, 3) or None, hands."""

    path: Path
    size: tuple[int, int]
    K: np.ndarray | None
    hands: list[GtHand]


@dataclass
class AnnotatedSet:
    name: str
    root: Path
    images: list[GtImage]


def load_annotated_set(set_dir: str | Path) -> AnnotatedSet:
    """Read ``set_dir/hands.json`` (format in shared/data/README.md); hands without 2D keypoints are skipped."""
    root = Path(set_dir)
    meta_path = root / "hands.json"
    if not meta_path.is_file():
        raise SetFormatError(f"{root}: no hands.json (expected an annotated set: hands.json + images/)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        images = []
        for entry in meta["images"]:
            hands = []
            for h in entry["hands"]:
                if h.get("kp2d") is None:
                    continue
                kp2d = np.asarray(h["kp2d"], np.float64).reshape(21, 2)
                vis = np.asarray(h.get("visible") or [True] * 21, bool).reshape(21)
                kp3d = h.get("kp3d_cam_mm")
                kp3d = None if kp3d is None else np.asarray(kp3d, np.float64).reshape(21, 3)
                hands.append(GtHand(h.get("side"), kp2d, vis, kp3d))
            k = entry.get("K")
            images.append(
                GtImage(
                    root / entry["file"],
                    (int(entry["width"]), int(entry["height"])),
                    None if k is None else np.asarray(k, np.float64).reshape(3, 3),
                    hands,
                )
            )
    except json.JSONDecodeError as exc:
        raise SetFormatError(f"{meta_path}: not valid JSON ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise SetFormatError(
            f"{meta_path}: does not follow the hands.json format ({type(exc).__name__}: {exc})"
        ) from None
    return AnnotatedSet(str(meta.get("name", root.name)), root, images)


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred`` (N, 3) moved onto ``gt`` (N, 3) by the best similarity transform (least squares)."""
    mp, mg = pred.mean(0), gt.mean(0)
    p, g = pred - mp, gt - mg
    u, s, vt = np.linalg.svd(p.T @ g)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.array([1.0, 1.0, d])  # no reflections
    rot = (u * fix) @ vt
    var = (p**2).sum()
    scale = (s * fix).sum() / var if var > 0 else 1.0
    return scale * p @ rot + mg


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint distance after Procrustes alignment, in the units of ``gt``."""
    return float(np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1).mean())


def pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: float, threshold: float = PCK_THRESHOLD) -> float:
    """Fraction of visible joints with 2D error below ``threshold * norm``."""
    err = np.linalg.norm(pred - gt, axis=-1)[visible]
    return float((err < threshold * norm).mean()) if err.size else float("nan")


def match_hands(preds: Sequence[np.ndarray], gts: Sequence[GtHand]) -> list[int | None]:
    """For each ground-truth hand, the index of its predicted hand (or None): minimum total mean 2D distance,
    pairs farther than MATCH_FRACTION of the hand box left unmatched."""
    if not preds or not gts:
        return [None] * len(gts)
    cost = np.empty((len(gts), len(preds)))
    for i, g in enumerate(gts):
        vis = g.visible if g.visible.any() else np.ones(21, bool)
        for j, p in enumerate(preds):
            cost[i, j] = np.linalg.norm(np.asarray(p)[vis] - g.kp2d[vis], axis=-1).mean() / g.box_size
    rows, cols = linear_sum_assignment(cost)
    out: list[int | None] = [None] * len(gts)
    for r, c in zip(rows, cols, strict=True):
        if cost[r, c] < MATCH_FRACTION:
            out[r] = int(c)
    return out


@dataclass
class HandScore:
    """Scores of one ground-truth hand; NaN where not detected (or no 3D ground truth for pa_mpjpe_mm)."""

    gt_index: int
    pred_index: int | None
    kp2d_err_px: float = float("nan")
    pck: float = float("nan")
    pa_mpjpe_mm: float = float("nan")


@dataclass
class Prediction:
    """One predicted hand for scoring: kp2d (21, 2) pixels, world (21, 3) metres (any rotation/origin)."""

    kp2d: np.ndarray
    world: np.ndarray | None = None
    side: str | None = None  # "left" / "right" when the predictor knows it (the fitted metrics use it)
    presence: float = 1.0


@dataclass
class ImageScore:
    """Per-image result: the ground truth, the predictions and each ground-truth hand's scores.
    ``extra`` is free per-image data for other metrics (e.g. a fitted hand model's keypoints)."""

    image: GtImage
    predictions: list[Prediction]
    hands: list[HandScore]
    extra: dict = field(default_factory=dict)


@dataclass
class EvalSummary:
    """Aggregate metrics of a set; ``per_image`` keeps every image's details. ``extra`` holds further
    metrics (added by other stages) that ``to_json`` reports beside the standard keys."""

    name: str
    images: int
    hands: int
    detected_rate: float
    kp2d_err_px: float
    pck_01: float
    pa_mpjpe_mm_raw: float
    per_image: list[ImageScore] = field(default_factory=list, repr=False)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The standard keys (``images, hands, detected_rate, kp2d_err_px, pck_0.1, pa_mpjpe_mm_raw``;
        null where not measurable) followed by ``extra``."""

        def num(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)

        out = {
            "images": self.images,
            "hands": self.hands,
            "detected_rate": num(self.detected_rate),
            "kp2d_err_px": num(self.kp2d_err_px),
            "pck_0.1": num(self.pck_01),
            "pa_mpjpe_mm_raw": num(self.pa_mpjpe_mm_raw),
        }
        out.update({k: num(v) if isinstance(v, float) else v for k, v in self.extra.items()})
        return out


def score_image(image: GtImage, predictions: list[Prediction]) -> ImageScore:
    """Match and score the predictions of one image."""
    matches = match_hands([p.kp2d for p in predictions], image.hands)
    scores = []
    for gi, (g, pi) in enumerate(zip(image.hands, matches, strict=True)):
        s = HandScore(gi, pi)
        if pi is not None:
            p = predictions[pi]
            vis = g.visible if g.visible.any() else np.ones(21, bool)
            s.kp2d_err_px = float(np.linalg.norm(np.asarray(p.kp2d)[vis] - g.kp2d[vis], axis=-1).mean())
            s.pck = pck(np.asarray(p.kp2d), g.kp2d, vis, g.box_size)
            if g.kp3d_mm is not None and p.world is not None:
                s.pa_mpjpe_mm = pa_mpjpe(np.asarray(p.world) * 1000.0, g.kp3d_mm)
        scores.append(s)
    return ImageScore(image, predictions, scores)


def _nanmean(values: list[float]) -> float:
    arr = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def summarize(name: str, per_image: list[ImageScore]) -> EvalSummary:
    """Aggregate per-image scores (means over matched hands)."""
    hands = [h for im in per_image for h in im.hands]
    n = len(hands)
    detected = sum(h.pred_index is not None for h in hands)
    return EvalSummary(
        name=name,
        images=len(per_image),
        hands=n,
        detected_rate=detected / n if n else float("nan"),
        kp2d_err_px=_nanmean([h.kp2d_err_px for h in hands]),
        pck_01=_nanmean([h.pck for h in hands]),
        pa_mpjpe_mm_raw=_nanmean([h.pa_mpjpe_mm for h in hands]),
        per_image=per_image,
    )


def evaluate_set(
    data: AnnotatedSet,
    predict: Callable[[list[Path]], list[list[Prediction]]],
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> EvalSummary:
    """Score ``predict`` (image paths -> predicted hands per image) on every image of ``data``."""
    per_image: list[ImageScore] = []
    for start in range(0, len(data.images), batch):
        chunk = data.images[start : start + batch]
        preds = predict([im.path for im in chunk])
        per_image += [score_image(im, p) for im, p in zip(chunk, preds, strict=True)]
        if progress is not None:
            progress(len(per_image), len(data.images))
    return summarize(data.name, per_image)


def landmarker_predictor(landmarker) -> Callable[[list[Path]], list[list[Prediction]]]:
    """``predict`` for evaluate_set from a HandLandmarker (still-image mode, batched)."""
    from .sources import read_image

    def predict(paths: list[Path]) -> list[list[Prediction]]:
        results = landmarker.process_images([read_image(p) for p in paths])
        return [[Prediction(h.kp2d, h.world, h.side, h.presence) for h in r.hands] for r in results]

    return predict
