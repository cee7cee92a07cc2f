"""Add-on preferences (keyed by the extension's module name, ``operators.settings.ADDON_ID``).

Operators read them through ``operators.settings.get_prefs``; this module is the UI on top.
"""

import bpy
from bpy.props import EnumProperty, FloatProperty, StringProperty

from .operators.environment import draw_environment
from .operators.settings import ADDON_ID


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
        layout.label(text="Inference Environment")
        draw_environment(layout)


CLASSES = (HANDCAP_AddonPreferences,)
