"""The "HandCap" tab of the 3D Viewport sidebar: a parent panel and its "Import" sub-panel.

Other panels join the tab by deriving from ``HandCapSubPanel`` (placement and parent in one place).
"""

from __future__ import annotations

import bpy

from ..core import rig_props as rp


class HandCapSidebar:
    """Mixin: the placement of every panel on the HandCap tab of the 3D Viewport sidebar."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HandCap"


class HandCapSubPanel(HandCapSidebar):
    """Mixin: a sub-panel of ``HANDCAP_PT_main`` (register it after the parent)."""

    bl_parent_id = "HANDCAP_PT_main"


class HANDCAP_PT_main(HandCapSidebar, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_main"
    bl_label = "HandCap"

    def draw(self, context):
        arm = handcap_armature(context.active_object)
        if arm is None:
            self.layout.label(text="Hand motion capture from video and photos")
            return
        # Summary of the active HandCap hand: where it came from and how frames map.
        col = self.layout.column(align=True)
        source = bpy.path.basename(rp.SOURCE.read(arm, ""))
        col.label(text=f"{str(rp.SIDE.read(arm)).title()} hand: {source}", icon="VIEW_PAN")
        offset = rp.FRAME_OFFSET.read(arm)
        if offset is not None:
            col.label(text=f"Scene frame = {offset} + source frame")
        model = rp.HAND_MODEL.read(arm)
        if model:
            col.label(text=f"Hand model: {model}")


def handcap_armature(obj):
    """The HandCap armature of ``obj`` (itself, or the parent of its hand mesh), else None."""
    for candidate in (obj, getattr(obj, "parent", None)):
        if candidate is not None and candidate.type == "ARMATURE" and rp.SIDE.on(candidate):
            return candidate
    return None


class HANDCAP_PT_import(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_import"
    bl_label = "Import"

    def draw(self, context):
        col = self.layout.column()
        col.operator("handcap.import_capture", text="Import Capture File", icon="IMPORT")


CLASSES = (HANDCAP_PT_main, HANDCAP_PT_import)
