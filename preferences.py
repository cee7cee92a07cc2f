"""Add-on preferences (keyed by ``__package__``, the extension's module name)."""

import bpy
from bpy.props import EnumProperty, FloatProperty, StringProperty

ADDON_ID = __package__


class HANDCAP_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Inference Python",
        description="Python interpreter that runs inference (empty: Blender's own when torch imports there, "
        "else the private environment made by 'Set up inference environment')",
        subtype="FILE_PATH",
        default="",
    )
    device: EnumProperty(
        name="Device",
        items=(
            ("auto", "Auto", "CUDA when available, else CPU"),
            ("cpu", "CPU", "Always run on the CPU"),
            ("cuda", "CUDA", "NVIDIA GPU through CUDA"),
        ),
        default="auto",
    )
    hand_model: EnumProperty(
        name="Hand Model",
        items=(
            ("builtin", "Built-in", "HandCap's own hand model (always available)"),
            ("mano", "MANO", "Your own MANO_RIGHT.pkl / MANO_LEFT.pkl (licensed separately)"),
        ),
        default="builtin",
    )
    mano_dir: StringProperty(
        name="MANO Folder",
        description="Folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl (never shipped with HandCap)",
        subtype="DIR_PATH",
        default="",
    )
    default_fov: FloatProperty(
        name="Default Field of View",
        description="Horizontal field of view of Capture Hands' 'Preferences' lens (by default the focal length "
        "is estimated from the footage)",
        default=55.0,
        min=1.0,
        max=179.0,
        subtype="NONE",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "python_path")
        col.prop(self, "device")
        col.prop(self, "hand_model")
        row = col.row()
        row.enabled = self.hand_model == "mano"
        row.prop(self, "mano_dir")
        col.prop(self, "default_fov")
        # Inference environment: status and buttons (imported here: operators load after preferences).
        from .panels.capture import draw_environment

        layout.label(text="Inference Environment")
        draw_environment(layout)


def get_prefs(context=None) -> HANDCAP_AddonPreferences:
    context = context or bpy.context
    return context.preferences.addons[ADDON_ID].preferences


CLASSES = (HANDCAP_AddonPreferences,)
