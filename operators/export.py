"""File > Export > HandCap Motion: the selected armatures (captured hands or a retargeted rig) with their
animation and meshes, as FBX, BVH (one file per armature) or glTF binary; thin over
``builders.export.export_armatures``."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from ..builders.export import ExportError, ExportOptions, export_armatures
from ..core import rig_props as rp

_EXT = {"fbx": ".fbx", "bvh": ".bvh", "glb": ".glb"}


def armatures_to_export(context) -> list[bpy.types.Object]:
    """Selected armatures; else the active armature; else every HandCap hand in the scene."""
    chosen = [o for o in context.selected_objects if o.type == "ARMATURE"]
    active = context.active_object
    if not chosen and active is not None and active.type == "ARMATURE":
        chosen = [active]
    if not chosen:
        chosen = [o for o in context.scene.objects if o.type == "ARMATURE" and rp.SIDE.on(o)]
    return chosen


class HANDCAP_OT_export_motion(bpy.types.Operator, ExportHelper):
    """Export the selected armatures' animation (and meshes) as FBX, BVH or glTF"""

    bl_idname = "handcap.export_motion"
    bl_label = "Export Hand Motion"
    bl_options = {"REGISTER"}

    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx;*.bvh;*.glb", options={"HIDDEN"})
    format: EnumProperty(
        name="Format",
        items=(
            ("fbx", "FBX", "Armatures, meshes and animation (game engines, DCC tools)"),
            ("bvh", "BVH", "Skeleton motion only, one file per armature"),
            ("glb", "glTF Binary", "Armatures, meshes and animation in one .glb (web, game engines)"),
        ),
        default="fbx",
    )
    include_meshes: BoolProperty(name="Meshes", description="Also export meshes the armatures deform", default=True)
    use_frame_range: BoolProperty(
        name="Frame Range", description="Export a frame range (off: the span of the actions)", default=False
    )
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=250)

    def check(self, context):
        # Keep the file name's extension in step with the chosen format.
        want = _EXT[self.format]
        path = Path(self.filepath)
        if self.filepath and path.suffix.lower() != want:
            self.filepath = str(path.with_suffix(want))
            return True
        return False

    def execute(self, context):
        arms = armatures_to_export(context)
        if not arms:
            self.report({"ERROR"}, "Select the armatures to export (no HandCap hands in the scene either)")
            return {"CANCELLED"}
        options = ExportOptions(
            format=self.format,
            frame_range=(self.frame_start, self.frame_end) if self.use_frame_range else None,
            include_meshes=self.include_meshes,
        )
        try:
            result = export_armatures(context, arms, self.filepath, options)
        except ExportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        first, last = result.frame_range
        names = ", ".join(Path(f).name for f in result.files)
        self.report({"INFO"}, f"Exported {len(arms)} armature(s), frames {first}-{last}: {names}")
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "format")
        row = layout.row()
        row.enabled = self.format != "bvh"
        row.prop(self, "include_meshes")
        layout.prop(self, "use_frame_range")
        if self.use_frame_range:
            col = layout.column(align=True)
            col.prop(self, "frame_start")
            col.prop(self, "frame_end")


def menu_export(self, context):
    self.layout.operator(HANDCAP_OT_export_motion.bl_idname, text="HandCap Motion (.fbx/.bvh/.glb)")


CLASSES = (HANDCAP_OT_export_motion,)


def register_extra():
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister_extra():
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
