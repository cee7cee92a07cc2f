"""Batch conversion with any Blender, no install needed:

    blender -b -P tools/blender_batch.py -- convert INPUTS... -o OUTDIR [--format blend|fbx|bvh|glb] ...

Loads HandCap from this checkout (whatever its folder is called) and runs the same batch as
``blender -b -c handcap convert`` and ``python -m handcap convert``; Blender's exit status is the batch's
(0 all converted, 1 some input failed, 2 bad options). ``python tools/blender_batch.py -- ...`` works
too where ``bpy`` is importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_checkout(name: str = "handcap"):
    """Import this checkout as the package ``name`` (its folder may be called anything)."""
    if name in sys.modules and Path(sys.modules[name].__file__).resolve().parent == REPO:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    load_checkout()
    blender_cli = importlib.import_module("handcap.blender_cli")
    return blender_cli.main(argv, prog="blender -b -P tools/blender_batch.py --")


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(args))
