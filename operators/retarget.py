"""Retarget operators and the editable bone mapping they share (``scene.handcap_retarget``).

The mapping lives on the scene as a collection of (side, HandCap key, target bone) rows, so it is saved
with the file, undoable and editable in the sidebar list. ``handcap.suggest_mapping`` and
``handcap.load_mapping_preset`` fill it, ``handcap.save_mapping_preset`` writes it to the user's preset
folder, ``handcap.retarget_motion`` runs ``builders.retarget.retarget`` with it.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..builders.retarget import RetargetError, RetargetOptions, retarget
from ..core import retarget_map as rm
from ..core import rig_props as rp
from ..core.retarget_suggest import suggest_mapping
from .settings import ADDON_ID


def user_preset_dir(create: bool = False) -> Path:
    """Folder of the user's own presets (the extension's user folder, kept across updates)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path="retarget_presets", create=create))
    except ValueError:  # running as a plain package (python -m handcap, tests), not as an extension
        base = Path(bpy.utils.user_resource("CONFIG", path="handcap", create=create))
        folder = base / "retarget_presets"
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder


def all_presets() -> dict[str, rm.RetargetPreset]:
    """Built-in presets, then the user's (a user preset with a built-in id replaces it)."""
    return {**rm.builtin_presets(), **rm.presets_in(user_preset_dir())}


_ENUM_CACHE: list = []  # Blender needs the enum strings kept alive while the menu shows


def _preset_items(self, context):
    items = [(pid, p.name, p.description or p.name) for pid, p in sorted(all_presets().items())]
    _ENUM_CACHE[:] = items or [("", "(no presets)", "")]
    return _ENUM_CACHE


def _is_armature(self, obj):
    return obj.type == "ARMATURE"


class HANDCAP_PG_retarget_pair(bpy.types.PropertyGroup):
    side: EnumProperty(name="Side", items=(("right", "Right", ""), ("left", "Left", "")), default="right")
    key: StringProperty(name="HandCap Bone", description="HandCap bone (without the .R / .L suffix)")
    target: StringProperty(name="Target Bone", description="Bone of the target rig it drives (empty: not driven)")

    @property
    def source(self) -> str:
        return rm.source_bone(self.key, self.side)


class HANDCAP_PG_retarget(bpy.types.PropertyGroup):
    source_right: PointerProperty(
        name="Right Hand", type=bpy.types.Object, poll=_is_armature, description="Captured right-hand armature"
    )
    source_left: PointerProperty(
        name="Left Hand", type=bpy.types.Object, poll=_is_armature, description="Captured left-hand armature"
    )
    target: PointerProperty(
        name="Target Rig", type=bpy.types.Object, poll=_is_armature, description="The character rig to animate"
    )
    pairs: CollectionProperty(type=HANDCAP_PG_retarget_pair)
    active_index: IntProperty(default=0)
    preset: EnumProperty(name="Preset", items=_preset_items, description="Bone names of a rig family")
    wrist_rotation: BoolProperty(
        name="Wrist Rotation",
        description="The target's hands take the captured hands' world orientation (off: only the fingers move, "
        "relative to the rig's own hands)",
        default=True,
    )
    wrist_location: EnumProperty(
        name="Wrist Location",
        items=(
            ("NONE", "None", "Leave the hands where the rig puts them"),
            ("RELATIVE", "Relative", "Move the hands by the captured wrist motion (times the scale)"),
            ("WORLD", "World", "Put the hands exactly where the captured wrists are"),
        ),
        default="NONE",
    )
    location_scale: FloatProperty(name="Location Scale", default=1.0, min=0.0, soft_max=10.0)
    use_frame_range: BoolProperty(
        name="Frame Range", description="Bake every frame in a range (off: the captured frames)", default=False
    )
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=250)
    keep_other_animation: BoolProperty(
        name="Keep Other Animation",
        description="Start the new action from a copy of the rig's current action, so body animation stays",
        default=True,
    )

    def mapping(self) -> rm.BoneMapping:
        """The rows with a target bone, as a BoneMapping (MappingError when the rows are inconsistent)."""
        pairs = [rm.BonePair(p.side, p.key, p.target.strip()) for p in self.pairs if p.target.strip()]
        mapping = rm.BoneMapping(pairs)
        mapping.check()
        return mapping

    def set_mapping(self, mapping: rm.BoneMapping, sides=rm.SIDES) -> None:
        """One row per HandCap bone of ``sides`` (unmapped ones with an empty target)."""
        by_source = mapping.as_dict()
        self.pairs.clear()
        for side in sides:
            for key in rm.SOURCE_KEYS:
                row = self.pairs.add()
                row.side, row.key = side, key
                row.target = by_source.get(rm.source_bone(key, side), "")
        self.active_index = 0

    def sources(self) -> list[bpy.types.Object]:
        return [o for o in (self.source_right, self.source_left) if o is not None]


def settings(context) -> HANDCAP_PG_retarget:
    return context.scene.handcap_retarget


def _target_bones(obj) -> dict[str, str | None]:
    return {b.name: b.parent.name if b.parent else None for b in obj.data.bones}


def fill_sources(context, props: HANDCAP_PG_retarget) -> None:
    """Fill empty source slots from selected (else any) HandCap armatures, by their recorded side."""
    pool = list(context.selected_objects) + list(context.scene.objects)
    for obj in pool:
        if obj.type != "ARMATURE" or obj == props.target:
            continue
        side = rp.SIDE.read(obj)
        if side == "right" and props.source_right is None:
            props.source_right = obj
        elif side == "left" and props.source_left is None:
            props.source_left = obj


class HANDCAP_OT_suggest_mapping(bpy.types.Operator):
    """Propose a bone mapping for the target rig: a matching preset, else guessed from bone names"""

    bl_idname = "handcap.suggest_mapping"
    bl_label = "Suggest Mapping"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        props = settings(context)
        if props.target is None:
            active = context.active_object
            if active is not None and active.type == "ARMATURE" and not rp.SIDE.on(active):
                props.target = active
        if props.target is None:
            self.report({"ERROR"}, "Choose the target rig first")
            return {"CANCELLED"}
        fill_sources(context, props)
        try:
            suggestion = suggest_mapping(_target_bones(props.target), presets=all_presets())
        except rm.MappingError as exc:
            self.report({"ERROR"}, f"{props.target.name}: {exc}")
            return {"CANCELLED"}
        props.set_mapping(suggestion.mapping)
        how = suggestion.source.replace("preset:", "preset ") if suggestion.source != "names" else "bone names"
        msg = f"Mapped {len(suggestion.mapping)} of {len(suggestion.mapping) + len(suggestion.missing)} bones ({how})"
        if suggestion.missing:
            msg += f"; unmapped: {', '.join(suggestion.missing[:6])}{' ...' if len(suggestion.missing) > 6 else ''}"
        self.report({"INFO"}, msg)
        return {"FINISHED"}


class HANDCAP_OT_load_mapping_preset(bpy.types.Operator):
    """Fill the mapping from the chosen preset (names matched against the target rig when one is set)"""

    bl_idname = "handcap.load_mapping_preset"
    bl_label = "Load Mapping Preset"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(
        name="File", description="Preset file (empty: the preset chosen in the panel)", subtype="FILE_PATH", default=""
    )

    def execute(self, context):
        props = settings(context)
        try:
            preset = rm.load_preset(self.filepath) if self.filepath else all_presets().get(props.preset)
        except rm.MappingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if preset is None:
            self.report({"ERROR"}, "Choose a preset first")
            return {"CANCELLED"}
        mapping, missing = preset.mapping(), 0
        if props.target is not None:
            mapping, missing = preset.resolve(props.target.data.bones.keys())
        props.set_mapping(mapping)
        if missing:
            self.report({"WARNING"}, f"{preset.name}: {missing} bones not found on {props.target.name}")
        else:
            self.report({"INFO"}, f"Loaded preset {preset.name} ({len(mapping)} bones)")
        return {"FINISHED"}


class HANDCAP_OT_save_mapping_preset(bpy.types.Operator):
    """Save the current mapping as a preset in your HandCap presets folder"""

    bl_idname = "handcap.save_mapping_preset"
    bl_label = "Save Mapping Preset"

    name: StringProperty(name="Name", description="Preset name (letters, digits, '_', '-')", default="my_rig")
    overwrite: BoolProperty(name="Overwrite", description="Replace an existing preset of that name", default=False)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        props = settings(context)
        try:
            preset = rm.preset_from_mapping(props.mapping(), self.name, self.name)
        except rm.MappingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        path = user_preset_dir(create=True) / f"{self.name}.json"
        if path.exists() and not self.overwrite:
            self.report({"ERROR"}, f"A preset named {self.name!r} exists; tick Overwrite to replace it")
            return {"CANCELLED"}
        try:
            rm.save_preset(path, preset)
        except rm.MappingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        props.preset = self.name
        self.report({"INFO"}, f"Saved preset {self.name} to {path}")
        return {"FINISHED"}


class HANDCAP_OT_retarget_motion(bpy.types.Operator):
    """Bake the captured hands onto the target rig into a new action (the rig's own actions are kept)"""

    bl_idname = "handcap.retarget_motion"
    bl_label = "Retarget Hands"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "handcap_retarget")

    def execute(self, context):
        props = settings(context)
        fill_sources(context, props)
        if props.target is None:
            self.report({"ERROR"}, "Choose the target rig first")
            return {"CANCELLED"}
        if not props.sources():
            self.report({"ERROR"}, "No captured hand armature: import a capture first")
            return {"CANCELLED"}
        if not len(props.pairs):
            bpy.ops.handcap.suggest_mapping()
        try:
            mapping = props.mapping()
        except rm.MappingError as exc:
            self.report({"ERROR"}, f"Bone mapping: {exc}")
            return {"CANCELLED"}
        options = RetargetOptions(
            wrist_rotation=props.wrist_rotation,
            wrist_location=props.wrist_location,
            location_scale=props.location_scale,
            frame_range=(props.frame_start, props.frame_end) if props.use_frame_range else None,
            keep_other_animation=props.keep_other_animation,
        )
        try:
            result = retarget(context, props.sources(), props.target, mapping, options)
        except RetargetError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        n = sum(len(f) for f in result.frames.values())
        self.report({"INFO"}, f"Baked {len(result.bones)} bones x {n} frames into action '{result.action}'")
        return {"FINISHED"}


CLASSES = (
    HANDCAP_OT_suggest_mapping,
    HANDCAP_OT_load_mapping_preset,
    HANDCAP_OT_save_mapping_preset,
    HANDCAP_OT_retarget_motion,
)
#: Registered by the hooks (not in CLASSES, which holds operators only), items before their container.
PROPERTY_GROUPS = (HANDCAP_PG_retarget_pair, HANDCAP_PG_retarget)


def register_extra():
    for cls in PROPERTY_GROUPS:
        bpy.utils.register_class(cls)
    bpy.types.Scene.handcap_retarget = PointerProperty(type=HANDCAP_PG_retarget)


def unregister_extra():
    del bpy.types.Scene.handcap_retarget
    for cls in reversed(PROPERTY_GROUPS):
        bpy.utils.unregister_class(cls)
