"""HandCap Blender extension entry point: registration only.

Nothing here imports bpy at module level, so ``import handcap`` (and the
``inference`` layer) also works in a plain Python without Blender.
``registration`` registers the Blender classes; the ``blender -c handcap`` command
(``blender_cli``) is registered here, on top, because it runs the command line's batch,
which itself registers the classes when bpy runs as a module.
"""


def register():
    from . import blender_cli, registration

    registration.register()
    blender_cli.register_cli()  # blender -b -c handcap convert ...


def unregister():
    from . import blender_cli, registration

    blender_cli.unregister_cli()
    registration.unregister()
