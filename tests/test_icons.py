"""Every icon name written in the Blender-side code exists in this Blender: an unknown name raises inside a
panel's draw() and Blender silently stops drawing the rest of that panel (the Capture panel once lost all but
its first button to ``icon="CLIP"``)."""

from __future__ import annotations

import re

from .conftest import REPO

ICON_LITERAL = re.compile(r"""\bicon\s*=\s*["']([A-Z0-9_]+)["']""")
BLENDER_SIDE = ("panels", "operators", "builders", "preferences.py", "registration.py")


def icon_literals() -> dict[str, list[str]]:
    """icon name -> places ("file:line") that use it."""
    found: dict[str, list[str]] = {}
    for part in BLENDER_SIDE:
        root = REPO / part
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            for no, line in enumerate(path.read_text().splitlines(), 1):
                for name in ICON_LITERAL.findall(line):
                    found.setdefault(name, []).append(f"{path.relative_to(REPO)}:{no}")
    return found


def test_icon_names_exist_in_blender(hc):
    valid = set(hc.bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    used = icon_literals()
    assert len(used) >= 10, used  # the scan finds the panels' icons
    unknown = {name: where for name, where in used.items() if name not in valid}
    assert not unknown, f"icon names Blender does not know: {unknown}"
