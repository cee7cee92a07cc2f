"""Render the hands over the footage, frame by frame, to PNG files (and optionally an MP4), headless too.

The scene renders with a transparent film (Workbench by default: fast and needs no GPU
ray tracing) and a temporary compositor tree lays the render over the camera's Movie Clip,
so each written frame is the footage with the hand meshes on it. Keypoints are drawn
afterwards into the written PNGs with numpy: the captured 2D keypoints (green) and the
armature joints seen through the camera (red, with bones). The video is assembled from
those frames with a throw-away sequencer scene. Every scene setting touched is restored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..core import rig_props as rp
from ..core.keypoints import KEYPOINT_BONES
from . import camera_math, compat
from .camera import CameraAlignError, background_clip, camera_intrinsics, capture_of, check_clip_size, joints_world

KEYPOINT_COLOR = (0.1, 0.95, 0.2)
JOINT_COLOR = (0.95, 0.15, 0.1)
ENGINES = ("BLENDER_WORKBENCH", "BLENDER_EEVEE", "CYCLES")


@dataclass
class OverlayOptions:
    """What to render.

    Attributes:
        output_dir: folder for ``frame_<scene frame>.png`` (created; existing files of those names are replaced).
        frame_start, frame_end: scene frames, inclusive (None: the scene's range).
        draw_keypoints: draw the captured 2D keypoints of each hand.
        draw_joints: draw the armature joints and bones as seen through the camera.
        video: also write ``overlay.mp4`` (H.264) from the frames.
        engine: render engine for the hands ("BLENDER_WORKBENCH", "BLENDER_EEVEE" or "CYCLES").
        show_footage: composite over the camera's Movie Clip; False writes the hands (and marks) on a
            transparent background instead, for compositing elsewhere.
    """

    output_dir: str
    frame_start: int | None = None
    frame_end: int | None = None
    draw_keypoints: bool = False
    draw_joints: bool = False
    video: bool = False
    engine: str = "BLENDER_WORKBENCH"
    show_footage: bool = True


@dataclass
class OverlayResult:
    files: list[str] = field(default_factory=list)
    video: str | None = None


def _save_state(scene) -> dict:
    r = scene.render
    return {
        "camera": scene.camera,
        "frame": scene.frame_current,
        "engine": r.engine,
        "film": r.film_transparent,
        "filepath": r.filepath,
        "use_compositing": r.use_compositing,
        "format": r.image_settings.file_format,
        "color_mode": r.image_settings.color_mode,
        "view": scene.view_settings.view_transform,
        "look": scene.view_settings.look,
    }


def _restore_state(scene, state: dict) -> None:
    r = scene.render
    scene.camera = state["camera"]
    r.engine, r.film_transparent, r.filepath = state["engine"], state["film"], state["filepath"]
    r.use_compositing = state["use_compositing"]
    r.image_settings.file_format, r.image_settings.color_mode = state["format"], state["color_mode"]
    scene.view_settings.view_transform, scene.view_settings.look = state["view"], state["look"]
    scene.frame_set(state["frame"])


def _footage_under_hands(clip, tree):
    """Nodes putting the Movie Clip (scaled to the render size) under the rendered hands; returns the last."""
    nodes, links = tree.nodes, tree.links
    movie = nodes.new("CompositorNodeMovieClip")
    movie.clip = clip
    scale = nodes.new("CompositorNodeScale")
    if "Type" in scale.inputs:  # Blender 5: options are sockets
        scale.inputs["Type"].default_value = "Render Size"
    else:
        scale.space = "RENDER_SIZE"
    layers = nodes.new("CompositorNodeRLayers")
    over = nodes.new("CompositorNodeAlphaOver")
    background, foreground = compat.alpha_over_inputs(over)
    links.new(movie.outputs["Image"], scale.inputs[0])
    links.new(scale.outputs[0], background)
    links.new(layers.outputs["Image"], foreground)
    return over


def _disk_offsets(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    keep = dx * dx + dy * dy <= radius * radius
    return np.stack([dx[keep], dy[keep]], -1)


def draw_points(pixels: np.ndarray, uv: np.ndarray, color, radius: int, bones=(), line_radius: int = 0) -> None:
    """Draw disks at (N, 2) image points (origin top-left, y down) and lines for ``bones`` into
    ``pixels`` (H, W, 4) float RGBA stored bottom row first, as Blender images are."""
    h, w = pixels.shape[:2]
    pts = [np.asarray(uv, np.float64)]
    for a, b in bones:
        n = int(np.ceil(np.linalg.norm(uv[b] - uv[a]))) + 1
        pts.append(uv[a] + np.linspace(0.0, 1.0, n)[:, None] * (uv[b] - uv[a]))
    line = np.concatenate(pts[1:]) if len(pts) > 1 else np.zeros((0, 2))
    for group, rad in ((line, line_radius), (pts[0], radius)):
        group = group[np.all(np.isfinite(group), axis=1)]
        if not len(group):
            continue
        px = np.round(group).astype(np.int64)[:, None, :] + _disk_offsets(rad)[None]
        px = px.reshape(-1, 2)
        ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        px = px[ok]
        pixels[h - 1 - px[:, 1], px[:, 0], :3] = color
        pixels[h - 1 - px[:, 1], px[:, 0], 3] = 1.0


def _draw_frame(path: str, marks: list[tuple[np.ndarray, tuple, bool]]) -> None:
    img = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = img.size
        pixels = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(pixels)
        pixels = pixels.reshape(h, w, 4)
        # Captured keypoints as larger disks under the smaller joint disks, so both stay visible.
        radius = max(2, round(min(w, h) / 150))
        for uv, color, is_joint in marks:
            if is_joint:
                draw_points(pixels, uv, color, max(1, radius // 2), KEYPOINT_BONES, radius // 4)
            else:
                draw_points(pixels, uv, color, radius)
        img.pixels.foreach_set(pixels.ravel())
        img.filepath_raw = path
        img.file_format = "PNG"
        img.save()
    finally:
        bpy.data.images.remove(img)


def _marks_for_frame(scene, camera, hands, frame: int, options: OverlayOptions) -> list:
    """Keypoints to draw on ``frame``, in render pixels."""
    marks = []
    render = (scene.render.resolution_x * scene.render.resolution_percentage // 100,
              scene.render.resolution_y * scene.render.resolution_percentage // 100)  # fmt: skip
    for arm, cap, index in hands:
        t = index.get(frame)
        if t is None:
            continue
        scale = np.array(render, np.float64) / np.array(cap.image_size, np.float64)
        if options.draw_keypoints:
            marks.append((np.asarray(cap.hands[rp.track_key(arm)].kp2d[t], np.float64) * scale, KEYPOINT_COLOR, False))
        if options.draw_joints:
            k = camera_intrinsics(scene, camera, render)
            cam = np.array(camera.matrix_world, dtype=np.float64)
            uv = camera_math.project(camera_math.world_to_opencv(joints_world(arm), cam), k)
            marks.append((uv, JOINT_COLOR, True))
    return marks


def write_video(files: list[str], path: str, fps: float, size: tuple[int, int]) -> str:
    """Encode PNG frames (same folder, in order) into an H.264 MP4 with a temporary sequencer scene."""
    tmp = bpy.data.scenes.new(".HC_overlay_video")
    try:
        editor = tmp.sequence_editor_create()
        strip = compat.sequencer_strips(editor).new_image("frames", files[0], 1, 1)
        for f in files[1:]:
            strip.elements.append(os.path.basename(f))
        tmp.frame_start, tmp.frame_end = 1, len(files)
        r = tmp.render
        r.resolution_x, r.resolution_y, r.resolution_percentage = size[0], size[1], 100
        whole = max(1, round(fps))
        r.fps, r.fps_base = whole, whole / fps
        compat.set_video_output(r.image_settings)
        r.ffmpeg.format, r.ffmpeg.codec = "MPEG4", "H264"
        r.filepath = path
        bpy.ops.render.render(animation=True, scene=tmp.name)
    finally:
        bpy.data.scenes.remove(tmp)
    return path


def render_overlay(context, camera, hands_arms, options: OverlayOptions) -> OverlayResult:
    """Render ``hands_arms`` (and whatever else is visible) over ``camera``'s footage.

    Raises:
        CameraAlignError: no camera / no clip on it, clip of another shape than the render, bad frame range.
    """
    scene = context.scene
    if camera is None or camera.type != "CAMERA":
        raise CameraAlignError("no camera: match a camera to the footage first")
    clip = background_clip(camera)
    if options.show_footage:
        if clip is None:
            raise CameraAlignError(
                f"camera '{camera.name}' has no Movie Clip background: match it to the footage first"
            )
        check_clip_size(clip, (scene.render.resolution_x, scene.render.resolution_y), [])
    if options.engine not in ENGINES:
        raise CameraAlignError(f"unknown render engine {options.engine!r}; use one of {ENGINES}")
    first = scene.frame_start if options.frame_start is None else int(options.frame_start)
    last = scene.frame_end if options.frame_end is None else int(options.frame_end)
    if last < first:
        raise CameraAlignError(f"empty frame range {first}..{last}")
    hands = []
    if options.draw_keypoints or options.draw_joints:
        for arm in hands_arms:
            cap = capture_of(arm)
            frames = rp.FRAME_OFFSET.read(arm, 0) + np.asarray(cap.frames, np.int64)
            valid = cap.hands[rp.track_key(arm)].valid
            hands.append((arm, cap, {int(f): t for t, f in enumerate(frames) if valid[t]}))
    out_dir = Path(bpy.path.abspath(options.output_dir))
    out_dir.mkdir(parents=True, exist_ok=True)

    state = _save_state(scene)
    comp = None
    if options.show_footage:
        try:
            comp = compat.use_compositor(scene, lambda tree: _footage_under_hands(clip, tree))
        except compat.CompositorInUse as exc:
            raise CameraAlignError(str(exc)) from None
    result = OverlayResult()
    try:
        r = scene.render
        scene.camera = camera
        r.use_compositing = comp is not None
        r.engine = compat.render_engine(options.engine)
        r.film_transparent = True
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGBA"
        scene.view_settings.view_transform = "Standard"  # footage colours pass through unchanged
        scene.view_settings.look = "None"
        for frame in range(first, last + 1):
            scene.frame_set(frame)
            path = str(out_dir / f"frame_{frame:06d}.png")
            r.filepath = path
            bpy.ops.render.render(write_still=True)
            marks = _marks_for_frame(scene, camera, hands, frame, options) if hands else []
            if marks:
                _draw_frame(path, marks)
            result.files.append(path)
    finally:
        _restore_state(scene, state)
        if comp is not None:
            compat.restore_compositor(scene, comp)
    if options.video:
        size = (scene.render.resolution_x * scene.render.resolution_percentage // 100,
                scene.render.resolution_y * scene.render.resolution_percentage // 100)  # fmt: skip
        fps = scene.render.fps / scene.render.fps_base
        result.video = write_video(result.files, str(out_dir / "overlay.mp4"), fps, size)
    return result
