"""Blender operators (ids ``handcap.<verb>_<noun>``); each is thin over a core function."""

from ..builders import capture_store
from . import (
    camera,
    capture,
    environment,
    export,
    import_capture,
    import_results,
    live,
    pose_photo,
    retarget,
    smoothing,
)

CLASSES = (
    *import_capture.CLASSES,
    *retarget.CLASSES,
    *export.CLASSES,
    *capture.CLASSES,
    *pose_photo.CLASSES,
    *environment.CLASSES,
    *smoothing.CLASSES,
    *camera.CLASSES,
    *import_results.CLASSES,
    *live.CLASSES,
)


def register_extra():
    import bpy

    bpy.types.TOPBAR_MT_file_import.append(import_capture.menu_import)
    bpy.types.TOPBAR_MT_file_import.append(import_results.menu_import)
    retarget.register_extra()
    export.register_extra()
    smoothing.register_props()
    camera.register_props()
    live.register_props()
    capture_store.register_handlers()  # captures follow the .blend when it is saved


def unregister_extra():
    import bpy

    live.unregister_props()
    capture_store.unregister_handlers()
    camera.unregister_props()
    smoothing.unregister_props()
    export.unregister_extra()
    retarget.unregister_extra()
    bpy.types.TOPBAR_MT_file_import.remove(import_results.menu_import)
    bpy.types.TOPBAR_MT_file_import.remove(import_capture.menu_import)
