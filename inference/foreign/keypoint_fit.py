"""Keypoint results -> capture with HandCap's own fit: the same entry point the capture job feeds the
landmarker's results to (``capture_job.capture_from_landmarks``: tracks, fit, capture). Needs torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.capture_checks import key_side
from .common import ForeignImport, ForeignOptions, ForeignResultsError, clip_fps, intrinsics
from .keypoint_results import KeypointResults


def landmark_results(kp: KeypointResults, k: np.ndarray) -> list:
    """One landmarker ``FrameResult`` per frame, with each track of the file as its own landmarker track
    (its side as labelled)."""
    from ..fitting.ik import ray_rotation
    from ..landmarker import FrameResult, HandObservation

    out = [FrameResult(int(f), kp.image_size, []) for f in kp.frames]
    for track_id, (key, h) in enumerate(kp.hands.items()):
        side = key_side(key)
        for row in np.flatnonzero(h.valid):
            if h.world is not None:
                world = h.world[row]
            else:
                # camera-frame points: undo the viewing-ray rotation the fit applies to world landmarks
                c2d = h.kp2d[row].mean(0)
                world = (h.camera[row] - h.camera[row].mean(0)) @ ray_rotation(c2d[None], k)[0]
            p_right = 1.0 if side == "right" else 0.0
            out[row].hands.append(
                HandObservation(
                    track_id=track_id,
                    kp2d=h.kp2d[row].astype(np.float64),
                    kp_z=np.zeros(21),
                    world=np.asarray(world, np.float64),
                    presence=float(max(h.score[row], 1e-3)),
                    side=side,
                    side_score=1.0,
                    roi=np.zeros(4),
                    p_right=p_right,
                )
            )
    return out


def fit_keypoints(path: Path, kp: KeypointResults, options: ForeignOptions) -> ForeignImport:
    """Fit the hand model to the keypoints and return the capture (hands: ``options.hands``)."""
    from ..camera import CameraOptionsError
    from ..capture_job import CaptureJobError, CaptureOptions, capture_from_landmarks
    from ..fitting import FitError, FitOptions, NoHandError
    from ..handmodel import HandModelError

    warnings = list(kp.warnings)
    k = intrinsics(kp.image_size, options)
    if kp.layout == "freemocap":
        vc = kp.info["virtual_camera"]
        k = intrinsics(kp.image_size, options, focal=float(vc["fx"]))
    job = CaptureOptions(
        source=str(path),
        hands=options.hands,
        device=options.device,
        model=options.model,
        mano_dir=options.mano_dir,
        fit=options.fit or FitOptions(),
    )
    fps = clip_fps(kp.fps, options, len(kp.frames), warnings)
    try:
        result = capture_from_landmarks(
            landmark_results(kp, k.matrix), str(path), fps, kp.image_size, job, intrinsics=k
        )
    except (CaptureJobError, FitError, NoHandError, HandModelError, CameraOptionsError) as exc:
        raise ForeignResultsError(f"{path}: {exc}") from None
    capture = result.capture
    warnings += [w for w in result.warnings if w not in warnings]
    capture.info["imported"] = {"file": str(path), "layout": kp.layout, **kp.info}
    capture.info["warnings"] = list(warnings)
    return ForeignImport(capture, kp.layout, warnings)
