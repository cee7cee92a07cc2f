"""Accuracy of the fitted hand model on annotated sets (the ``*_fitted`` keys of ``handcap evaluate``).

Every ground-truth hand that the landmarks matched is fitted on its own (one frame, the predicted side's
model, the image's K when the set gives one, else the default camera) and scored:

* ``pa_mpjpe_mm_fitted``: fitted keypoints vs ``kp3d_cam_mm`` after a similarity Procrustes alignment, mm
  (comparable with ``pa_mpjpe_mm_raw`` of the world landmarks);
* ``mpjpe_cam_mm_fitted``: mean keypoint distance in the camera frame without any alignment, mm (K known);
* ``root_depth_err_mm`` / ``root_depth_err_pct``: |fitted - true| wrist depth, mm and % of the true depth (K known);
* ``reproj_err_px_fitted``: fitted keypoints projected into the image vs the ground-truth 2D keypoints over
  the visible joints, pixels (comparable with ``kp2d_err_px`` of the landmarks).

Means are over the hands where each metric is defined; None where no hand qualifies.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ...core.capture import CameraIntrinsics
from .fit import FitOptions, HandObservations, fit_hands

KEYS = ("pa_mpjpe_mm_fitted", "mpjpe_cam_mm_fitted", "root_depth_err_mm", "root_depth_err_pct", "reproj_err_px_fitted")


def _pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    from ..evaluation import pa_mpjpe

    return pa_mpjpe(pred, gt)


def fit_scores(image, prediction, gt, models: dict, options: FitOptions) -> dict[str, float]:
    """Fit one predicted hand (``kp2d`` (21, 2) px, ``world`` (21, 3) m, optional ``side``/``presence``) of
    ``image`` (``size``, ``K``) and score it against the ground-truth hand ``gt`` (``kp2d``, ``visible``,
    ``kp3d_mm``, ``side``). Returns the defined metrics of ``KEYS``."""
    w, h = image.size
    k = image.K if image.K is not None else CameraIntrinsics.default(w, h).matrix
    side = getattr(prediction, "side", None) or gt.side or "right"
    presence = float(getattr(prediction, "presence", 1.0) or 1.0)
    obs = HandObservations(
        np.asarray(prediction.kp2d, np.float64)[None],
        np.full((1, 21), presence),
        np.asarray(prediction.world, np.float64)[None],
        np.ones(1, bool),
    )
    (fit,), _ = fit_hands([models[side]], [obs], k, options)
    kp = fit.kp3d[0]
    uv = kp[:, :2] / kp[:, 2:] * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])
    vis = gt.visible if gt.visible.any() else np.ones(21, bool)
    out = {"reproj_err_px_fitted": float(np.linalg.norm(uv - gt.kp2d, axis=-1)[vis].mean())}
    if gt.kp3d_mm is not None:
        kp_mm = kp * 1000.0
        out["pa_mpjpe_mm_fitted"] = _pa_mpjpe(kp_mm, gt.kp3d_mm)
        if image.K is not None:
            out["mpjpe_cam_mm_fitted"] = float(np.linalg.norm(kp_mm - gt.kp3d_mm, axis=-1).mean())
            dz = abs(float(kp_mm[0, 2] - gt.kp3d_mm[0, 2]))
            out["root_depth_err_mm"] = dz
            out["root_depth_err_pct"] = 100.0 * dz / float(gt.kp3d_mm[0, 2])
    return out


def add_fitted_metrics(
    summary,
    device: str = "cpu",
    model: str = "builtin",
    mano_dir: str | None = None,
    options: FitOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float | None]:
    """Fit every matched hand of an ``EvalSummary`` and add the ``KEYS`` means to ``summary.extra`` (per-hand
    values go to each ``ImageScore.extra["fitted"]``, one dict per ground-truth hand, None if unmatched).
    Returns the added means."""
    import torch

    from ..handmodel import load_hand_model

    models = {
        s: load_hand_model(model, s, mano_dir=mano_dir, device=device, dtype=torch.float64) for s in ("right", "left")
    }
    options = options or FitOptions(device=device)
    values: dict[str, list[float]] = {k: [] for k in KEYS}
    total = sum(1 for im in summary.per_image for hs in im.hands if hs.pred_index is not None)
    done = 0
    for im in summary.per_image:
        per_hand = []
        for hs in im.hands:
            if hs.pred_index is None:
                per_hand.append(None)
                continue
            scores = fit_scores(im.image, im.predictions[hs.pred_index], im.image.hands[hs.gt_index], models, options)
            per_hand.append({k: round(v, 4) for k, v in scores.items()})
            for key, v in scores.items():
                values[key].append(v)
            done += 1
            if progress is not None:
                progress(done, total)
        im.extra["fitted"] = per_hand
    means = {k: (float(np.mean(v)) if v else None) for k, v in values.items()}
    summary.extra.update({k: (None if v is None or math.isnan(v) else round(v, 4)) for k, v in means.items()})
    return means
