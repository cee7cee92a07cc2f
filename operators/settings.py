"""HandCap's settings and where it keeps things: the extension's id, its preferences, its user folders and the
inference worker's interpreter.

One module below every operator and the preferences UI, so that neither imports the other for these facts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy

from . import interpreter as interp

#: The extension's module name (``handcap``, or ``bl_ext.<repository>.handcap`` when installed), which keys its
#: preferences and user folder.
ADDON_ID = __package__.rpartition(".")[0]


def get_prefs(context=None):
    """HandCap's add-on preferences (``preferences.HANDCAP_AddonPreferences``)."""
    context = context or bpy.context
    return context.preferences.addons[ADDON_ID].preferences


def user_path(name: str, create: bool = False) -> Path:
    """A folder under HandCap's user data (the extension's own, outside Blender's and the add-on's files)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path=name, create=create))
    except ValueError:
        # Not installed as an extension (a legacy add-on install): Blender's user data folder instead.
        return Path(bpy.utils.user_resource("DATAFILES", path=f"handcap/{name}", create=create))


def venv_dir() -> Path:
    """HandCap's private inference environment (made by 'Set up inference environment')."""
    return user_path("venv")


def resolve_interpreter(context) -> interp.Interpreter:
    """The worker's interpreter per the preferences (raises InterpreterError with the fix)."""
    prefs = get_prefs(context)
    return interp.choose_interpreter(
        prefs.python_path, sys.executable, venv_dir(), interp.requirements_importable_here()
    )
