"""HandCap > Camera: match a camera to the footage, depth adjustments, overlay readouts, overlay render."""

from __future__ import annotations

import math

import bpy

from ..builders.camera import background_clip, camera_space_of
from ..core import rig_props as rp
from .main import HandCapSubPanel


class HANDCAP_PT_camera(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_camera"
    bl_label = "Camera"

    @classmethod
    def poll(cls, context):
        return camera_space_of(context.active_object) is not None

    def draw(self, context):
        layout = self.layout
        space = camera_space_of(context.active_object)
        cam = space.parent if space.parent is not None and space.parent.type == "CAMERA" else None
        col = layout.column(align=True)
        if cam is None:
            col.label(text="Not matched to a camera yet", icon="INFO")
        else:
            clip = background_clip(cam)
            col.label(text=f"Camera: {cam.name}", icon="CAMERA_DATA")
            col.label(text=f"Footage: {clip.name if clip else 'none'}", icon="FILE_MOVIE" if clip else "ERROR")
        layout.operator("handcap.match_camera", text="Match Camera" if cam is None else "Re-match Camera")
        _draw_lens(layout, space)

        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(space.handcap_align, "depth_scale")
        arms = [c for c in space.children if c.type == "ARMATURE" and rp.SIDE.on(c)]
        for arm in arms:
            layout.prop(arm.handcap_align, "depth_offset", text=f"{rp.SIDE.read(arm).title()} Offset")

        layout.operator("handcap.measure_overlay", icon="DRIVER_DISTANCE")
        col = layout.column(align=True)
        for arm in arms:
            props = arm.handcap_align
            if props.measured_frames:
                col.label(
                    text=f"{rp.SIDE.read(arm).title()}: {props.reprojection_px:.2f} px mean, "
                    f"{props.median_px:.2f} median (fit {props.fit_px:.2f} px, {props.measured_frames} frames)"
                )
                col.label(text=f"    worst: frame {props.worst_frame}, {props.worst_px:.1f} px", icon="BLANK1")
                if props.doubtful_frames and props.confident_px >= 0:
                    col.label(
                        text=f"    {props.confident_px:.2f} px without {props.doubtful_frames} doubtful frames",
                        icon="BLANK1",
                    )
        row = layout.row()
        row.enabled = cam is not None
        row.operator("handcap.render_overlay", icon="RENDER_ANIMATION")


_HOW = {"given": "given", "estimated": "estimated from the hands", "default": "default guess"}


def _draw_lens(layout, space) -> None:
    """The capture's focal length and how it was obtained (``CameraIntrinsics.source``, issue 16)."""
    intr, size = rp.INTRINSICS.read(space), rp.IMAGE_SIZE.read(space)
    if intr is None or size is None or float(intr[0]) <= 0:
        return
    fov = math.degrees(2 * math.atan(0.5 * float(size[0]) / float(intr[0])))
    how = _HOW.get(rp.INTRINSICS_SOURCE.read(space, ""), "source not recorded")
    layout.label(text=f"Capture lens: {float(intr[0]):.0f} px, {fov:.1f} deg horizontal ({how})", icon="VIEW_CAMERA")


CLASSES = (HANDCAP_PT_camera,)
