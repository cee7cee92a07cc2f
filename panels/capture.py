"""Capture sub-panels: footage and photos -> hands, and the inference environment's state.

One sits in the 3D Viewport's HandCap tab (under ``HANDCAP_PT_main``), one in the Clip Editor's sidebar
next to the footage it captures.
"""

from __future__ import annotations

import bpy

from ..operators.capture import active_clip
from ..operators.environment import draw_environment
from .main import HandCapSubPanel


def draw_capture(layout, context) -> None:
    clip = active_clip(context)
    col = layout.column(align=True)
    row = col.row(align=True)
    row.enabled = clip is not None
    op = row.operator("handcap.capture_clip", text=f"Capture {clip.name}" if clip else "No Active Clip", icon="TRACKER")
    op.source = "ACTIVE_CLIP"
    op = col.operator("handcap.capture_clip", text="Capture Video File", icon="FILE_MOVIE")
    op.source = "FILE"
    op = col.operator("handcap.capture_clip", text="Capture Image Sequence", icon="IMAGE_DATA")
    op.source = "SEQUENCE"
    col.separator()
    op = col.operator("handcap.pose_photo", text="Pose from Photo", icon="IMAGE")
    op.source = "FILE"


class HANDCAP_PT_capture(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_capture"
    bl_label = "Capture"

    def draw(self, context):
        draw_capture(self.layout, context)


class HANDCAP_PT_environment(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_environment"
    bl_label = "Inference Environment"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_environment(self.layout)


class HANDCAP_PT_clip_capture(bpy.types.Panel):
    bl_idname = "HANDCAP_PT_clip_capture"
    bl_label = "HandCap"
    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "UI"
    bl_category = "HandCap"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "mode", "TRACKING") == "TRACKING"

    def draw(self, context):
        draw_capture(self.layout, context)


CLASSES = (HANDCAP_PT_capture, HANDCAP_PT_environment, HANDCAP_PT_clip_capture)
