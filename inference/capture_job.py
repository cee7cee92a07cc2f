"""One capture job: a video or photo -> hand landmarks -> hand-model fit -> ``Capture``.

Used by ``python -m handcap capture`` and by Blender's background worker. ``run_capture`` does everything;
``capture_from_landmarks`` starts from landmarker results (tests, re-fits with other options).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..core.capture import CameraIntrinsics, Capture, HandTrack
from ..core.keypoints import NUM_KEYPOINTS
from ..core.request import CaptureRequest, CaptureRequestError, render_fit_value
from .camera import fov_of, intrinsics_for_capture
from .fitting.fit import FitOptions, FitReport, HandFit, fit_hands
from .fitting.gaps import bridge_fit
from .fitting.tracks import TrackSet, build_tracks

#: progress(stage, done, total) with stage "landmarks" or "fit".
Progress = Callable[[str, int, int], None]


#: The capture's options are the request every door shares (``core.request``: CLI, worker, convert, farm).
CaptureOptions = CaptureRequest
CaptureJobError = CaptureRequestError


def fit_options(options: CaptureOptions, device: str | None = None) -> FitOptions:
    """The fit's options: the defaults with the request's overrides (FitError names a bad one)."""
    pairs = [f"{name}={render_fit_value(value)}" for name, value in options.fit.items()]
    return FitOptions.parse(pairs, **({} if device is None else {"device": device}))


def options_info(options: CaptureOptions, fit: FitOptions) -> dict:
    """The request as JSON for the capture's ``info``, with every fit option spelled out."""
    fit_json = asdict(fit)
    fit_json["iterations"] = list(fit_json["iterations"])
    return {**options.to_json(), "fit": fit_json}


@dataclass
class CaptureResult:
    """A finished job: the capture, the notes for the user, the optimiser's report and seconds per stage."""

    capture: Capture
    warnings: list[str]
    fit_report: FitReport
    seconds: dict[str, float]


def resolve_device(device: str) -> str:
    """The device name ("auto" -> "cuda" or "cpu") by the one rule, ``inference.batching.resolve_device``."""
    from .batching import resolve_device as torch_device

    try:
        return str(torch_device(device))
    except ValueError as exc:
        raise CaptureJobError(f"{exc}; use --device auto, cpu, cuda or cuda:N") from None


def load_models(options: CaptureOptions, device: str) -> dict[str, object]:
    """Both sides' hand models (float64, on ``device``); loading both up front reports a bad MANO folder
    before the slow landmark pass."""
    import torch

    from .handmodel import load_hand_model

    return {
        side: load_hand_model(options.model, side, mano_dir=options.mano_dir, device=device, dtype=torch.float64)
        for side in ("right", "left")
    }


def run_capture(options: CaptureOptions, progress: Progress | None = None, landmarker=None) -> CaptureResult:
    """Landmarks of every selected frame, hand tracks, fit; returns the capture (not written to disk).

    landmarker: a ready ``HandLandmarker`` to reuse (its max_hands should be >= options.hands).
    Raises SourceError, NoHandError, CameraOptionsError, HandModelError, CaptureJobError (all ValueError).
    """
    from .sources import open_source

    options.validate()
    device = resolve_device(options.device)
    start = time.perf_counter()
    models = load_models(options, device)
    frames = None if options.frames is None else slice(*options.frames)
    notes = []
    if is_photo(options.source) and (frames is not None or options.stride != 1):
        frames, notes = None, [PHOTO_RANGE_NOTE]  # a batch of videos and photos shares one --frames
    source = open_source(options.source, frames=frames, stride=options.stride if not notes else 1)
    if landmarker is None:
        landmarker = landmarker_for(options, device)
    seconds = {"load": time.perf_counter() - start}
    start = time.perf_counter()
    cb = None if progress is None else (lambda done, total: progress("landmarks", done, total))
    results = landmarker.process_source(source, progress=cb)
    seconds["landmarks"] = time.perf_counter() - start
    notes += _read_notes(source, len(results))
    out = capture_from_landmarks(
        results, _absolute(options.source), source.fps, source.size, options, progress=progress, models=models
    )
    out.seconds = {**seconds, **out.seconds}
    out.warnings[:0] = notes
    out.capture.info["warnings"][:0] = notes
    return out


def landmarker_for(options: CaptureOptions, device: str | None = None):
    """A ``HandLandmarker`` set up for the request (reusable for every input of a batch with its options)."""
    from .landmarker import HandLandmarker, LandmarkerOptions
    from .multiscale import detection_for_mode

    device = device or resolve_device(options.device)
    detection = detection_for_mode(options.detect)
    return HandLandmarker(
        LandmarkerOptions(max_hands=options.hands, device=device, mirrored_input=options.mirrored, detection=detection)
    )


PHOTO_RANGE_NOTE = "a frame range and stride apply to videos only: a photo is its one frame"


def is_photo(source) -> bool:
    """A single image file (frame ranges and strides do not apply to it)."""
    from pathlib import Path

    from ..core.media import IMAGE_EXTS

    return isinstance(source, str) and Path(source).suffix.lower() in IMAGE_EXTS and Path(source).is_file()


def _absolute(source) -> str:
    """The source as an absolute path, so the capture finds its footage from any folder."""
    import os

    return os.path.abspath(source) if isinstance(source, str | os.PathLike) else str(source)


def _read_notes(source, n_read: int) -> list[str]:
    """Say how many of the selected frames could be read, and why the others could not."""
    from .fitting.tracks import NoHandError

    wanted = len(source)
    notes = [f"skipped {p.name}: {why}" for p, why in getattr(source, "skipped", ())]
    if n_read >= wanted:
        return notes
    ended = getattr(source, "decoded_until", None)
    why = (
        f"the video ends after frame {ended - 1} although it reports {source.total_frames} frames (truncated or "
        "damaged file)"
        if ended is not None
        else "the others could not be read"
    )
    if n_read == 0:
        raise NoHandError(f"read 0 of the {wanted} selected frame(s): {why}")
    return [f"read {n_read} of the {wanted} selected frame(s): {why}", *notes]


def _dt_scale(frames: np.ndarray, fps: float) -> float:
    """Time between fitted samples in units of 1/30 s (1 for photos and unknown rates)."""
    if len(frames) < 2 or not fps or not math.isfinite(fps) or fps <= 0:
        return 1.0
    return float(np.median(np.diff(frames))) * 30.0 / fps


def capture_from_landmarks(
    results: Sequence,
    source: str,
    fps: float,
    image_size: tuple[int, int],
    options: CaptureOptions,
    progress: Progress | None = None,
    models: dict[str, object] | None = None,
    intrinsics: CameraIntrinsics | None = None,
) -> CaptureResult:
    """Tracks + fit + Capture from landmarker ``FrameResult``s (one per processed frame, in order).

    intrinsics: overrides the camera options (e.g. a known K of an annotated set).
    """
    options.validate()
    device = resolve_device(options.device)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    tracks = build_tracks(results, options.hands)
    _drop_unsure_hands(tracks, options.min_confidence, options.min_frames)
    w, h = (int(v) for v in image_size)
    if intrinsics is not None:  # a known camera (an annotated set's K, a tracked camera) is given
        k = replace(intrinsics, source=intrinsics.source or "given")
        camera_info = {"source": k.source, "focal_px": round(k.fx, 2), "fov_deg": round(fov_of(k), 2)}
    else:  # camera options, else the focal length estimated from the hands (issue 16), else the default
        cam = (options.focal_mm, options.sensor_mm, options.focal_px, options.fov_deg, options.principal)
        k, camera_info = intrinsics_for_capture(w, h, [t.observations() for t in tracks.hands], *cam)
    if models is None:
        models = load_models(options, device)
    fit_opts = fit_options(options, device)
    cb = None if progress is None else (lambda done, total: progress("fit", done, total))
    fits, report = fit_hands(
        [models[t.side] for t in tracks.hands],
        [t.observations() for t in tracks.hands],
        k.matrix,
        fit_opts,
        dt_scale=_dt_scale(tracks.frames, fps),
        progress=cb,
    )
    bridged = []
    for i, t in enumerate(tracks.hands):  # short gaps from both sides of the gap (``fitting.gaps``)
        fits[i], mask = bridge_fit(fits[i], models[t.side], options.bridge_gaps)
        bridged.append(mask)
        if mask.any():
            tracks.warnings.append(
                f"{t.key} hand: {int(mask.sum())} frame(s) in gaps of up to {options.bridge_gaps} frames bridged "
                "from both sides (keyed, marked not seen; --bridge-gaps)"
            )
    seconds["fit"] = time.perf_counter() - start
    model_id = getattr(next(iter(models.values())), "model_id", options.model)
    capture = _assemble(tracks, fits, k, source, fps, model_id, bridged)
    keys = [t.key for t in tracks.hands]
    capture.info = {
        "fit": {t.key: _residual_info(f) for t, f in zip(tracks.hands, fits, strict=True)},
        "tracks": {
            t.key: {
                "track_ids": t.track_ids,
                "side_confidence": round(t.side_confidence, 3),
                "contested_frames": [int(f) for f in tracks.frames[t.contested]],
                "bridged_frames": [int(f) for f in tracks.frames[m]],
            }
            for t, m in zip(tracks.hands, bridged, strict=True)
        },
        # which tracks are one person's (``fitting.persons``): the two-hand stages ran per pair
        "persons": [{**p, "tracks": [keys[i] for i in p["tracks"]]} for p in report.persons],
        "fit_report": {
            "seconds": _rounded(report.seconds),
            "loss": _rounded(report.loss, 6),
            "iterations": report.iterations,
            "two_hands": report.two_hands,
        },
        "camera": camera_info,
        "options": options_info(options, fit_opts),
        "warnings": list(tracks.warnings),
    }
    return CaptureResult(capture, list(tracks.warnings), report, seconds)


def _drop_unsure_hands(tracks: TrackSet, min_confidence: float, min_frames: int = 1) -> None:
    """Remove hand tracks whose best frame is below ``min_confidence`` or that are seen in fewer than
    ``min_frames`` frames (a warning says which and why)."""
    from .fitting.tracks import NoHandError

    kept = []
    for hand in tracks.hands:
        best = float(np.max(hand.frame_conf, initial=0.0))
        seen = int(np.count_nonzero(hand.valid))
        if best < min_confidence:
            tracks.warnings.append(
                f"{hand.key} hand dropped: confidence {best:.2f} is below the minimum {min_confidence:g} "
                "(--min-confidence)"
            )
        elif seen < min_frames:
            tracks.warnings.append(
                f"{hand.key} hand dropped: seen in {seen} frame(s), fewer than the minimum {min_frames} (--min-frames)"
            )
        else:
            kept.append(hand)
    if not kept:
        frames = f" seen in at least {min_frames} frames" if min_frames > 1 else ""
        raise NoHandError(
            f"no hand above the minimum confidence {min_confidence:g}{frames} ("
            + ", ".join(f"{h.key} {float(np.max(h.frame_conf, initial=0.0)):.2f}" for h in tracks.hands)
            + f"); lower --min-confidence{' or --min-frames' if frames else ''} to keep it"
        )
    tracks.hands = kept


def _rounded(d: dict[str, float], digits: int = 4) -> dict[str, float]:
    return {k: round(float(v), digits) for k, v in d.items()}


def _residual_info(fit: HandFit) -> dict:
    """Summary and per-frame residuals (None where the hand was not seen) for the capture's info."""
    out: dict = {"beta": [round(float(b), 4) for b in fit.beta]}
    for name, arr in (("err2d_px", fit.err2d_px), ("err3d_mm", fit.err3d_mm)):
        seen = arr[np.isfinite(arr)]
        out[name] = {
            "mean": round(float(seen.mean()), 3) if len(seen) else None,
            "median": round(float(np.median(seen)), 3) if len(seen) else None,
            "p95": round(float(np.percentile(seen, 95)), 3) if len(seen) else None,
            "per_frame": [round(float(v), 2) if np.isfinite(v) else None for v in arr],
        }
    return out


def _assemble(
    tracks: TrackSet, fits: list[HandFit], k: CameraIntrinsics, source: str, fps: float, model_id: str, bridged
):
    hands = {}
    for t, f, mask in zip(tracks.hands, fits, bridged, strict=True):
        # rows of frames without the hand get the projection of the interpolated fit (confidence 0)
        proj = f.kp3d[..., :2] / f.kp3d[..., 2:] * np.array([k.fx, k.fy]) + np.array([k.cx, k.cy])
        kp2d = np.where(t.valid[:, None, None], t.kp2d, proj)
        hands[t.key] = HandTrack(
            side=t.side,
            theta=f.theta.astype(np.float32),
            beta=f.beta.astype(np.float32),
            transl=f.transl.astype(np.float32),
            kp2d=kp2d.astype(np.float32),
            kp3d=f.kp3d.astype(np.float32),
            frame_conf=np.clip(t.frame_conf, 0, 1).astype(np.float32),
            kp_conf=np.clip(t.kp_conf, 0, 1).astype(np.float32).reshape(-1, NUM_KEYPOINTS),
            valid=t.valid.copy(),
            rest_joints=f.rest_joints.astype(np.float32),
            joint_offsets=f.joint_offsets.astype(np.float32),
            bridged=mask.copy(),
        )
    return Capture(
        source=source,
        frames=tracks.frames,
        fps=float(fps),
        image_size=tracks.image_size,
        intrinsics=k,
        hand_model=model_id,
        hands=hands,
    )
