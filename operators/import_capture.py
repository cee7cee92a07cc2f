"""File > Import and sidebar button: a HandCap capture file -> rigged, keyframed hands."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..builders.importer import CaptureImportError, ImportOptions, import_capture


class HANDCAP_OT_import_capture(bpy.types.Operator, ImportHelper):
    """Import a HandCap capture (.npz) as rigged, skinned, keyframed hands"""

    bl_idname = "handcap.import_capture"
    bl_label = "Import Hand Capture"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})

    use_scene_start: BoolProperty(
        name="Start at Scene Start",
        description="Put source frame 0 on the scene's start frame (where a Movie Clip of the footage starts)",
        default=True,
    )
    frame_offset: IntProperty(
        name="Frame Offset",
        description="Scene frame of source frame 0 (scene frame = offset + source frame index)",
        default=1,
    )
    import_right: BoolProperty(name="Right Hand", default=True)
    import_left: BoolProperty(name="Left Hand", default=True)
    with_mesh: BoolProperty(name="Hand Mesh", description="Add the skinned hand mesh", default=True)
    set_scene_timing: BoolProperty(
        name="Set Scene Frame Rate and Range",
        description="Change the scene's frame rate and frame range to the capture's",
        default=False,
    )
    interpolation: EnumProperty(
        name="Interpolation",
        items=(
            ("LINEAR", "Linear", "Straight lines between captured frames (no overshoot)"),
            ("BEZIER", "Bezier", "Smooth curves through the captured frames"),
            ("CONSTANT", "Constant", "Hold each captured pose until the next"),
        ),
        default="LINEAR",
    )

    def import_options(self) -> ImportOptions:
        sides = tuple(s for s, on in (("right", self.import_right), ("left", self.import_left)) if on)
        return ImportOptions(
            frame_offset=None if self.use_scene_start else self.frame_offset,
            sides=sides,
            with_mesh=self.with_mesh,
            set_scene_timing=self.set_scene_timing,
            interpolation=self.interpolation,
        )

    def execute(self, context):
        if not self.filepath:
            self.report({"ERROR"}, "No capture file chosen")
            return {"CANCELLED"}
        try:
            result = import_capture(context, self.filepath, self.import_options())
        except CaptureImportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        hands = ", ".join(f"{side} ({result.keyed_frames[side]} frames)" for side in result.armatures)
        first, last = result.scene_frames
        self.report({"INFO"}, f"Imported {hands} into '{result.collection}', scene frames {first}-{last}")
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column(heading="Hands")
        col.prop(self, "import_right")
        col.prop(self, "import_left")
        layout.prop(self, "with_mesh")
        layout.prop(self, "use_scene_start")
        row = layout.row()
        row.enabled = not self.use_scene_start
        row.prop(self, "frame_offset")
        layout.prop(self, "interpolation")
        layout.prop(self, "set_scene_timing")


def menu_import(self, context):
    self.layout.operator(HANDCAP_OT_import_capture.bl_idname, text="HandCap Capture (.npz)")


CLASSES = (HANDCAP_OT_import_capture,)
