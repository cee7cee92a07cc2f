"""Camera alignment operators: match a camera to the footage, measure the overlay, render it."""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..builders.camera import (
    CameraAlignError,
    MatchOptions,
    apply_depth_offset,
    apply_depth_scale,
    camera_space_of,
    match_camera,
    read_capture_camera,
    reprojection_errors,
)
from ..builders.overlay import OverlayOptions, render_overlay
from ..builders.smooth import SmoothMotionError, is_hand_armature
from ..core.capture import DOUBTFUL_CONFIDENCE


def _depth_scale_changed(self, context):
    if camera_space_of(self.id_data) == self.id_data:
        apply_depth_scale(self.id_data)


def _depth_offset_changed(self, context):
    if is_hand_armature(self.id_data):
        try:
            apply_depth_offset(self.id_data)
        except (CameraAlignError, SmoothMotionError) as exc:  # a property update cannot report; say it here
            print(f"HandCap: depth offset not applied: {exc}")


class HANDCAP_PG_align(bpy.types.PropertyGroup):
    """Depth adjustments and overlay readouts (camera-space Empty: depth scale; hand armature: the rest)"""

    depth_scale: FloatProperty(
        name="Depth Scale",
        description="Scale every hand of this capture about the camera centre (along the camera rays): "
        "the overlay stays, the hands move nearer or farther and grow or shrink with it",
        default=1.0,
        min=0.05,
        max=20.0,
        update=_depth_scale_changed,
    )
    depth_offset: FloatProperty(
        name="Depth Offset",
        description="Move this hand along the camera rays by this distance at its mean depth",
        default=0.0,
        min=-10.0,
        max=10.0,
        subtype="DISTANCE",
        unit="LENGTH",
        update=_depth_offset_changed,
    )
    reprojection_px: FloatProperty(name="Overlay Error", description="Mean 2D keypoint error, pixels", default=-1.0)
    fit_px: FloatProperty(
        name="Fit Error", description="Mean error against the capture's own fit, pixels", default=-1.0
    )
    measured_frames: IntProperty(name="Measured Frames", default=0)
    median_px: FloatProperty(name="Median Error", description="Median 2D keypoint error, pixels", default=-1.0)
    worst_frame: IntProperty(name="Worst Frame", description="Scene frame with the largest overlay error")
    worst_px: FloatProperty(name="Worst Frame Error", description="Mean 2D error in the worst frame, pixels")
    doubtful_frames: IntProperty(
        name="Doubtful Frames",
        description=f"Measured frames whose detection is doubtful (confidence below {DOUBTFUL_CONFIDENCE})",
    )
    confident_px: FloatProperty(
        name="Error Without Doubtful Frames",
        description="Mean 2D keypoint error over the frames whose detection is not doubtful, pixels",
        default=-1.0,
    )


def _active_space(context):
    return camera_space_of(context.active_object)


class HANDCAP_OT_match_camera(bpy.types.Operator):
    """Match a camera to the footage of the active capture and put its hands over it"""

    bl_idname = "handcap.match_camera"
    bl_label = "Match Camera to Footage"
    bl_options = {"REGISTER", "UNDO"}

    camera_name: StringProperty(
        name="Camera",
        description="Existing camera to use (e.g. a tracked one); empty: a selected camera, else a new one",
        default="",
    )
    clip_path: StringProperty(
        name="Footage",
        description="Video or image sequence for the background (empty: the capture's source)",
        subtype="FILE_PATH",
        default="",
    )
    set_lens: BoolProperty(name="Set Lens", description="Focal length and lens shift from the capture", default=True)
    lens_mm: FloatProperty(
        name="Focal Length", description="Your focal length (36 mm sensor); 0 = the capture's", default=0.0, min=0.0
    )
    fov_deg: FloatProperty(
        name="Field of View",
        description="Your horizontal field of view; 0 = the capture's",
        default=0.0,
        min=0,
        max=179,
    )
    set_render: BoolProperty(name="Set Resolution", default=True)
    set_scene_timing: BoolProperty(name="Set Frame Rate and Range", default=True)

    @classmethod
    def poll(cls, context):
        return _active_space(context) is not None

    def execute(self, context):
        space = _active_space(context)
        camera = self.camera_name
        if not camera:
            picked = [o for o in context.selected_objects if o.type == "CAMERA"]
            camera = picked[0].name if picked else ""
        options = MatchOptions(
            camera=camera,
            clip_path=self.clip_path,
            set_lens=self.set_lens,
            lens_mm=self.lens_mm,
            fov_deg=self.fov_deg,
            set_render=self.set_render,
            set_scene_timing=self.set_scene_timing,
        )
        try:
            result = match_camera(context, space, options)
        except CameraAlignError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        clip = f" with clip '{result.clip}'" if result.clip else ""
        self.report({"INFO"}, f"Matched camera '{result.camera}'{clip}")
        return {"FINISHED"}


class HANDCAP_OT_measure_overlay(bpy.types.Operator):
    """Measure how far the hands' joints seen through the camera are from the captured 2D keypoints"""

    bl_idname = "handcap.measure_overlay"
    bl_label = "Measure Overlay Error"

    @classmethod
    def poll(cls, context):
        return _active_space(context) is not None

    def execute(self, context):
        space = _active_space(context)
        arms = [bpy.data.objects[n] for n in read_capture_camera(space).armatures]
        try:
            reports = reprojection_errors(context, arms)
        except CameraAlignError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for arm in arms:
            rep = reports[arm.name]
            arm.handcap_align.reprojection_px = rep.mean_px
            arm.handcap_align.fit_px = rep.fit_mean_px
            arm.handcap_align.measured_frames = len(rep.frames)
            arm.handcap_align.median_px = rep.median_px
            # The worst frame is where a user should look first to judge a failure.
            worst = int(np.argmax(rep.per_frame_px))
            arm.handcap_align.worst_frame = int(rep.frames[worst])
            arm.handcap_align.worst_px = float(rep.per_frame_px[worst])
            # Where the detection itself is doubtful (hands entangled), the captured keypoints are suspect too:
            # say how the overlay does without those frames as well.
            n_doubtful = int(rep.doubtful.sum())
            arm.handcap_align.doubtful_frames = n_doubtful
            arm.handcap_align.confident_px = rep.confident_mean_px if n_doubtful < len(rep.frames) else -1.0
            apart = f"; {rep.confident_mean_px:.2f} px without {n_doubtful} doubtful frames" if n_doubtful else ""
            self.report(
                {"INFO"},
                f"{arm.name}: {rep.mean_px:.2f} px mean, {rep.median_px:.2f} px median over {len(rep.frames)} "
                f"frames; worst frame {int(rep.frames[worst])} ({rep.per_frame_px[worst]:.1f} px){apart}",
            )
        return {"FINISHED"}


class HANDCAP_OT_render_overlay(bpy.types.Operator):
    """Render the hands over the footage to images (and a video) in a folder"""

    bl_idname = "handcap.render_overlay"
    bl_label = "Render Overlay"

    directory: StringProperty(name="Output Folder", subtype="DIR_PATH", default="//handcap_overlay/")
    use_scene_range: BoolProperty(name="Scene Frame Range", default=True)
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=250)
    draw_keypoints: BoolProperty(name="Captured 2D Keypoints", default=False)
    draw_joints: BoolProperty(name="Hand Joints", default=False)
    video: BoolProperty(name="Video (MP4)", default=False)
    show_footage: BoolProperty(
        name="Footage", description="Composite over the footage (off: hands on a transparent background)", default=True
    )
    engine: EnumProperty(
        name="Engine",
        items=(
            ("BLENDER_WORKBENCH", "Workbench", "Fast solid shading, works without a GPU"),
            ("BLENDER_EEVEE", "EEVEE", "Materials and lighting (slow without a GPU)"),
            ("CYCLES", "Cycles", "Path tracing"),
        ),
        default="BLENDER_WORKBENCH",
    )

    @classmethod
    def poll(cls, context):
        return context.scene.camera is not None

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        space = _active_space(context)
        arms = [bpy.data.objects[n] for n in read_capture_camera(space).armatures] if space else []
        options = OverlayOptions(
            output_dir=self.directory,
            frame_start=None if self.use_scene_range else self.frame_start,
            frame_end=None if self.use_scene_range else self.frame_end,
            draw_keypoints=self.draw_keypoints,
            draw_joints=self.draw_joints,
            video=self.video,
            engine=self.engine,
            show_footage=self.show_footage,
        )
        if (self.draw_keypoints or self.draw_joints) and not arms:
            self.report({"ERROR"}, "Select a captured hand to draw its keypoints")
            return {"CANCELLED"}
        try:
            result = render_overlay(context, context.scene.camera, arms, options)
        except CameraAlignError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        extra = f" and {result.video}" if result.video else ""
        self.report({"INFO"}, f"Rendered {len(result.files)} frames to {bpy.path.abspath(self.directory)}{extra}")
        return {"FINISHED"}


CLASSES = (HANDCAP_OT_match_camera, HANDCAP_OT_measure_overlay, HANDCAP_OT_render_overlay)


def register_props():
    """The property group is registered here, not in CLASSES (those are operators with ids)."""
    bpy.utils.register_class(HANDCAP_PG_align)
    bpy.types.Object.handcap_align = PointerProperty(type=HANDCAP_PG_align)


def unregister_props():
    del bpy.types.Object.handcap_align
    bpy.utils.unregister_class(HANDCAP_PG_align)
