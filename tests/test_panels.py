"""Blender-side UI checks: panels sit on the HandCap tab, and every icon name written in the Blender-side code
exists in this Blender (an unknown name raises inside a panel's draw() and Blender silently stops drawing the
rest of that panel: the Capture panel once lost all but its first button to ``icon="CLIP"``)."""

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


def test_sidebar_panels_sit_on_the_handcap_tab(hc):
    """Every registered 3D Viewport panel of HandCap is on the HandCap tab, and all but the parent hang under it
    (the placement comes from one mixin in panels/main.py)."""
    bpy = hc.bpy
    names = [n for n in dir(bpy.types) if n.startswith("HANDCAP_PT_")]
    view3d = [getattr(bpy.types, n) for n in names if getattr(bpy.types, n).bl_space_type == "VIEW_3D"]
    assert {p.__name__ for p in view3d} >= {
        "HANDCAP_PT_main",
        "HANDCAP_PT_import",
        "HANDCAP_PT_capture",
        "HANDCAP_PT_environment",
        "HANDCAP_PT_retarget",
        "HANDCAP_PT_smoothing",
        "HANDCAP_PT_camera",
    }
    for panel in view3d:
        assert panel.bl_region_type == "UI" and panel.bl_category == "HandCap", panel
        expected_parent = "" if panel.__name__ == "HANDCAP_PT_main" else "HANDCAP_PT_main"
        assert getattr(panel, "bl_parent_id", "") == expected_parent, panel
