"""Screenshot of HandCap's 3D Viewport sidebar panels (docs/images/panels.png in the README).

The ``bpy`` module from PyPI has no window, so this runs inside a full Blender with a UI, which can be
headless under a virtual X display (Xvfb; Mesa's llvmpipe gives it OpenGL). It is not part of the test
suite: it needs ``blender`` and ``xvfb`` from the system's packages. Made on Debian 12, whose Blender is
3.4.1 (the only Blender tried; HandCap itself targets 4.2+, see the shims below):

    apt-get install -y blender python3-numpy xvfb
    .venv/bin/python -m handcap capture assets/sample/two_hands.mp4 -o /tmp/two_hands.npz
    xvfb-run -a -s "-screen 0 1100x1900x24" blender --factory-startup --enable-event-simulate \\
        --window-geometry 0 0 1100 1900 --python tools/screenshot_panels.py -- \\
        --capture /tmp/two_hands.npz --footage assets/sample/two_hands.mp4 --out docs/images/panels.png

``--enable-event-simulate`` is required: the script widens the sidebar and picks its HandCap tab with
simulated mouse events, as Blender 3.4 has no Python API for either (simulated events replace real ones,
so the window ignores the mouse and keyboard meanwhile). The window is tall so that every panel fits.

What it does: loads the extension from this repository as the package ``handcap`` and registers it;
imports ``--capture`` with the extension's import operator (without it the panels show an empty scene);
with ``--footage`` runs the Camera panel's Match Camera and looks through that camera; makes the
``--side`` hand's armature active; opens the HandCap tab with every sub-panel expanded; saves a window
screenshot (``screen.screenshot``) and crops it to the 3D Viewport and its sidebar, down to the last panel.
It exits with status 1 and a traceback when any step fails.

To run the extension's code in an older Blender, ``apply_shims`` adds compatibility shims, each only when
the API it stands in for is missing. They live here only; the extension's own code is unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import traceback
from pathlib import Path
from types import SimpleNamespace

import bpy
import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: How often HANDCAP_PT_main drew since last reset: it only draws while the sidebar shows the HandCap tab.
DRAWN = {"main": 0}


def parse_args() -> argparse.Namespace:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    ap = argparse.ArgumentParser(prog="blender --python tools/screenshot_panels.py --")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "panels.png", help="PNG to write")
    ap.add_argument("--capture", type=Path, help="capture file (.npz) to import first (default: empty scene)")
    ap.add_argument(
        "--footage", type=Path, help="video of the capture: match a camera to it and look through it (needs --capture)"
    )
    ap.add_argument("--frame", type=int, default=45, help="scene frame to show, from the scene start (default 45)")
    ap.add_argument("--side", choices=("right", "left"), default="right", help="hand made active (default right)")
    ap.add_argument("--sidebar-width", type=int, default=430, help="sidebar width in pixels (default 430)")
    ap.add_argument("--viewport", type=int, help="pixels of 3D viewport left of the sidebar to keep (default all)")
    return ap.parse_args(argv)


def load_handcap():
    """Import this repository (the extension's package root) as the package ``handcap``."""
    spec = importlib.util.spec_from_file_location(
        "handcap", REPO / "__init__.py", submodule_search_locations=[str(REPO)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["handcap"] = module
    spec.loader.exec_module(module)
    return module


def apply_shims() -> list[str]:
    """Compatibility shims for Blender < 4.4 (only those whose API is missing); returns what was shimmed."""
    applied = []
    if not hasattr(bpy.utils, "extension_path_user"):
        # Blender < 4.2 has no extensions. 4.2+ raises ValueError for a package that is not an installed
        # extension, and HandCap then falls back to Blender's user folders: make 3.x answer the same way.
        def extension_path_user(package, path="", create=False):
            raise ValueError(f"{package!r} is not an extension (Blender {bpy.app.version_string})")

        bpy.utils.extension_path_user = extension_path_user
        applied.append("bpy.utils.extension_path_user -> ValueError (not an extension)")
    if not hasattr(bpy.types.Action, "slots"):
        # Blender < 4.4 has no action slots / channelbags: write the same F-curves into a legacy action.
        from handcap.builders import importer, keys

        def new_action(obj, name):
            action = bpy.data.actions.new(name)
            (obj.animation_data or obj.animation_data_create()).action = action
            return action

        def write_channels(action, slot, channels):
            for ch in channels:
                n = len(ch.frames)
                if n == 0:
                    continue
                fc = action.fcurves.new(ch.data_path, index=ch.index, action_group=ch.group)
                fc.keyframe_points.add(n)
                co = np.stack([ch.frames, ch.values], axis=1).astype(np.float32)
                fc.keyframe_points.foreach_set("co", co.ravel())
                interp = np.full(n, keys.INTERPOLATIONS[ch.interpolation], dtype=np.int32)
                fc.keyframe_points.foreach_set("interpolation", interp)
                fc.update()

        key_hand = importer._key_hand

        def key_hand_without_slot(arm_obj, *args):
            # _key_hand reads arm_obj.animation_data.action_slot only to pass it on to write_channels.
            return key_hand(SimpleNamespace(animation_data=SimpleNamespace(action_slot=None)), *args)

        keys.new_action, keys.write_channels, importer._key_hand = new_action, write_channels, key_hand_without_slot
        applied.append("layered actions (4.4+) -> legacy action.fcurves for the capture import")
    if not bpy.types.MeshPolygon.bl_rna.properties["loop_total"].is_readonly:
        # Blender < 4.0 needs each polygon's loop_total set (4.0+ derives it from loop_start, and
        # create_skinned_mesh relies on that); without it mesh.validate() drops every face. Add the
        # triangles again afterwards: the vertices and their weights are still there.
        from handcap.builders import skin

        create_skinned_mesh = skin.create_skinned_mesh

        def create_skinned_mesh_with_faces(collection, name, armature, vertices, faces, *args, **kwargs):
            obj = create_skinned_mesh(collection, name, armature, vertices, faces, *args, **kwargs)
            mesh, faces = obj.data, np.asarray(faces, np.int32)
            if len(mesh.polygons) == 0 and len(mesh.loops) == 0:
                mesh.loops.add(faces.size)
                mesh.loops.foreach_set("vertex_index", faces.ravel())
                mesh.polygons.add(len(faces))
                mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
                mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
                mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
                mesh.update(calc_edges=True)
                mesh.validate()
            return obj

        skin.create_skinned_mesh = create_skinned_mesh_with_faces
        applied.append("MeshPolygon.loop_total (set by hand before 4.0) for the hand mesh")
    return applied


def register(handcap) -> None:
    from handcap import panels

    for cls in (c for c in panels.CLASSES if issubclass(c, bpy.types.Panel)):
        # Open the sub-panels that start closed, so the screenshot shows all of them.
        cls.bl_options = set(getattr(cls, "bl_options", set())) - {"DEFAULT_CLOSED"}
    handcap.register()
    # Enabled as an add-on named "handcap", so its preferences (keyed by the package name) resolve.
    if "handcap" not in bpy.context.preferences.addons:
        bpy.context.preferences.addons.new().module = "handcap"

    def count_draw(panel, context):
        DRAWN["main"] += 1

    bpy.types.HANDCAP_PT_main.append(count_draw)


def view3d(window):
    area = max((a for a in window.screen.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
    return area, next(r for r in area.regions if r.type == "UI"), next(r for r in area.regions if r.type == "WINDOW")


def simulate(window, kind, value="NOTHING", x=0, y=0, ctrl=False):
    window.event_simulate(type=kind, value=value, x=int(x), y=int(y), ctrl=ctrl)


def handcap_tab_drawn(ui):
    """Redraw the sidebar (a step of ``steps``); True when HANDCAP_PT_main drew, i.e. its tab is shown."""
    DRAWN["main"] = 0
    ui.tag_redraw()
    yield 0.4
    return DRAWN["main"] > 0


def steps(args):
    """The screenshot as a sequence of steps; each ``yield`` lets Blender redraw for that many seconds."""
    window = bpy.context.window_manager.windows[0]
    prefs = bpy.context.preferences
    prefs.system.use_region_overlap = False  # an opaque sidebar: legible, and croppable
    prefs.view.show_splash = False
    area, _, _ = view3d(window)
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.screen.screen_full_area()
    yield 0.5
    area, ui, main = view3d(window)
    space = area.spaces.active
    space.show_region_ui = True
    space.show_region_toolbar = False
    space.show_object_viewport_empty = False  # the camera-space Empty's axes sit in the camera, across the view
    for obj in list(bpy.data.objects):  # the start-up cube, camera and light
        bpy.data.objects.remove(obj)
    yield 0.5

    if args.capture is not None:
        with bpy.context.temp_override(window=window, area=area, region=main):
            result = bpy.ops.handcap.import_capture(filepath=str(args.capture.resolve()))
        if result != {"FINISHED"}:
            raise RuntimeError(f"handcap.import_capture returned {result}")
        arms = {o["handcap_side"]: o for o in bpy.data.objects if o.type == "ARMATURE" and "handcap_side" in o}
        arm = arms[args.side]
        for obj in bpy.context.view_layer.objects:
            obj.select_set(obj is arm)
        bpy.context.view_layer.objects.active = arm
        props = bpy.context.scene.handcap_retarget  # as if the user had picked the captured hands as sources
        props.source_right, props.source_left = arms.get("right"), arms.get("left")
        if args.footage is not None:
            # The Camera panel's "Match Camera": a camera with the footage behind the hands; look through it.
            with bpy.context.temp_override(window=window, area=area, region=main):
                result = bpy.ops.handcap.match_camera(clip_path=str(args.footage.resolve()))
            if result != {"FINISHED"}:
                raise RuntimeError(f"handcap.match_camera returned {result}")
            bpy.context.view_layer.objects.active = arm
            arm.select_set(True)
            main.data.view_perspective = "CAMERA"
            with bpy.context.temp_override(window=window, area=area, region=main):
                bpy.ops.view3d.view_center_camera()
        bpy.context.scene.frame_set(bpy.context.scene.frame_start + args.frame)
        yield 0.5

    # Widen the sidebar: drag its left edge (the region-scale action zone) to the left.
    area, ui, main = view3d(window)
    x, y = ui.x + 1, ui.y + ui.height // 2
    target = x - (args.sidebar_width - ui.width)
    simulate(window, "MOUSEMOVE", x=x, y=y)
    yield 0.2
    simulate(window, "LEFTMOUSE", "PRESS", x=x, y=y)
    yield 0.2
    while x > target:
        x = max(target, x - 25)
        simulate(window, "MOUSEMOVE", x=x, y=y)
        yield 0.05
    simulate(window, "LEFTMOUSE", "RELEASE", x=x, y=y)
    yield 0.5
    print(f"screenshot_panels: sidebar width {view3d(window)[1].width} px")

    # Switch to the HandCap tab by clicking down the tab column at the sidebar's right edge (a click on a
    # tab only selects it, so an extra click is harmless); HANDCAP_PT_main draws only on its own tab.
    area, ui, main = view3d(window)
    x = ui.x + ui.width - 10
    for y in range(ui.y + ui.height - 15, ui.y + ui.height // 2, -20):
        simulate(window, "MOUSEMOVE", x=x, y=y)
        simulate(window, "LEFTMOUSE", "PRESS", x=x, y=y)
        simulate(window, "LEFTMOUSE", "RELEASE", x=x, y=y)
        if (yield from handcap_tab_drawn(ui)) and (yield from handcap_tab_drawn(ui)):
            break
    else:
        raise RuntimeError("the HandCap tab never drew (is the extension registered?)")
    simulate(window, "MOUSEMOVE", x=main.x + 40, y=main.y + 40)  # no hover highlight on the panels
    yield 1.0

    area, ui, main = view3d(window)
    if not (yield from handcap_tab_drawn(ui)):
        raise RuntimeError("the sidebar left the HandCap tab")
    shot = Path(tempfile.mkdtemp()) / "window.png"
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.screen.screenshot(filepath=str(shot))
    crop(shot, area, ui, args.viewport, args.out)
    print(f"screenshot_panels: wrote {args.out} ({bpy.app.version_string}, sidebar {ui.width}x{ui.height} px)")


def crop(shot: Path, area, ui, viewport: int | None, out: Path) -> None:
    """Cut the 3D Viewport (its header, ``viewport`` pixels of it left of the sidebar or all of it, and
    the sidebar) out of the window screenshot, without the empty rows below the last panel; write a PNG."""
    img = bpy.data.images.load(str(shot))
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(h, w, 4)  # rows bottom-up, like Blender's window coordinates
    x0 = area.x if viewport is None else max(area.x, ui.x - viewport)
    x1, y0, y1 = ui.x + ui.width, ui.y, area.y + area.height
    panels = px[ui.y : ui.y + ui.height, ui.x + 8 : x1 - 40, :3]  # without the tab column at the right edge
    background = np.median(panels[4:40].reshape(-1, 3), axis=0)  # the sidebar's own colour, below the panels
    differs = (np.abs(panels - background).max(axis=2) > 0.03).mean(axis=1) > 0.01
    used = np.flatnonzero(differs[4:]) + 4
    if len(used):
        y0 = max(y0, ui.y + int(used.min()) - 10)
    part = np.ascontiguousarray(px[y0:y1, x0:x1])
    out.parent.mkdir(parents=True, exist_ok=True)
    result = bpy.data.images.new("handcap_panels", part.shape[1], part.shape[0], alpha=False)
    result.pixels.foreach_set(part.ravel())
    result.filepath_raw = str(out)
    result.file_format = "PNG"
    result.save()


def main() -> None:
    args = parse_args()
    bpy.context.preferences.view.show_splash = False  # before Blender opens the start-up splash
    handcap = load_handcap()
    shims = apply_shims()
    register(handcap)
    print(f"screenshot_panels: Blender {bpy.app.version_string}; shims: {shims or 'none'}")
    it = steps(args)

    def tick():
        try:
            return next(it)
        except StopIteration:
            bpy.ops.wm.quit_blender()
        except BaseException:
            traceback.print_exc()
            sys.stdout.flush()
            os._exit(1)  # a failure in a timer would otherwise leave Blender running
        return None

    bpy.app.timers.register(tick, first_interval=1.0)


main()
