"""Camera alignment: a Blender camera that sees the footage the way the capture did, with the hands on it.

``match_camera`` sets a (new or existing) camera's lens, sensor and shift from the capture's
intrinsics, the render size and pixel aspect, fps and frame range, shows the footage as the
camera's Movie Clip background, and parents the capture's "camera space" Empty (OpenCV camera
frame) to the camera with a local 180 degree turn about X, so the hands overlay the footage and
follow the camera wherever it goes (a tracker-solved camera included).

Depth adjustments keep the overlay because they scale about the camera centre, along the rays:
``depth_scale`` on the camera-space Empty (all hands), ``depth_offset`` per hand armature (metres
at the hand's mean depth). ``reprojection_errors`` measures the overlay: Blender's evaluated joints
seen through the camera against the captured 2D keypoints.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Matrix

from ..core import naming
from ..core import rig_props as rp
from ..core.capture import DOUBTFUL_CONFIDENCE, CameraIntrinsics, Capture, CaptureFormatError, read_capture
from ..core.keypoints import MANO_TO_KEYPOINTS
from . import camera_math, capture_store
from .smooth import is_hand_armature, positions_fn, read_motion, rest_pose

#: Local rotation of the camera-space Empty under a Blender camera: OpenCV axes -> camera axes.
SPACE_IN_CAMERA = Matrix.Rotation(math.pi, 4, "X")
ASPECT_TOLERANCE = 0.01


class CameraAlignError(ValueError):
    """The camera cannot be matched / measured / rendered as asked (the message says why)."""


@dataclass
class CaptureCamera:
    """What a camera-space Empty records about its capture.

    Attributes:
        space: the Empty's name; source: footage path; image_size: (W, H) pixels.
        intrinsics: the capture's pinhole intrinsics (pixels); fps: source frame rate.
        frame_offset: scene frame = frame_offset + source frame index.
        scene_frames: (first, last) scene frames of the capture; armatures: hand armature names.
    """

    space: str
    source: str
    image_size: tuple[int, int]
    intrinsics: CameraIntrinsics
    fps: float
    frame_offset: int
    scene_frames: tuple[int, int]
    armatures: list[str] = field(default_factory=list)


def camera_space_of(obj):
    """The camera-space Empty of ``obj`` (itself, or up its parent chain from a hand / mesh), else None."""
    while obj is not None:
        if obj.type == "EMPTY" and rp.INTRINSICS.on(obj):
            return obj
        obj = obj.parent
    return None


def read_capture_camera(space) -> CaptureCamera:
    try:
        w, h = rp.IMAGE_SIZE.read(space)
        fx, fy, cx, cy = rp.INTRINSICS.read(space)
    except (KeyError, TypeError, ValueError):
        raise CameraAlignError(f"{space.name}: not a HandCap camera-space Empty (no capture intrinsics)") from None
    arms = [c for c in space.children if is_hand_armature(c)]
    first = arms[0] if arms else None
    offset = rp.FRAME_OFFSET.read(first, 0) if first else 0
    frames = rp.SCENE_FRAMES.read(first, (offset, offset)) if first else (offset, offset)
    return CaptureCamera(
        space=space.name,
        source=rp.SOURCE.read(space, ""),
        image_size=(w, h),
        intrinsics=CameraIntrinsics(fx, fy, cx, cy, w, h),
        fps=rp.FPS.read(first, 0.0) if first else 0.0,
        frame_offset=offset,
        scene_frames=(frames[0], frames[-1]),
        armatures=[a.name for a in arms],
    )


@dataclass
class MatchOptions:
    """How to match a camera.

    Attributes:
        camera: name of an existing camera object to use (a tracked one works); "" = a new camera placed
            where the hands' virtual camera is, so nothing moves.
        clip_path: footage file for the background; "" = the capture's source when that file exists.
        set_lens: give the camera the capture's focal length, sensor fit and lens shift.
        lens_mm / fov_deg: the user's focal length (36 mm sensor) or horizontal field of view instead of
            the capture's (0 = use the capture's). The hands were fitted with the capture's, so their
            overlay is off with another one: re-capture with the same value.
        set_render: render resolution and pixel aspect from the capture.
        set_scene_timing: scene fps and frame range from the capture.
        make_active: make it the scene camera.
    """

    camera: str = ""
    clip_path: str = ""
    set_lens: bool = True
    lens_mm: float = 0.0
    fov_deg: float = 0.0
    set_render: bool = True
    set_scene_timing: bool = True
    make_active: bool = True


@dataclass
class MatchResult:
    camera: str
    clip: str | None
    warnings: list[str] = field(default_factory=list)


def load_clip(path: str, image_size: tuple[int, int], warnings: list[str]):
    """Load footage as a Movie Clip (reusing one already loaded) and check it against the capture size."""
    full = bpy.path.abspath(path)
    if not os.path.isfile(full):
        raise CameraAlignError(f"footage not found: {full}")
    had = set(bpy.data.movieclips)
    clip = bpy.data.movieclips.load(full, check_existing=True)
    try:
        check_clip_size(clip, image_size, warnings)
    except CameraAlignError:
        if clip not in had:
            bpy.data.movieclips.remove(clip)  # leave the file as it was
        raise
    return clip


def check_clip_size(clip, image_size: tuple[int, int], warnings: list[str]) -> None:
    cw, ch = (int(v) for v in clip.size)
    w, h = image_size
    if cw <= 0 or ch <= 0:
        raise CameraAlignError(f"cannot read the footage '{clip.filepath}' (unsupported or damaged file)")
    if abs(cw / ch - w / h) > ASPECT_TOLERANCE * (w / h):
        raise CameraAlignError(
            f"the capture is {w}x{h} but the clip '{clip.name}' is {cw}x{ch} (another shape): "
            "it is not the footage the hands were captured from"
        )
    if (cw, ch) != (w, h):
        warnings.append(f"clip '{clip.name}' is {cw}x{ch}, the capture {w}x{h}: same shape, scaled to fit")


def _user_intrinsics(k: CameraIntrinsics, options: MatchOptions, warnings: list[str]) -> CameraIntrinsics:
    if options.lens_mm > 0:
        user = CameraIntrinsics.from_focal_mm(k.width, k.height, options.lens_mm, camera_math.SENSOR_WIDTH_MM)
    elif options.fov_deg > 0:
        user = CameraIntrinsics.from_fov(k.width, k.height, options.fov_deg)
    else:
        return k
    if abs(user.fx / k.fx - 1.0) > 0.005:
        lens = k.fx * camera_math.SENSOR_WIDTH_MM / k.width
        warnings.append(
            f"the hands were captured with a {lens:.1f} mm lens (36 mm sensor); with "
            f"{user.fx * camera_math.SENSOR_WIDTH_MM / k.width:.1f} mm their overlay is off: re-capture with it"
        )
    return user


def _camera_object(context, space, options: MatchOptions, source: str):
    if options.camera:
        cam = bpy.data.objects.get(options.camera)
        if cam is None or cam.type != "CAMERA":
            raise CameraAlignError(f"'{options.camera}' is not a camera object")
        return cam
    data = bpy.data.cameras.new(naming.camera_name(source))
    cam = bpy.data.objects.new(naming.camera_name(source), data)
    collections = space.users_collection or (context.scene.collection,)
    collections[0].objects.link(cam)
    # Where the hands' virtual camera is now: nothing moves in the world.
    loc, rot, _ = space.matrix_world.decompose()
    cam.matrix_world = Matrix.Translation(loc) @ rot.to_matrix().to_4x4() @ SPACE_IN_CAMERA.inverted()
    return cam


def _set_lens(cam, k: CameraIntrinsics) -> None:
    params = camera_math.camera_params(k)
    cam.data.type = "PERSP"
    cam.data.lens_unit = "MILLIMETERS"
    cam.data.sensor_fit = params.sensor_fit
    cam.data.sensor_width = params.sensor_width_mm
    cam.data.lens = params.lens_mm
    cam.data.shift_x = params.shift_x
    cam.data.shift_y = params.shift_y


def camera_intrinsics(scene, cam, size: tuple[int, int] | None = None) -> CameraIntrinsics:
    """A Blender camera as pinhole intrinsics at ``size`` (default: the render size; scene pixel aspect).

    Raises CameraAlignError when ``size`` has another shape than the render.
    """
    r = scene.render
    res = (r.resolution_x, r.resolution_y)
    if cam.data.type != "PERSP":
        raise CameraAlignError(f"camera '{cam.name}' is not a perspective camera")
    k = camera_math.intrinsics_from_camera(
        cam.data.lens,
        cam.data.sensor_width,
        cam.data.sensor_height,
        cam.data.sensor_fit,
        (cam.data.shift_x, cam.data.shift_y),
        res,
        (r.pixel_aspect_x, r.pixel_aspect_y),
    )
    if size is None or tuple(size) == res:
        return k
    if abs(size[0] / size[1] - res[0] / res[1]) > ASPECT_TOLERANCE * res[0] / res[1]:
        raise CameraAlignError(f"the render is {res[0]}x{res[1]} but the capture {size[0]}x{size[1]} (another shape)")
    return camera_math.rescale(k, *size)


def match_camera(context, space, options: MatchOptions | None = None) -> MatchResult:
    """Match a camera to the capture of camera-space Empty ``space`` (see ``MatchOptions``).

    Raises:
        CameraAlignError: not a camera space, camera not found, footage missing or of another shape.
    """
    options = options or MatchOptions()
    info = read_capture_camera(space)
    warnings: list[str] = []
    clip = None
    if options.clip_path:
        clip = load_clip(options.clip_path, info.image_size, warnings)
    elif capture_store.footage_path(space):
        clip = load_clip(capture_store.footage_path(space), info.image_size, warnings)
    else:
        warnings.append(f"no footage at '{info.source}': the camera has no background; choose the clip")
    k = _user_intrinsics(info.intrinsics, options, warnings)
    scene = context.scene
    cam = _camera_object(context, space, options, info.source)
    if options.set_lens:
        _set_lens(cam, k)
    if options.set_render:
        params = camera_math.camera_params(k)
        scene.render.resolution_x, scene.render.resolution_y = params.resolution
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = params.pixel_aspect
    if not options.set_lens:
        have = camera_intrinsics(scene, cam, info.image_size)
        if abs(have.fx / k.fx - 1.0) > 0.01:
            warnings.append(f"camera '{cam.name}' keeps fx = {have.fx:.0f} px; the capture used {k.fx:.0f} px")
    if options.set_scene_timing:
        if info.fps > 0:
            whole = max(1, round(info.fps))
            scene.render.fps, scene.render.fps_base = whole, whole / info.fps
        scene.frame_start, scene.frame_end = info.scene_frames
    if clip is not None:
        set_background_clip(cam, clip, info.frame_offset)
        scene.active_clip = clip
    attach_space(space, cam)
    if options.make_active:
        scene.camera = cam
    return MatchResult(camera=cam.name, clip=clip.name if clip else None, warnings=warnings)


def set_background_clip(cam, clip, frame_offset: int) -> None:
    """Show ``clip`` behind the camera view, its first frame at scene frame ``frame_offset``."""
    clip.frame_start = int(frame_offset)  # scene frame = frame_offset + source frame index
    bgs = cam.data.background_images
    bg = next((b for b in bgs if b.source == "MOVIE_CLIP"), None) or bgs.new()
    bg.source = "MOVIE_CLIP"
    bg.clip = clip
    bg.use_camera_clip = False
    bg.alpha = 1.0
    bg.display_depth = "BACK"
    bg.frame_method = "FIT"
    cam.data.show_background_images = True


def background_clip(cam):
    """The Movie Clip shown behind ``cam``, else None."""
    for bg in cam.data.background_images:
        if bg.source == "MOVIE_CLIP" and bg.clip is not None:
            return bg.clip
    return None


def attach_space(space, cam) -> None:
    """Parent the camera-space Empty to ``cam``: OpenCV axes = the camera's axes turned 180 deg about X."""
    space.parent = cam
    # Cancel the camera's own scale so metres stay metres (the depth scale is the Empty's).
    sx, sy, sz = (max(abs(v), 1e-9) for v in cam.matrix_world.to_scale())
    space.matrix_parent_inverse = Matrix.Diagonal((1.0 / sx, 1.0 / sy, 1.0 / sz, 1.0))
    space.location = (0.0, 0.0, 0.0)
    space.rotation_mode = "XYZ"
    space.rotation_euler = (math.pi, 0.0, 0.0)
    apply_depth_scale(space)


def apply_depth_scale(space) -> None:
    s = float(space.handcap_align.depth_scale)
    space.scale = (s, s, s)


def mean_depth(arm) -> float:
    """Mean wrist depth (metres, camera frame, before any depth adjustment) over the captured frames."""
    data = read_motion(arm, arm.animation_data.action)
    rest, parents = rest_pose(arm)
    valid = data.motion.valid
    wrist = positions_fn(rest, parents)(data.motion.rot[valid], data.motion.loc[valid])[:, 0]
    return float(np.mean(wrist[:, 2]))


def apply_depth_offset(arm) -> None:
    """Move the hand ``depth_offset`` metres along the camera rays (scale about the camera centre)."""
    offset = float(arm.handcap_align.depth_offset)
    z = mean_depth(arm) if offset else 1.0
    if z <= 0:
        raise CameraAlignError(f"{arm.name}: the hand is not in front of the camera")
    s = max((z + offset) / z, 1e-3)
    arm.scale = (s, s, s)


@dataclass
class ReprojectionReport:
    """Overlay error of one hand.

    Attributes:
        side: "right" / "left". frames: (N,) scene frames measured (frames where the hand was captured).
        per_frame_px: (N,) mean distance over the 21 keypoints, pixels of the capture's image.
        mean_px, median_px, max_px: over all measured keypoints.
        doubtful: (N,) bool, frames whose detection confidence is below ``DOUBTFUL_CONFIDENCE`` (e.g. the crop
            read as the other hand): there the captured keypoints themselves are suspect.
        confident_mean_px: mean over the keypoints of the other frames (NaN if every frame is doubtful).
        fit_mean_px: mean distance to the capture's own 3D keypoints projected with its intrinsics
            (0 when camera and hands are aligned and unsmoothed; the 2D error also holds the fit's residual).
    """

    side: str
    frames: np.ndarray
    per_frame_px: np.ndarray
    mean_px: float
    median_px: float
    max_px: float
    fit_mean_px: float
    doubtful: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    confident_mean_px: float = float("nan")


def capture_of(arm) -> Capture:
    try:
        path = capture_store.resolve_capture(arm)
    except capture_store.CaptureStoreError as exc:
        raise CameraAlignError(f"{exc}; the readout needs the captured 2D keypoints") from None
    try:
        return read_capture(path)
    except CaptureFormatError as exc:
        raise CameraAlignError(f"{arm.name}: cannot read the capture for its 2D keypoints ({exc})") from None


def joints_world(arm) -> np.ndarray:
    """(21, 3) evaluated joint positions in HandKeypoint order, world space, at the current frame."""
    names = naming.all_bones(rp.SIDE.read(arm))
    heads = np.array([tuple(arm.pose.bones[n].head) for n in names], dtype=np.float64)
    m = np.array(arm.matrix_world, dtype=np.float64)
    return (heads @ m[:3, :3].T + m[:3, 3])[MANO_TO_KEYPOINTS]


def reprojection_errors(context, arms, camera=None, captures: dict | None = None) -> dict[str, ReprojectionReport]:
    """Overlay error per hand armature (keyed by armature name), through ``camera`` (default: the scene's).

    Args:
        captures: armature name -> Capture; default: read each armature's recorded capture file.
    """
    scene = context.scene
    camera = camera or scene.camera
    if camera is None or camera.type != "CAMERA":
        raise CameraAlignError("no camera to look through: match a camera to the footage first")
    plans = []
    doubtful: dict[str, set[int]] = {}
    for arm in arms:
        if not is_hand_armature(arm):
            raise CameraAlignError(f"{arm.name} is not a HandCap hand armature")
        cap = (captures or {}).get(arm.name) or capture_of(arm)
        track = cap.hands.get(rp.track_key(arm))
        if track is None:
            raise CameraAlignError(f"{arm.name}: its capture has no {rp.track_key(arm)} hand")
        k = camera_intrinsics(scene, camera, cap.image_size)
        fit_2d = camera_math.project(np.asarray(track.kp3d, np.float64), cap.intrinsics)
        frames = rp.FRAME_OFFSET.read(arm, 0) + np.asarray(cap.frames, np.int64)
        index = {int(f): t for t, f in enumerate(frames) if track.valid[t]}  # scene frame -> capture row
        plans.append((arm, track, k, fit_2d, index))
        doubtful[arm.name] = {f for f, t in index.items() if track.frame_conf[t] < DOUBTFUL_CONFIDENCE}
    wanted = sorted({f for *_, index in plans for f in index})
    errs = {arm.name: {} for arm, *_ in plans}
    fit_errs = {arm.name: {} for arm, *_ in plans}
    current = scene.frame_current
    try:
        for f in wanted:
            scene.frame_set(f)
            cam_world = np.array(camera.matrix_world, dtype=np.float64)
            for arm, track, k, fit_2d, index in plans:
                t = index.get(f)
                if t is None:
                    continue
                uv = camera_math.project(camera_math.world_to_opencv(joints_world(arm), cam_world), k)
                errs[arm.name][f] = np.linalg.norm(uv - track.kp2d[t], axis=-1)
                fit_errs[arm.name][f] = np.linalg.norm(uv - fit_2d[t], axis=-1)
    finally:
        scene.frame_set(current)
    out = {}
    for arm, *_ in plans:
        e = errs[arm.name]
        if not e:
            raise CameraAlignError(f"{arm.name}: no captured frame to measure (the hand was never found)")
        all_e = np.concatenate(list(e.values()))
        sure = [e[f] for f in sorted(e) if f not in doubtful[arm.name]]
        out[arm.name] = ReprojectionReport(
            side=rp.SIDE.read(arm),
            frames=np.array(sorted(e)),
            per_frame_px=np.array([e[f].mean() for f in sorted(e)]),
            mean_px=float(np.nanmean(all_e)),
            median_px=float(np.nanmedian(all_e)),
            max_px=float(np.nanmax(all_e)),
            fit_mean_px=float(np.nanmean(np.concatenate(list(fit_errs[arm.name].values())))),
            doubtful=np.array([f in doubtful[arm.name] for f in sorted(e)], bool),
            confident_mean_px=float(np.nanmean(np.concatenate(sure))) if sure else float("nan"),
        )
    return out
