"""``python -m handcap``: the command line (no Blender needed except for ``convert``)."""

from .cli import main

raise SystemExit(main())
