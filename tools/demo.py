"""HandCap's main job, end to end: capture a clip in Blender and save the rigged, keyframed hands.

    .venv/bin/python tools/demo.py                       # the project's own sample -> out/demo.blend
    .venv/bin/python tools/demo.py --input my.mp4 -o out/my.blend --fov 60

Runs headless with the ``bpy`` module, exactly as a user would in Blender: enables the HandCap add-on,
loads the footage as a Movie Clip, runs ``handcap.capture_clip`` on the active clip (the worker process
does the inference; in background mode the operator waits for it), and saves the .blend with the clip,
the hands and a camera matching the footage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "sample" / "two_hands.mp4"
SAMPLE_FOV = 50.0  # tools/render_sample.py renders with this horizontal field of view


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Capture a clip with HandCap in headless Blender and save a .blend")
    parser.add_argument("--input", type=Path, default=SAMPLE, help="video file (default: the sample clip)")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "out" / "demo.blend")
    parser.add_argument("--fov", type=float, default=None, help="horizontal field of view in degrees")
    parser.add_argument("--hands", choices=("1", "2"), default="2")
    parser.add_argument("--stride", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.input.is_file():
        print(f"demo: error: {args.input}: no such video file", file=sys.stderr)
        return 2
    fov = args.fov if args.fov is not None else (SAMPLE_FOV if args.input.resolve() == SAMPLE else None)

    # Keep Blender's user folders (preferences, logs) out of the user's own configuration.
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="handcap-demo-user-"))
    import bpy  # noqa: I001 - bpy first: it puts Blender's own modules (addon_utils) on sys.path
    import addon_utils

    addon_utils.enable("handcap", default_set=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    clip = bpy.data.movieclips.load(str(args.input.resolve()))
    scene.active_clip = clip
    scene.frame_start = clip.frame_start
    scene.frame_end = clip.frame_start + clip.frame_duration - 1
    scene.render.fps = round(clip.fps)
    scene.render.resolution_x, scene.render.resolution_y = clip.size

    t0 = time.monotonic()
    result = bpy.ops.handcap.capture_clip(
        source="ACTIVE_CLIP",
        range_mode="SOURCE",
        hands=args.hands,
        stride=args.stride,
        camera="FOV" if fov is not None else "PREFS",
        fov=fov or 55.0,
    )
    seconds = time.monotonic() - t0
    if result != {"FINISHED"}:
        print(f"demo: error: capture returned {result}", file=sys.stderr)
        return 1
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE" and o.get("handcap_side")]
    _add_camera(bpy, scene, arms, clip, fov)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(args.output.resolve()))
    sides = ", ".join(f"{o['handcap_side']} ({o.name})" for o in arms)
    print(f"demo: captured {clip.frame_duration} frames in {seconds:.1f} s: {sides}")
    print(f"demo: wrote {args.output}")
    return 0


def _add_camera(bpy, scene, arms, clip, fov: float | None) -> None:
    """A camera at the footage's viewpoint showing the clip behind the hands (the capture's camera space)."""
    if not arms or arms[0].parent is None:
        return
    space = arms[0].parent  # the importer's "camera space" Empty: OpenCV camera frame in Blender
    fx = space.get("handcap_intrinsics", [None])[0]
    width = space.get("handcap_image_size", [clip.size[0]])[0]
    cam_data = bpy.data.cameras.new("HC_demo_camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    if fx:
        cam_data.lens = float(fx) * 36.0 / float(width)
    cam_data.show_background_images = True
    bg = cam_data.background_images.new()
    bg.source = "MOVIE_CLIP"
    bg.clip = clip
    cam = bpy.data.objects.new("HC_demo_camera", cam_data)
    cam.parent = space
    # Blender cameras look down -z with y up; the OpenCV frame looks down +z with y down.
    cam.rotation_euler = (3.141592653589793, 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam


if __name__ == "__main__":
    raise SystemExit(main())
