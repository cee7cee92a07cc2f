"""Fit a MANO-style hand model to 2D + 3D hand landmarks over a whole clip (see docs/fitting.md).

* ``tracks.build_tracks``: landmarker results -> at most one track per side, gaps marked;
* ``fit.fit_hands``: batched fit of theta (T, 16, 3), beta (10,) and camera-frame translation (T, 3) per track;
* ``ik``: the analytic initialisation; ``solver``: the batched Levenberg-Marquardt; ``priors``: cost terms;
* ``two_hands``: one size for one person's two hands, and the joint two-hand stage (contact, capsules);
* ``focal``: the focal length estimated from the hands when no camera is given;
* ``synthetic``: clips with known truth for tests and benchmarks (one hand, or two that touch).
"""

from .fit import FitError, FitOptions, FitReport, HandFit, HandObservations, fit_hands
from .tracks import NoHandError, TrackedHand, TrackSet, build_tracks

__all__ = [
    "FitError",
    "FitOptions",
    "FitReport",
    "HandFit",
    "HandObservations",
    "NoHandError",
    "TrackSet",
    "TrackedHand",
    "build_tracks",
    "fit_hands",
]
