"""bpy-free, torch-free data shared by inference and the Blender side."""

__version__ = "0.1.0"
