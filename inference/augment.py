"""Test-time augmentation of the landmark model for hands it reads with low confidence.

A hand whose presence is below ``threshold`` is read again from three more views of its crop: mirrored
left-right (outputs mirrored back, handedness swapped back) and turned by +-``ROTATION`` radians about its
centre (the ROI's rotation changes, so the landmarks map back to the image as usual). The views are fused by
confidence: landmarks, depths, world points and handedness are averaged weighted by each view's presence
(views below the landmarker's ``min_presence`` carry no weight), and the presence becomes the mean over all
four views, so a false hand that only one view reads as a hand falls below the thresholds after it.
"""

from __future__ import annotations

import numpy as np

from .batching import HandNets, LandmarkBatch

#: Rotation of the turned views (radians, about 17 degrees).
ROTATION = 0.3


def augment_low_confidence(
    nets: HandNets, frames: list[np.ndarray], lb: LandmarkBatch, rows: np.ndarray, min_presence: float
) -> None:
    """Fuse four views of each hand in ``rows`` of ``lb`` (in place, as described above)."""
    if rows.size == 0:
        return
    images = [frames[i] for i in lb.image[rows]]
    base = lb.rois[rows]
    turned = [base + [0.0, 0.0, 0.0, r] for r in (-ROTATION, ROTATION)]
    views = [nets.landmarks(images, [b[None] for b in base], flip=True)]
    views += [nets.landmarks(images, [b[None] for b in t]) for t in turned]
    names = ("kp2d", "kp_z", "world", "left_score")
    presences = np.stack([lb.presence[rows]] + [v.presence for v in views])  # (4, N)
    weights = np.where(presences >= min_presence, presences, 0.0)
    weights[0] = np.maximum(weights[0], 1e-6)  # the original view always counts
    total = weights.sum(0)
    for name in names:
        stack = np.stack([getattr(lb, name)[rows]] + [getattr(v, name) for v in views])
        w = weights.reshape(weights.shape + (1,) * (stack.ndim - 2))
        getattr(lb, name)[rows] = (stack * w).sum(0) / total.reshape((-1,) + (1,) * (stack.ndim - 2))
    lb.presence[rows] = presences.mean(0)
