"""HandCap > Smoothing: settings of the active hand, per-group strengths, readouts."""

from __future__ import annotations

import bpy

from ..builders.smooth import hand_armature_of
from ..core.smoothing import GROUPS
from .main import HandCapSubPanel


class HANDCAP_PT_smoothing(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_smoothing"
    bl_label = "Smoothing"

    @classmethod
    def poll(cls, context):
        return hand_armature_of(context.active_object) is not None

    def draw(self, context):
        props = hand_armature_of(context.active_object).handcap_smoothing
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(props, "method")
        col = layout.column(align=True)
        if props.method == "gaussian":
            col.prop(props, "sigma")
        elif props.method == "savgol":
            col.prop(props, "window")
            col.prop(props, "order")
        elif props.method == "one_euro":
            for name in ("min_cutoff", "beta", "beta_location", "d_cutoff"):
                col.prop(props, name)

        box = layout.column(heading="Strength", align=True)
        box.enabled = props.method != "none"
        for group in GROUPS + ("location",):
            box.prop(props, f"strength_{group}")

        col = layout.column(heading="Clean-up", align=True)
        col.prop(props, "fill_gaps")
        sub = col.column(align=True)
        sub.enabled = props.fill_gaps
        sub.prop(props, "max_gap")
        col.prop(props, "min_confidence")
        col.prop(props, "reject_outliers")
        sub = col.column(align=True)
        sub.enabled = props.reject_outliers
        sub.prop(props, "outlier_threshold")
        sub.prop(props, "outlier_weight")
        col = layout.column(heading="Keys", align=True)
        col.prop(props, "reduce_keys")
        sub = col.column(align=True)
        sub.enabled = props.reduce_keys
        sub.prop(props, "key_tolerance_deg")
        sub.prop(props, "key_tolerance_mm")

        row = layout.row(align=True)
        row.operator(
            "handcap.smooth_motion", text="Smooth" if not props.is_smoothed else "Re-smooth", icon="MOD_SMOOTH"
        )
        row.operator("handcap.reset_smoothing", text="Reset", icon="LOOP_BACK")
        if props.is_smoothed:
            col = layout.column(align=True)
            col.label(text=f"Jitter: {props.jitter_before:.2f} -> {props.jitter_after:.2f} mm/frame\u00b2")
            col.label(text=f"Deviation: {props.deviation_mean:.2f} mm mean, {props.deviation_max:.1f} max")
            col.label(text=f"Filled {props.filled_frames}, replaced {props.replaced_frames} frames")
            if props.keys_after != props.keys_before:
                col.label(text=f"Keys: {props.keys_before} -> {props.keys_after}")


CLASSES = (HANDCAP_PT_smoothing,)
