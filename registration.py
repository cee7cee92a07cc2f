"""Explicit, ordered registration of every Blender class HandCap defines."""

import bpy

from . import operators, panels, preferences

# Order matters: preferences and property groups first, panels last; unregister reverses it.
_MODULES = (preferences, operators, panels)


def _classes():
    for module in _MODULES:
        yield from module.CLASSES


def register():
    for cls in _classes():
        bpy.utils.register_class(cls)
    for module in _MODULES:
        hook = getattr(module, "register_extra", None)
        if hook is not None:
            hook()


def unregister():
    for module in reversed(_MODULES):
        hook = getattr(module, "unregister_extra", None)
        if hook is not None:
            hook()
    for cls in reversed(list(_classes())):
        bpy.utils.unregister_class(cls)
