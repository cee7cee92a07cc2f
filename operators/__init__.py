"""Blender operators (ids ``handcap.<verb>_<noun>``); each is thin over a core function."""

CLASSES = ()
