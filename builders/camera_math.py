"""Pinhole intrinsics <-> Blender camera settings, and projection (numpy only, no bpy: testable without Blender).

Blender's view plane (``BKE_camera_params_compute_viewplane``), for a W x H render with pixel
aspect (ax, ay), ``ycor = ay / ax``:

* sensor fit HORIZONTAL (or AUTO with ``W ax >= H ay``): ``viewfac = W`` and the sensor size is
  ``sensor_width``; VERTICAL: ``viewfac = ycor H`` and ``sensor_height`` (AUTO portrait still
  uses ``sensor_width``);
* a pixel is ``sensor / lens / viewfac`` wide and ``ycor`` times that tall, at unit distance:
  ``fx = lens viewfac / sensor`` and ``fy = fx / ycor``;
* lens shift moves the view plane by ``shift * viewfac`` pixel widths:
  ``cx = W/2 - shift_x viewfac`` and ``cy = H/2 + shift_y viewfac / ycor`` (image y points down).

Blender cameras look down their local -Z with +Y up; OpenCV cameras look down +z with y down,
so OpenCV camera coordinates are Blender camera-local coordinates rotated 180 degrees about X.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.capture import CameraIntrinsics, project_points

#: OpenCV camera axes in a Blender camera's local frame (rotation of 180 degrees about X).
OPENCV_IN_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])
SENSOR_WIDTH_MM = 36.0


@dataclass
class BlenderCameraParams:
    """Blender settings that reproduce pinhole intrinsics exactly.

    Attributes:
        lens_mm: ``Camera.lens``; sensor_width_mm: ``Camera.sensor_width`` (fit HORIZONTAL).
        shift_x, shift_y: ``Camera.shift_x/y`` (fractions of the image width).
        resolution: (W, H) render resolution in pixels.
        pixel_aspect: (x, y) ``RenderSettings.pixel_aspect_x/y`` (both >= 1).
    """

    lens_mm: float
    sensor_width_mm: float
    shift_x: float
    shift_y: float
    resolution: tuple[int, int]
    pixel_aspect: tuple[float, float]
    sensor_fit: str = "HORIZONTAL"


def camera_params(k: CameraIntrinsics, sensor_width_mm: float = SENSOR_WIDTH_MM) -> BlenderCameraParams:
    """Blender camera + render settings for intrinsics ``k`` (sensor fitted horizontally)."""
    w, h = int(k.width), int(k.height)
    ycor = k.fx / k.fy
    aspect = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    return BlenderCameraParams(
        lens_mm=float(k.fx * sensor_width_mm / w),
        sensor_width_mm=float(sensor_width_mm),
        shift_x=float((w / 2.0 - k.cx) / w),
        shift_y=float((k.cy - h / 2.0) * ycor / w),
        resolution=(w, h),
        pixel_aspect=(float(aspect[0]), float(aspect[1])),
    )


def intrinsics_from_camera(
    lens_mm: float,
    sensor_width_mm: float,
    sensor_height_mm: float,
    sensor_fit: str,
    shift: tuple[float, float],
    resolution: tuple[int, int],
    pixel_aspect: tuple[float, float] = (1.0, 1.0),
) -> CameraIntrinsics:
    """What a Blender perspective camera's settings mean as pinhole intrinsics at ``resolution``."""
    w, h = int(resolution[0]), int(resolution[1])
    ax, ay = float(pixel_aspect[0]), float(pixel_aspect[1])
    ycor = ay / ax
    if sensor_fit == "AUTO":
        fit, sensor = ("HORIZONTAL" if w * ax >= h * ay else "VERTICAL"), sensor_width_mm
    else:
        fit = sensor_fit
        sensor = sensor_height_mm if fit == "VERTICAL" else sensor_width_mm
    viewfac = w if fit == "HORIZONTAL" else ycor * h
    fx = lens_mm * viewfac / sensor
    return CameraIntrinsics(
        fx=float(fx),
        fy=float(fx / ycor),
        cx=float(w / 2.0 - shift[0] * viewfac),
        cy=float(h / 2.0 + shift[1] * viewfac / ycor),
        width=w,
        height=h,
    )


def project(points_cam: np.ndarray, k: CameraIntrinsics) -> np.ndarray:
    """(..., 3) OpenCV camera-frame points -> (..., 2) pixels (NaN behind the camera)."""
    return project_points(points_cam, k.matrix)


def world_to_opencv(points_world: np.ndarray, camera_world: np.ndarray) -> np.ndarray:
    """(..., 3) world points -> OpenCV camera frame of a Blender camera with 4x4 ``matrix_world``
    (its scale is ignored: only the camera's position and orientation matter)."""
    m = np.asarray(camera_world, dtype=np.float64)
    rot = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0, keepdims=True)
    local = (np.asarray(points_world, np.float64) - m[:3, 3]) @ rot
    return local @ OPENCV_IN_BLENDER_CAMERA  # diag: the same as applying it to each row


def rescale(k: CameraIntrinsics, width: int, height: int) -> CameraIntrinsics:
    """The same camera sampled at another resolution (same aspect)."""
    sx, sy = width / k.width, height / k.height
    return CameraIntrinsics(k.fx * sx, k.fy * sy, k.cx * sx, k.cy * sy, int(width), int(height))
