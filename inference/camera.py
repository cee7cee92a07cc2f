"""Camera intrinsics for a capture from what the user knows about the camera.

Exactly one of: focal length and sensor width in millimetres, focal length in pixels, horizontal field
of view in degrees (``source`` "given"). Without any, a capture estimates the focal length from the hands in
the footage (``intrinsics_for_capture``, ``fitting.focal``; ``source`` "estimated"), and only when no frame
allows that falls back to ``CameraIntrinsics.default`` (55 degrees, ``source`` "default"). The principal
point is the image centre unless given. Square pixels (fx = fy).
"""

from __future__ import annotations

import math

from ..core.capture import CameraIntrinsics


class CameraOptionsError(ValueError):
    """Camera options that contradict each other or make no sense."""


def intrinsics_from_options(
    width: int,
    height: int,
    focal_mm: float | None = None,
    sensor_mm: float | None = None,
    focal_px: float | None = None,
    fov_deg: float | None = None,
    principal: tuple[float, float] | None = None,
) -> CameraIntrinsics:
    """Pinhole intrinsics (pixels) for a ``width`` x ``height`` image.

    focal_mm + sensor_mm: focal length and sensor WIDTH in mm (sensor defaults to 36 mm, full frame);
    focal_px: focal length in pixels; fov_deg: horizontal field of view; principal: (cx, cy) pixels.
    """
    if width <= 0 or height <= 0:
        raise CameraOptionsError(f"image size must be positive, got {width}x{height}")
    given = [
        name for name, v in (("--focal-mm", focal_mm), ("--focal-px", focal_px), ("--fov", fov_deg)) if v is not None
    ]
    if len(given) > 1:
        raise CameraOptionsError(f"give only one of {', '.join(given)} (they all set the focal length)")
    if sensor_mm is not None and focal_mm is None:
        raise CameraOptionsError("--sensor-mm needs --focal-mm (the sensor width only converts millimetres)")
    for name, v in (("--focal-mm", focal_mm), ("--sensor-mm", sensor_mm), ("--focal-px", focal_px)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise CameraOptionsError(f"{name} must be a positive number, got {v}")
    try:
        if focal_mm is not None:
            k = CameraIntrinsics.from_focal_mm(width, height, focal_mm, 36.0 if sensor_mm is None else sensor_mm)
        elif focal_px is not None:
            k = CameraIntrinsics(float(focal_px), float(focal_px), width / 2.0, height / 2.0, int(width), int(height))
        elif fov_deg is not None:
            if not math.isfinite(fov_deg):
                raise CameraOptionsError(f"--fov must be a number of degrees, got {fov_deg}")
            k = CameraIntrinsics.from_fov(width, height, fov_deg)
        else:
            k = CameraIntrinsics.default(width, height)
    except CameraOptionsError:
        raise
    except ValueError as exc:  # the constructors' own range checks
        raise CameraOptionsError(str(exc)) from None
    if principal is not None:
        cx, cy = (float(v) for v in principal)
        if not (math.isfinite(cx) and math.isfinite(cy)):
            raise CameraOptionsError(f"principal point must be finite, got {principal}")
        k.cx, k.cy = cx, cy
    if given:
        k.source = "given"
    return k


def intrinsics_for_capture(
    width: int,
    height: int,
    observations,
    focal_mm: float | None = None,
    sensor_mm: float | None = None,
    focal_px: float | None = None,
    fov_deg: float | None = None,
    principal: tuple[float, float] | None = None,
) -> tuple[CameraIntrinsics, dict]:
    """The camera of a capture and what the capture's info says about it (``info["camera"]``).

    A camera option (see ``intrinsics_from_options``) wins; otherwise the focal length is estimated from the
    hand observations (``fitting.HandObservations`` of every track) with its uncertainty; the default only
    when no frame has a hand to estimate from."""
    k = intrinsics_from_options(width, height, focal_mm, sensor_mm, focal_px, fov_deg, principal)
    if k.source != "given":
        from .fitting.focal import estimate_focal

        est = estimate_focal(observations, (width, height), principal)
        if est is not None:
            k.fx = k.fy = est.focal_px
            k.source = "estimated"
            return k, {"source": k.source, **est.to_json()}
    return k, {"source": k.source, "focal_px": round(k.fx, 2), "fov_deg": round(fov_of(k), 2)}


def fov_of(k: CameraIntrinsics) -> float:
    """Horizontal field of view in degrees."""
    return math.degrees(2 * math.atan(0.5 * k.width / k.fx))


def describe(k: CameraIntrinsics) -> str:
    """One line for the terminal: focal length in pixels and the horizontal field of view."""
    how = f", {k.source}" if k.source else ""
    return f"f = {k.fx:.1f} px ({fov_of(k):.1f} deg horizontal{how}), principal point ({k.cx:.1f}, {k.cy:.1f})"
