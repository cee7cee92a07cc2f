"""HandCap > Live: start / stop the live preview and the Record toggle."""

from __future__ import annotations

import bpy

from ..operators.live import WM_LAST_FILE, WM_RECORD, WM_RUNNING
from .main import HandCapSubPanel


class HANDCAP_PT_live(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_live"
    bl_label = "Live"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        wm = context.window_manager
        col = self.layout.column(align=True)
        if getattr(wm, WM_RUNNING, False):
            col.operator("handcap.stop_live", text="Stop", icon="PAUSE")
            col.prop(wm, WM_RECORD, text="Record", icon="REC", toggle=True)
        else:
            op = col.operator("handcap.live_preview", text="Live from Camera", icon="OUTLINER_OB_CAMERA")
            op.source_kind = "CAMERA"
            op = col.operator("handcap.live_preview", text="Live from Video (Real Time)", icon="FILE_MOVIE")
            op.source_kind = "VIDEO"
        last = getattr(wm, WM_LAST_FILE, "")
        if last:
            col.label(text=f"Last recording: {bpy.path.basename(last)}")
            col.operator("handcap.import_capture", text="Import Last Recording", icon="IMPORT").filepath = last


CLASSES = (HANDCAP_PT_live,)
