"""HandCap Blender extension entry point: registration only.

Nothing here imports bpy at module level, so ``import handcap`` (and the
``inference`` layer) also works in a plain Python without Blender.
"""


def register():
    from . import registration

    registration.register()


def unregister():
    from . import registration

    registration.unregister()
