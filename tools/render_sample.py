"""Render HandCap's own sample clip: both built-in hands playing a known animation.

Runs in plain Python with the ``bpy`` module (headless, Cycles on the CPU):

    .venv/bin/python tools/render_sample.py                 # assets/sample/two_hands.mp4 + truth
    .venv/bin/python tools/render_sample.py --preview 45    # one frame as PNG, for a quick look

Writes into ``--out`` (default ``assets/sample``):

* ``two_hands.mp4``: 640x480, 30 fps, H.264, ``--frames`` frames (default 90 = 3 s);
* ``two_hands_truth.npz``: the animation as a HandCap capture file (theta, beta, transl, kp2d, kp3d,
  rest joints, K; every frame valid), so tests and users compare a capture against it with
  ``core.capture.read_capture``.

The camera is an ideal pinhole at the origin of the OpenCV camera frame (x right, y down, z forward),
so the truth needs no conversion: Blender's world frame here IS the camera frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from handcap.core import anatomy, handmodel
from handcap.core.capture import CameraIntrinsics, Capture, HandTrack, write_capture
from handcap.core.keypoints import ManoJoint
from handcap.core.lbs import matrix_to_rotvec, rodrigues

REPO = Path(__file__).resolve().parents[1]

WIDTH, HEIGHT, FPS = 640, 480, 30
FOV_DEG = 50.0
#: Wrist positions (camera frame, metres): the person's right hand appears on the image's left.
WRIST = {"right": np.array([-0.08, 0.075, 0.43]), "left": np.array([0.08, 0.075, 0.43])}
BETA = {"right": np.zeros(10), "left": np.zeros(10)}
SKIN_RGB = (0.80, 0.52, 0.42)
SLEEVE_RGB = (0.05, 0.09, 0.20)
BACKGROUND_RGB = (0.30, 0.34, 0.40)


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def base_orientation(side: str) -> np.ndarray:
    """Template -> camera rotation with fingers up (-y) and the palm facing the camera (-z).

    The template's fingers point along -x (right hand) or +x (left hand) and its palm normal is -y.
    """
    fingers = np.array([-1.0, 0.0, 0.0]) if side == "right" else np.array([1.0, 0.0, 0.0])
    palm = np.array([0.0, -1.0, 0.0])
    src = np.stack([fingers, palm, np.cross(fingers, palm)], axis=1)
    up, toward_camera = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    dst = np.stack([up, toward_camera, np.cross(up, toward_camera)], axis=1)
    return dst @ src.T


def _smooth_pulse(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """0 -> 1 -> 0 over [start, start + length] seconds (raised cosine), 0 elsewhere."""
    u = np.clip((t - start) / length, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(2 * np.pi * u)


def animation(side: str, num_frames: int, fps: float = FPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The known motion of one hand: (theta (T, 16, 3), beta (10,), transl (T, 3)), capture conventions.

    Fingers curl one after another (thumb last) and open again, the wrist turns +-25 degrees about the
    vertical and tips +-10 degrees, and the hand drifts a few centimetres; the two hands are out of phase.
    """
    model = handmodel.load_builtin(side)
    beta = BETA[side]
    frames = anatomy.joint_frames_from_rest(handmodel.rest_joints(model, beta), side, handmodel.rest_tips(model, beta))
    t = np.arange(num_frames) / fps
    dur = num_frames / fps
    phase = 0.0 if side == "right" else 0.35 * dur
    local = np.zeros((num_frames, 16, 3))
    # (MCP, PIP, DIP) curl in radians at the height of a pulse, per finger.
    curls = {
        "index": ((1, 2, 3), (1.15, 1.35, 0.8)),
        "middle": ((4, 5, 6), (1.2, 1.4, 0.8)),
        "ring": ((10, 11, 12), (1.2, 1.4, 0.8)),
        "pinky": ((7, 8, 9), (1.2, 1.35, 0.8)),
        "thumb": ((13, 14, 15), (0.45, 0.6, 0.7)),
    }
    for k, (chain, amps) in enumerate(curls.values()):
        start = (phase + k * 0.13 * dur) % dur
        pulse = np.maximum(_smooth_pulse(t, start, 0.45 * dur), _smooth_pulse(t, start - dur, 0.45 * dur))
        for joint, amp in zip(chain, amps, strict=True):
            local[:, joint, 0] = amp * pulse
    # A little spread of the fingers while open (abduction about local z, mirrored on the left hand).
    spread = 0.12 * (1.0 - np.max(local[:, 1:13, 0], axis=1) / 1.4)
    sign = 1.0 if side == "right" else -1.0
    local[:, ManoJoint.INDEX1, 2] = -sign * spread
    local[:, ManoJoint.RING1, 2] = sign * 0.6 * spread
    local[:, ManoJoint.PINKY1, 2] = sign * spread
    theta = anatomy.from_local(local, frames)

    base = base_orientation(side)
    w = 2 * np.pi / dur
    yaw = np.radians(25.0) * np.sin(w * t + (0.0 if side == "right" else 1.3))
    pitch = np.radians(10.0) * np.sin(2 * w * t + 0.7)
    glob = np.einsum("tij,tjk,kl->til", np.stack([rot_y(a) for a in yaw]), np.stack([rot_x(a) for a in pitch]), base)
    theta[:, 0] = matrix_to_rotvec(glob)
    wrist = WRIST[side] + np.stack([0.02 * np.sin(w * t), 0.012 * np.sin(2 * w * t + 0.4), 0.03 * np.cos(w * t)], 1)
    transl = wrist - handmodel.rest_joints(model, beta)[0]
    assert np.allclose(rodrigues(theta[:, 0]), glob, atol=1e-9)
    return theta, beta, transl


def forearm(side: str) -> tuple[np.ndarray, list[tuple[int, ...]], list[int]]:
    """A forearm (skin, then a sleeve) continuing the hand's wrist, in template axes at beta = 0.

    Scenery only (not part of the truth): the palm detector was trained on people, whose hands come
    with arms; a hand cut off at the wrist scores lower. Returns (vertices, quad faces, material per face:
    0 skin, 1 sleeve).
    """
    model = handmodel.load_builtin(side)
    joints = model.j_template
    axis = joints[ManoJoint.WRIST] - joints[ManoJoint.MIDDLE1]
    axis /= np.linalg.norm(axis)
    normal = np.array([0.0, 1.0, 0.0])
    across = np.cross(axis, normal)
    # Where the hand mesh ends along the arm, and its centre there.
    along = (model.v_template - joints[ManoJoint.WRIST]) @ axis
    end = along.max()
    centre = model.v_template[along > end - 0.01].mean(axis=0)
    centre -= ((centre - joints[ManoJoint.WRIST]) @ axis) * axis
    rings = []  # (distance past the hand's end, half-width, half-thickness, material)
    for s in np.linspace(-0.012, 0.09, 7):
        rings.append((s, 0.027 + 0.02 * s, 0.018 + 0.03 * s, 0))
    for s in np.linspace(0.085, 0.32, 8):
        rings.append((s, 0.036 + 0.02 * s, 0.029 + 0.02 * s, 1))
    n = 24
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    verts, faces, mats = [], [], []
    for r, (s, hw, ht, _) in enumerate(rings):
        base = centre + (end + s) * axis
        verts += list(base + np.outer(np.cos(ang) * hw, across) + np.outer(np.sin(ang) * ht, normal))
        if r == 0 or rings[r - 1][3] != rings[r][3]:
            continue
        for i in range(n):
            a, b = (r - 1) * n + i, (r - 1) * n + (i + 1) % n
            faces.append((a, b, b + n, a + n))
            mats.append(rings[r][3])
    return np.array(verts), faces, mats


def rigid_with_wrist(rest: np.ndarray, theta0: np.ndarray, wrist_rest: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """(T, N, 3) positions of template-space points carried by the global orientation and translation."""
    rot = rodrigues(theta0)
    return np.einsum("tij,nj->tni", rot, rest - wrist_rest) + (wrist_rest + transl)[:, None]


def intrinsics() -> CameraIntrinsics:
    return CameraIntrinsics.from_fov(WIDTH, HEIGHT, FOV_DEG)


def truth_capture(num_frames: int, source: str) -> tuple[Capture, dict[str, np.ndarray]]:
    """The ground truth as a capture, and side -> (T, V, 3) vertices for rendering."""
    k = intrinsics()
    hands, verts = {}, {}
    for side in ("right", "left"):
        model = handmodel.load_builtin(side)
        theta, beta, transl = animation(side, num_frames)
        out = handmodel.forward(model, theta, beta, transl)
        kp3d = out.keypoints
        kp2d = kp3d[..., :2] / kp3d[..., 2:] * [k.fx, k.fy] + [k.cx, k.cy]
        t = num_frames
        hands[side] = HandTrack(
            side=side,
            theta=theta,
            beta=beta,
            transl=transl,
            kp2d=kp2d,
            kp3d=kp3d,
            frame_conf=np.ones(t),
            kp_conf=np.ones((t, 21)),
            valid=np.ones(t, bool),
            rest_joints=out.rest_joints[0],
        )
        verts[side] = out.vertices
        arm, _, _ = forearm(side)
        verts[side + "_arm"] = rigid_with_wrist(arm, theta[:, 0], out.rest_joints[0, 0], transl)
        inside = (kp2d[..., 0] > 0) & (kp2d[..., 0] < WIDTH) & (kp2d[..., 1] > 0) & (kp2d[..., 1] < HEIGHT)
        assert inside.all(), f"{side} hand leaves the image"
    capture = Capture(
        source=source,
        frames=np.arange(num_frames, dtype=np.int64),
        fps=float(FPS),
        image_size=(WIDTH, HEIGHT),
        intrinsics=k,
        hand_model=handmodel.BUILTIN_ID,
        hands=hands,
        info={"ground_truth": True, "generator": "tools/render_sample.py", "fov_deg": FOV_DEG},
    )
    return capture, verts


# --------------------------------------------------------------------------- Blender scene


def build_scene(bpy, verts: dict[str, np.ndarray], samples: int):
    scene = bpy.context.scene
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = True
    # Full-quality denoising costs ~10x the 8-sample render on a small CPU; the fast mode is plenty here.
    scene.cycles.denoising_prefilter = "NONE"
    scene.cycles.denoising_quality = "FAST"
    scene.cycles.denoising_input_passes = "RGB"
    scene.cycles.max_bounces = 4
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"

    world = bpy.data.worlds.new("HC_sample_world") if scene.world is None else scene.world
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*BACKGROUND_RGB, 1.0)
    bg.inputs["Strength"].default_value = 0.6

    cam_data = bpy.data.cameras.new("HC_sample_camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.lens = intrinsics().fx * 36.0 / WIDTH
    cam_data.clip_start, cam_data.clip_end = 0.01, 10.0
    cam = bpy.data.objects.new("HC_sample_camera", cam_data)
    cam.rotation_euler = (np.pi, 0.0, 0.0)  # Blender camera looks down -z with y up: turn it into OpenCV axes
    scene.collection.objects.link(cam)
    scene.camera = cam

    # Key light above-left-front, softer fill from the right, a rim from behind: studio portrait lighting.
    for name, loc, energy, size in (
        ("key", (-0.6, -0.7, -0.3), 14.0, 0.6),
        ("fill", (0.7, -0.2, -0.2), 5.0, 0.8),
        ("rim", (0.0, -0.6, 1.2), 8.0, 0.5),
    ):
        light = bpy.data.lights.new(f"HC_sample_{name}", "AREA")
        light.energy, light.size = energy, size
        obj = bpy.data.objects.new(f"HC_sample_{name}", light)
        obj.location = loc
        direction = np.array([0.0, 0.0, 0.5]) - np.array(loc)
        obj.rotation_mode = "QUATERNION"
        obj.rotation_quaternion = _look_rotation(direction)
        scene.collection.objects.link(obj)

    mat = bpy.data.materials.new("HC_sample_skin")
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*SKIN_RGB, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.5
    bsdf.inputs["Subsurface Weight"].default_value = 0.15
    bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.35, 0.2)
    bsdf.inputs["Subsurface Scale"].default_value = 0.004

    sleeve = bpy.data.materials.new("HC_sample_sleeve")
    sleeve.use_nodes = True
    sbsdf = sleeve.node_tree.nodes["Principled BSDF"]
    sbsdf.inputs["Base Color"].default_value = (*SLEEVE_RGB, 1.0)
    sbsdf.inputs["Roughness"].default_value = 0.9

    meshes = {}
    for side in ("right", "left"):
        model = handmodel.load_builtin(side)
        arm_verts, arm_faces, arm_mats = forearm(side)
        for name, faces, mats in ((side, model.faces.tolist(), None), (side + "_arm", arm_faces, arm_mats)):
            mesh = bpy.data.meshes.new(f"HC_sample_{name}")
            mesh.from_pydata(verts[name][0].tolist(), [], faces)
            mesh.shade_smooth()
            mesh.materials.append(mat)
            mesh.materials.append(sleeve)
            if mats is not None:
                mesh.polygons.foreach_set("material_index", mats)
            obj = bpy.data.objects.new(f"HC_sample_{name}", mesh)
            scene.collection.objects.link(obj)
            meshes[name] = mesh
    return scene, meshes


def _look_rotation(direction: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (w, x, y, z) turning a light's -z axis toward ``direction``."""
    from mathutils import Vector

    return tuple(Vector(direction.tolist()).to_track_quat("-Z", "Y"))


def set_frame(meshes, verts, index: int) -> None:
    for side, mesh in meshes.items():
        mesh.vertices.foreach_set("co", verts[side][index].astype(np.float32).ravel())
        mesh.update()


def render(out_dir: Path, num_frames: int, samples: int, preview: int | None) -> None:
    import bpy

    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "two_hands.mp4"
    truth, verts = truth_capture(num_frames, source=video.name)
    scene, meshes = build_scene(bpy, verts, samples)
    if preview is not None:
        set_frame(meshes, verts, preview)
        scene.render.image_settings.file_format = "PNG"
        scene.render.filepath = str(out_dir / f"preview_{preview:03d}.png")
        bpy.ops.render.render(write_still=True)
        return

    def on_frame(scene, *_):
        set_frame(meshes, verts, min(max(scene.frame_current - 1, 0), num_frames - 1))

    bpy.app.handlers.frame_change_pre.append(on_frame)
    scene.frame_start, scene.frame_end = 1, num_frames
    settings = scene.render.image_settings
    settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    ff = scene.render.ffmpeg
    ff.format, ff.codec = "MPEG4", "H264"
    ff.constant_rate_factor = "MEDIUM"
    ff.ffmpeg_preset = "GOOD"
    ff.gopsize = 15
    ff.audio_codec = "NONE"
    scene.render.filepath = str(video)
    scene.render.use_file_extension = False
    bpy.ops.render.render(animation=True)
    bpy.app.handlers.frame_change_pre.remove(on_frame)
    write_capture(out_dir / "two_hands_truth.npz", truth)
    print(f"wrote {video} ({video.stat().st_size / 1e6:.2f} MB) and {out_dir / 'two_hands_truth.npz'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "sample")
    parser.add_argument("--frames", type=int, default=90, help="number of frames at 30 fps (default 90)")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel (denoised)")
    parser.add_argument("--preview", type=int, default=None, help="render only this frame (0-based) as PNG")
    args = parser.parse_args(argv)
    render(args.out, args.frames, args.samples, args.preview)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
