"""Smoothing settings on each hand armature (``Object.handcap_smoothing``) and the smooth / reset operators."""

from __future__ import annotations

from dataclasses import fields

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty

from ..builders.smooth import SmoothMotionError, hand_armature_of, hand_armatures, reset_smoothing, smooth_armature
from ..core.smoothing import SmoothingError, SmoothingSettings

METHOD_ITEMS = (
    ("gaussian", "Gaussian", "Zero-phase Gaussian smoothing (offline, no lag)"),
    ("savgol", "Savitzky-Golay", "Zero-phase local polynomial fit: keeps peaks sharper than Gaussian"),
    ("one_euro", "One-Euro", "Causal filter as used live: smooth when slow, responsive when fast (some lag)"),
    ("none", "Clean-up Only", "Fill gaps and replace outliers without smoothing"),
)

# name -> (label, description, extra keyword arguments)
_UI = {
    "sigma": ("Sigma", "Gaussian standard deviation in frames", {"min": 0.1, "max": 30.0}),
    "window": ("Window", "Savitzky-Golay window in frames (odd)", {"min": 3, "max": 101}),
    "order": ("Order", "Savitzky-Golay polynomial order", {"min": 0, "max": 6}),
    "min_cutoff": ("Min Cutoff", "One-Euro minimum cutoff frequency (Hz): lower is smoother", {"min": 0.01}),
    "beta": ("Beta", "One-Euro speed coefficient for rotations (per rad/s): higher follows fast motion", {"min": 0}),
    "beta_location": ("Beta Location", "One-Euro speed coefficient for the wrist location (per m/s)", {"min": 0}),
    "d_cutoff": ("Speed Cutoff", "One-Euro cutoff of the speed estimate (Hz)", {"min": 0.01}),
    "fill_gaps": ("Fill Gaps", "Bridge short runs of frames where the hand was lost", {}),
    "max_gap": ("Max Gap", "Longest gap to bridge, frames", {"min": 0, "max": 1000}),
    "filled_weight": ("Filled Weight", "How much bridged frames count inside the filter", {"min": 0, "max": 1}),
    "min_confidence": ("Min Confidence", "Frames with lower detection confidence are replaced", {"min": 0, "max": 1}),
    "reject_outliers": ("Reject Outliers", "Replace frames whose joints jump away from their neighbours", {}),
    "outlier_threshold": ("Outlier Threshold", "Times the clip's typical deviation from the neighbours", {"min": 0.5}),
    "outlier_min_mm": ("Outlier Minimum (mm)", "Smallest joint jump that counts as an outlier", {"min": 0}),
    "outlier_weight": ("Outlier Weight", "0 replaces outlier frames, more keeps part of them", {"min": 0, "max": 1}),
    "reduce_keys": ("Reduce Keys", "Drop keys that linear interpolation reproduces within the tolerances", {}),
    "key_tolerance_deg": ("Rotation Tolerance (deg)", "Largest rotation error of a dropped key", {"min": 0.001}),
    "key_tolerance_mm": ("Location Tolerance (mm)", "Largest location error of a dropped key", {"min": 0.001}),
}


def _settings_annotations() -> dict:
    """One Blender property per ``SmoothingSettings`` field, with the dataclass defaults."""
    ann = {}
    for f in fields(SmoothingSettings):
        if f.name == "method":
            ann[f.name] = EnumProperty(name="Method", items=METHOD_ITEMS, default=f.default)
            continue
        if f.name.startswith("strength_"):
            group = f.name.removeprefix("strength_").title()
            label, desc, extra = group, f"Smoothing strength of the {group.lower()} (0 = raw)", {"min": 0, "max": 10}
        else:
            label, desc, extra = _UI[f.name]
        if isinstance(f.default, bool):
            ann[f.name] = BoolProperty(name=label, description=desc, default=f.default)
        elif isinstance(f.default, int):
            ann[f.name] = IntProperty(name=label, description=desc, default=f.default, **extra)
        else:
            ann[f.name] = FloatProperty(name=label, description=desc, default=f.default, **extra)
    return ann


def _readout(name: str, desc: str) -> FloatProperty:
    return FloatProperty(name=name, description=desc, default=0.0)


HANDCAP_PG_smoothing = type(
    "HANDCAP_PG_smoothing",
    (bpy.types.PropertyGroup,),
    {
        "__doc__": "Smoothing settings and readouts of one HandCap hand armature",
        "__annotations__": {
            **_settings_annotations(),
            "raw_action": PointerProperty(name="Raw Action", type=bpy.types.Action, description="Captured keys"),
            "raw_source": PointerProperty(name="Raw Source", type=bpy.types.Action, description="Action smoothed"),
            "is_smoothed": BoolProperty(name="Smoothed", default=False),
            "jitter_before": _readout("Jitter Before", "Mean joint acceleration of the raw capture, mm/frame^2"),
            "jitter_after": _readout("Jitter After", "Mean joint acceleration after smoothing, mm/frame^2"),
            "deviation_mean": _readout("Deviation", "Mean joint distance from the raw capture, mm"),
            "deviation_max": _readout("Max Deviation", "Largest joint distance from the raw capture, mm"),
            "filled_frames": IntProperty(name="Filled Frames", default=0),
            "replaced_frames": IntProperty(name="Replaced Frames", default=0),
            "keys_before": IntProperty(name="Keys Before", default=0),
            "keys_after": IntProperty(name="Keys After", default=0),
        },
    },
)

_COPIED = [f.name for f in fields(SmoothingSettings)]


class HANDCAP_OT_smooth_motion(bpy.types.Operator):
    """Smooth the selected captured hands from their raw capture (repeatable; Reset restores the raw keys)"""

    bl_idname = "handcap.smooth_motion"
    bl_label = "Smooth Hand Motion"
    bl_options = {"REGISTER", "UNDO"}

    share_settings: BoolProperty(
        name="Use Active Hand's Settings",
        description="Give every selected hand the active hand's smoothing settings",
        default=True,
    )

    @classmethod
    def poll(cls, context):
        return bool(hand_armatures(context))

    def execute(self, context):
        targets = hand_armatures(context)
        if not targets:
            self.report({"ERROR"}, "Select a HandCap hand armature (an imported capture) to smooth")
            return {"CANCELLED"}
        active = hand_armature_of(context.active_object)
        done = 0
        for obj in targets:
            if self.share_settings and active is not None and active in targets and obj != active:
                for name in _COPIED:
                    setattr(obj.handcap_smoothing, name, getattr(active.handcap_smoothing, name))
            try:
                report = smooth_armature(obj)
            except (SmoothMotionError, SmoothingError) as exc:
                self.report({"ERROR"}, str(exc))
                continue
            done += 1
            self.report({"INFO"}, f"{obj.name}: {report.summary()}")
        return {"FINISHED"} if done else {"CANCELLED"}


class HANDCAP_OT_reset_smoothing(bpy.types.Operator):
    """Put the raw captured keys back on the selected hands"""

    bl_idname = "handcap.reset_smoothing"
    bl_label = "Reset Smoothing"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return any(o.handcap_smoothing.is_smoothed for o in hand_armatures(context))

    def execute(self, context):
        done = 0
        for obj in hand_armatures(context):
            try:
                reset_smoothing(obj)
            except SmoothMotionError as exc:
                self.report({"WARNING"}, str(exc))
                continue
            done += 1
        if not done:
            self.report({"ERROR"}, "No selected hand has been smoothed")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Restored the raw capture on {done} hand(s)")
        return {"FINISHED"}


CLASSES = (HANDCAP_OT_smooth_motion, HANDCAP_OT_reset_smoothing)


def register_props():
    """The property group is registered here, not in CLASSES (those are operators with ids)."""
    bpy.utils.register_class(HANDCAP_PG_smoothing)
    bpy.types.Object.handcap_smoothing = PointerProperty(type=HANDCAP_PG_smoothing)


def unregister_props():
    del bpy.types.Object.handcap_smoothing
    bpy.utils.unregister_class(HANDCAP_PG_smoothing)
