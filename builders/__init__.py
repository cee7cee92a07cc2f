"""Blender side: capture -> armatures, skinned meshes and keys (``importer.import_capture``)."""
