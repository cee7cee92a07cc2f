"""Sidebar "Retarget" sub-panel: sources, target rig, the editable bone mapping, options, bake button."""

from __future__ import annotations

import bpy

from .main import HandCapSubPanel


class HANDCAP_UL_retarget_pairs(bpy.types.UIList):
    """One row per HandCap bone: its name and a search field for the target rig's bone."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        props = context.scene.handcap_retarget
        row = layout.row(align=True)
        row.label(text=item.source, icon="BONE_DATA")
        target = props.target
        if target is not None and target.type == "ARMATURE":
            row.prop_search(item, "target", target.data, "bones", text="")
            if item.target and item.target not in target.data.bones:
                row.label(text="", icon="ERROR")
        else:
            row.prop(item, "target", text="")

    def filter_items(self, context, data, propname):
        # Keep the mapping's order (hand, then fingers); only the name filter applies.
        items = getattr(data, propname)
        flags = [self.bitflag_filter_item] * len(items)
        if self.filter_name:
            needle = self.filter_name.lower()
            flags = [self.bitflag_filter_item if needle in (it.source + " " + it.target).lower() else 0 for it in items]
        return flags, []


class HANDCAP_PT_retarget(HandCapSubPanel, bpy.types.Panel):
    bl_idname = "HANDCAP_PT_retarget"
    bl_label = "Retarget"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        props = getattr(context.scene, "handcap_retarget", None)
        layout = self.layout
        if props is None:
            layout.label(text="HandCap is not fully registered")
            return
        col = layout.column(align=True)
        col.prop(props, "source_right")
        col.prop(props, "source_left")
        layout.prop(props, "target")

        box = layout.box()
        row = box.row(align=True)
        row.prop(props, "preset", text="")
        row.operator("handcap.load_mapping_preset", text="", icon="IMPORT")
        row.operator("handcap.save_mapping_preset", text="", icon="EXPORT")
        box.operator("handcap.suggest_mapping", icon="AUTO")
        if len(props.pairs):
            box.template_list(
                "HANDCAP_UL_retarget_pairs", "", props, "pairs", props, "active_index", rows=6, maxrows=12
            )
            mapped = sum(1 for p in props.pairs if p.target.strip())
            box.label(text=f"{mapped} of {len(props.pairs)} bones mapped")

        col = layout.column()
        col.use_property_split = True
        col.prop(props, "wrist_rotation")
        sub = col.column()
        sub.enabled = props.wrist_rotation
        sub.prop(props, "wrist_location")
        if props.wrist_location == "RELATIVE":
            sub.prop(props, "location_scale")
        col.prop(props, "keep_other_animation")
        col.prop(props, "use_frame_range")
        if props.use_frame_range:
            sub = col.column(align=True)
            sub.prop(props, "frame_start")
            sub.prop(props, "frame_end")
        layout.operator("handcap.retarget_motion", icon="ARMATURE_DATA")


CLASSES = (HANDCAP_UL_retarget_pairs, HANDCAP_PT_retarget)
