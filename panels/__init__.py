"""Blender UI panels."""

from . import camera, capture, live, main, retarget, smoothing

# The parent panel (main) must register before any sub-panel that names it in bl_parent_id.
CLASSES = (*main.CLASSES, *retarget.CLASSES, *capture.CLASSES, *smoothing.CLASSES, *camera.CLASSES, *live.CLASSES)
