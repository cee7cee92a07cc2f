"""Blender UI panels."""

CLASSES = ()
