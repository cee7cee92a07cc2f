"""Camera alignment inside bpy: intrinsics, the overlay through (moving) cameras, depth edits, overlay renders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from .test_blender_smoothing import counting_capture_files, import_hands, noisy_capture, select_only

pytestmark = pytest.mark.blender


@pytest.fixture
def counting_capture(tmp_path_factory):
    return counting_capture_files(tmp_path_factory)


def new_camera(bpy, name="cam"):
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    bpy.context.scene.collection.objects.link(cam)
    return cam


def blender_project(hc, cam, points_world):
    """Pixels (origin top-left) of world points through Blender's own world_to_camera_view."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    scene = hc.bpy.context.scene
    w, h = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in points_world:
        v = world_to_camera_view(scene, cam, Vector(p))
        out.append((v.x * w, (1.0 - v.y) * h))
    return np.array(out)


@pytest.mark.parametrize(
    "k",
    [
        (1000.0, 1000.0, 640.0, 360.0, 1280, 720),  # centred
        (900.0, 900.0, 610.5, 377.25, 1280, 720),  # principal point off centre
        (800.0, 840.0, 330.0, 250.0, 640, 480),  # non-square pixels
        (1500.0, 1500.0, 520.0, 980.0, 1080, 1920),  # portrait
    ],
)
def test_blender_camera_reproduces_pinhole_intrinsics(hc, k):
    bpy = hc.bpy
    capmod = hc.mod("core.capture")
    cm = hc.mod("builders.camera_math")
    camera = hc.mod("builders.camera")
    intr = capmod.CameraIntrinsics(*k)
    cam = new_camera(bpy)
    cam.location = (0.3, -2.0, 0.4)
    cam.rotation_euler = (1.3, 0.1, 0.2)
    camera._set_lens(cam, intr)
    params = cm.camera_params(intr)
    r = bpy.context.scene.render
    r.resolution_x, r.resolution_y = params.resolution
    r.pixel_aspect_x, r.pixel_aspect_y = params.pixel_aspect
    bpy.context.view_layer.update()
    rng = np.random.default_rng(0)
    cam_pts = np.stack([rng.uniform(-0.3, 0.3, 50), rng.uniform(-0.2, 0.2, 50), rng.uniform(0.4, 2.0, 50)], 1)
    m = np.array(cam.matrix_world)
    world = (cam_pts @ cm.OPENCV_IN_BLENDER_CAMERA) @ m[:3, :3].T + m[:3, 3]
    expect = cm.project(cam_pts, intr)
    np.testing.assert_allclose(blender_project(hc, cam, world), expect, atol=1e-3)
    np.testing.assert_allclose(cm.world_to_opencv(world, m), cam_pts, atol=1e-6)  # float32 matrix_world
    back = camera.camera_intrinsics(bpy.context.scene, cam)
    np.testing.assert_allclose([back.fx, back.fy, back.cx, back.cy], k[:4], rtol=1e-6)


def test_hands_overlay_the_capture_and_follow_a_moving_camera(hc):
    bpy = hc.bpy
    camera = hc.mod("builders.camera")
    cap, _ = noisy_capture(hc, frames=12, gap=(5, 7))
    result, arms = import_hands(hc, cap, with_mesh=False)
    space = bpy.data.objects[result.camera_space]
    world_before = _world_joints(hc, arms["right"], 3)
    matched = camera.match_camera(bpy.context, space)
    assert any("no footage" in w for w in matched.warnings)
    cam = bpy.data.objects[matched.camera]
    assert space.parent == cam and bpy.context.scene.camera == cam
    # a new camera sits where the virtual camera was: the hands did not move in the world
    np.testing.assert_allclose(_world_joints(hc, arms["right"], 3), world_before, atol=1e-5)
    arm_list = list(arms.values())
    static = camera.reprojection_errors(bpy.context, arm_list, captures={a.name: cap for a in arm_list})
    for rep in static.values():
        assert len(rep.frames) == 10  # the 2 frames without a hand are not measured
        assert rep.mean_px < 0.5 and rep.fit_mean_px < 0.5, rep

    # A tracked (animated) camera: the hands ride along and end up in world space at the right pixels.
    tracked = new_camera(bpy, "tracked")
    for frame, loc, rot in ((1, (0.5, -1.0, 0.2), (1.2, 0.0, 0.3)), (12, (-0.4, 0.6, 0.9), (1.6, 0.2, -0.5))):
        tracked.location, tracked.rotation_euler = loc, rot
        tracked.keyframe_insert("location", frame=frame)
        tracked.keyframe_insert("rotation_euler", frame=frame)
    camera.match_camera(bpy.context, space, camera.MatchOptions(camera="tracked"))
    moving = camera.reprojection_errors(bpy.context, arm_list, tracked, captures={a.name: cap for a in arm_list})
    for name, rep in moving.items():
        np.testing.assert_allclose(rep.per_frame_px, static[name].per_frame_px, atol=1e-3)
    a, b = _world_joints(hc, arms["right"], 3), _world_joints(hc, arms["right"], 11)
    assert np.linalg.norm(a - world_before, axis=-1).min() > 0.1  # they moved with the camera
    assert np.linalg.norm(b - a, axis=-1).min() > 0.1


def test_each_track_overlays_its_own_keypoints(hc):
    """A second right hand (track "right_2", another person farther away) is measured against its own track,
    not the first right hand's: the rig remembers its track key."""
    bpy = hc.bpy
    camera = hc.mod("builders.camera")
    rp = hc.mod("core.rig_props")
    cap, _ = noisy_capture(hc, sides=("right",), frames=8, gap=None)
    other, _ = noisy_capture(hc, sides=("right",), frames=8, gap=None, seed=3)
    cap.hands["right_2"] = other.hands["right"]
    result, arms = import_hands(hc, cap, with_mesh=False)
    assert {key: rp.track_key(arm) for key, arm in arms.items()} == {"right": "right", "right_2": "right_2"}
    camera.match_camera(bpy.context, bpy.data.objects[result.camera_space])
    arm_list = list(arms.values())
    errors = camera.reprojection_errors(bpy.context, arm_list, captures={a.name: cap for a in arm_list})
    for rep in errors.values():
        assert len(rep.frames) == 8 and rep.mean_px < 0.5 and rep.fit_mean_px < 0.5, rep


def _world_joints(hc, arm, frame):
    hc.bpy.context.scene.frame_set(frame)
    return hc.mod("builders.camera").joints_world(arm)


def test_depth_scale_and_offset_keep_the_overlay(hc):
    bpy = hc.bpy
    camera = hc.mod("builders.camera")
    cm = hc.mod("builders.camera_math")
    cap, _ = noisy_capture(hc, frames=6, gap=None)
    result, arms = import_hands(hc, cap, with_mesh=False)
    space = bpy.data.objects[result.camera_space]
    cam = bpy.data.objects[camera.match_camera(bpy.context, space).camera]
    captures = {a.name: cap for a in arms.values()}
    before = camera.reprojection_errors(bpy.context, list(arms.values()), captures=captures)

    def depth(arm):
        return cm.world_to_opencv(_world_joints(hc, arm, 3), np.array(cam.matrix_world))[0, 2]

    z_right, z_left = depth(arms["right"]), depth(arms["left"])
    space.handcap_align.depth_scale = 1.5
    arms["left"].handcap_align.depth_offset = 0.2
    assert depth(arms["right"]) == pytest.approx(1.5 * z_right, rel=1e-5)
    mean_z = camera.mean_depth(arms["left"])
    assert depth(arms["left"]) == pytest.approx(1.5 * z_left * (mean_z + 0.2) / mean_z, rel=1e-5)
    after = camera.reprojection_errors(bpy.context, list(arms.values()), captures=captures)
    for name in after:
        np.testing.assert_allclose(after[name].per_frame_px, before[name].per_frame_px, atol=1e-3)


def frame_coded_video(path, frames, size, fps=30.0):
    """A video whose frame i is one flat colour that encodes i (to check which frame is shown)."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless writes the test video")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), frame_colour(i)[::-1], np.uint8))  # BGR
    writer.release()
    return path


def frame_colour(i):
    return np.array([(37 * i) % 200 + 40, 200 - (23 * i) % 160, 90], np.uint8)  # RGB


def read_png(bpy, path):
    img = bpy.data.images.load(str(path), check_existing=False)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1]  # top row first


def test_overlay_render_shows_the_right_footage_frame_under_the_hands(hc, tmp_path):
    bpy = hc.bpy
    camera = hc.mod("builders.camera")
    overlay = hc.mod("builders.overlay")
    size = (320, 180)
    cap, _ = noisy_capture(hc, sides=("right",), frames=8, size=size, gap=None)
    video = frame_coded_video(tmp_path / "footage.mp4", 8, size)
    cap.source = str(video)
    path = tmp_path / "cap.npz"
    hc.mod("core.capture").write_capture(path, cap)
    result, arms = import_hands(hc, cap, path=path)  # with the skinned mesh, frame_offset 1
    space = bpy.data.objects[result.camera_space]
    matched = camera.match_camera(bpy.context, space)
    cam = bpy.data.objects[matched.camera]
    clip = camera.background_clip(cam)
    assert clip is not None and tuple(clip.size) == size and clip.frame_start == 1
    assert cam.data.show_background_images and bpy.context.scene.frame_end == 8
    opts = overlay.OverlayOptions(str(tmp_path / "out"), 3, 4, draw_keypoints=True, draw_joints=True, video=True)
    out = overlay.render_overlay(bpy.context, cam, [arms["right"]], opts)
    assert [p.split("/")[-1] for p in out.files] == ["frame_000003.png", "frame_000004.png"]
    for frame, file in zip((3, 4), out.files, strict=True):
        img = read_png(bpy, file)
        t = frame - 1  # source frame shown at this scene frame
        corner = img[2:12, 2:12, :3].reshape(-1, 3).mean(0) * 255
        np.testing.assert_allclose(corner, frame_colour(t), atol=8)  # the right footage frame
        kp = cap.hands["right"].kp2d[t]
        u, v = np.round(kp[0]).astype(int)  # the wrist: a red joint on a larger green keypoint disk
        assert img[v, u, 0] > 0.8 and img[v, u, 1] < 0.3
        ring = img[v - 3 : v + 4, u - 3 : u + 4, :3].reshape(-1, 3)
        assert np.any((ring[:, 1] > 0.8) & (ring[:, 0] < 0.3))
        # the hand mesh covers its knuckles region (not footage colour there)
        mid = np.round(kp[[5, 9, 13]].mean(0) + 0.3 * (kp[0] - kp[[5, 9, 13]].mean(0))).astype(int)
        assert np.abs(img[mid[1], mid[0], :3] * 255 - frame_colour(t)).max() > 30
    cv2 = pytest.importorskip("cv2")
    cap_video = cv2.VideoCapture(out.video)
    assert int(cap_video.get(cv2.CAP_PROP_FRAME_COUNT)) == 2 and int(cap_video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    # the scene is left as it was (before Blender 5.0 the scene's own compositor tree: off and empty again)
    scene = bpy.context.scene
    if hasattr(scene, "compositing_node_group"):
        assert scene.compositing_node_group is None
    else:
        assert not scene.use_nodes and not len(scene.node_tree.nodes)
    assert not scene.render.film_transparent


def test_operators_run_headless(hc, tmp_path):
    bpy = hc.bpy
    size = (320, 180)
    cap, _ = noisy_capture(hc, sides=("right",), frames=4, size=size, gap=None)
    cap.source = str(frame_coded_video(tmp_path / "clip.mp4", 4, size))
    cap.hands["right"].frame_conf[1] = 0.1  # a doubtful detection (e.g. the crop read as the other hand)
    path = tmp_path / "cap.npz"
    hc.mod("core.capture").write_capture(path, cap)
    _, arms = import_hands(hc, cap, path=path, with_mesh=False)
    select_only(hc, [arms["right"]])
    assert bpy.ops.handcap.match_camera() == {"FINISHED"}
    assert bpy.ops.handcap.measure_overlay() == {"FINISHED"}
    props = arms["right"].handcap_align
    assert props.measured_frames == 4 and 0 <= props.reprojection_px < 1.0
    rep = hc.mod("builders.camera").reprojection_errors(bpy.context, [arms["right"]])[arms["right"].name]
    worst = int(np.argmax(rep.per_frame_px))
    assert props.worst_frame == int(rep.frames[worst]) and math.isclose(
        props.worst_px, rep.per_frame_px[worst], rel_tol=1e-5
    )
    assert 0 <= props.median_px <= props.worst_px and props.reprojection_px <= props.worst_px + 1e-6
    # the doubtful frame is counted apart; the other frames' mean is reported too
    assert rep.doubtful.tolist() == [False, True, False, False] and props.doubtful_frames == 1
    sure = np.delete(rep.per_frame_px, 1).mean()  # every frame has all 21 keypoints: mean of frame means
    assert math.isclose(props.confident_px, sure, rel_tol=1e-5) and math.isclose(rep.confident_mean_px, sure)
    out = tmp_path / "ops"
    res = bpy.ops.handcap.render_overlay(directory=str(out), use_scene_range=False, frame_start=2, frame_end=2)
    assert res == {"FINISHED"} and (out / "frame_000002.png").is_file()


def test_bad_input_gets_clear_messages(hc, tmp_path):
    bpy = hc.bpy
    camera = hc.mod("builders.camera")
    overlay = hc.mod("builders.overlay")
    cap, _ = noisy_capture(hc, sides=("right",), frames=4, size=(320, 180), gap=None)
    result, arms = import_hands(hc, cap, with_mesh=False)
    space = bpy.data.objects[result.camera_space]
    bare = new_camera(bpy, "bare")
    with pytest.raises(camera.CameraAlignError, match="no Movie Clip"):
        overlay.render_overlay(bpy.context, bare, [], overlay.OverlayOptions(str(tmp_path / "x")))
    square = frame_coded_video(tmp_path / "square.mp4", 2, (200, 200))
    with pytest.raises(camera.CameraAlignError, match="another shape"):
        camera.match_camera(bpy.context, space, camera.MatchOptions(clip_path=str(square)))
    assert space.parent is None  # nothing was changed
    with pytest.raises(camera.CameraAlignError, match="footage not found"):
        camera.match_camera(bpy.context, space, camera.MatchOptions(clip_path=str(tmp_path / "missing.mp4")))
    with pytest.raises(camera.CameraAlignError, match="no camera"):
        camera.reprojection_errors(bpy.context, [arms["right"]])
    bpy.context.scene.camera = bare
    with pytest.raises(camera.CameraAlignError, match="no capture file"):
        camera.reprojection_errors(bpy.context, [arms["right"]])  # imported from memory: no 2D keypoints to read
    with pytest.raises(camera.CameraAlignError, match="not a camera object"):
        camera.match_camera(bpy.context, space, camera.MatchOptions(camera=space.name))
    bigger = frame_coded_video(tmp_path / "big.mp4", 2, (640, 360))
    warned = camera.match_camera(bpy.context, space, camera.MatchOptions(clip_path=str(bigger)))
    assert any("same shape" in w for w in warned.warnings)
    assert math.isclose(bpy.data.objects[warned.camera].data.lens, cap.intrinsics.fx * 36 / 320, rel_tol=1e-6)


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_footage_overlay_with_static_and_moving_cameras(hc, counting_capture):
    """A real capture seen through the matched camera lands where the capture's fit projects (the error
    against the 2D keypoints is the fit's residual), and through a moving camera its world-space joints
    project onto the same pixels."""
    bpy = hc.bpy
    camera = hc.mod("builders.camera")
    video, path = counting_capture
    cap = hc.mod("core.capture").read_capture(path)
    result, arms = import_hands(hc, cap, path=path, with_mesh=False)
    space = bpy.data.objects[result.camera_space]
    matched = camera.match_camera(bpy.context, space, camera.MatchOptions(clip_path=str(video)))
    assert matched.clip is not None and matched.warnings == []
    arm_list = list(arms.values())
    static = camera.reprojection_errors(bpy.context, arm_list)
    cm = hc.mod("builders.camera_math")
    for name, rep in static.items():
        print(f"{name}: {rep.mean_px:.2f} px mean, fit {rep.fit_mean_px:.3f} px, {len(rep.frames)} frames")
        # Through the matched camera the rig lands exactly where the capture's own fit projects ...
        assert rep.fit_mean_px < 0.05, rep
        # ... so the error against the detected 2D keypoints is the fit's own 2D residual, nothing added.
        track = cap.hands[bpy.data.objects[name]["handcap_side"]]
        own = np.linalg.norm(cm.project(track.kp3d.astype(float), cap.intrinsics) - track.kp2d, axis=-1)
        assert rep.mean_px == pytest.approx(own[track.valid].mean(), abs=0.05)
        # The issue's < 2 px over the whole clip, each hand: measured 1.82 px left, 1.69 px right (1.20 px on the
        # right hand's confident frames). The right hand's 6 doubtful frames (180-186: the hands are entangled
        # and its crop reads as the other hand, so its 2D keypoints are not of this hand) are reported apart.
        assert len(rep.frames) >= 209
        assert rep.mean_px < 2.0 and rep.confident_mean_px < 2.0, rep
        if track.side == "left":
            assert not rep.doubtful.any(), rep
        else:
            assert 1 <= rep.doubtful.sum() <= 8, rep
    moving = new_camera(bpy, "handheld")
    last = result.scene_frames[1]
    for frame, loc, rot in ((1, (0.2, -0.5, 0.1), (1.4, 0.0, 0.2)), (last, (-0.3, 0.4, 0.5), (1.7, 0.1, -0.4))):
        moving.location, moving.rotation_euler = loc, rot
        moving.keyframe_insert("location", frame=frame)
        moving.keyframe_insert("rotation_euler", frame=frame)
    camera.match_camera(bpy.context, space, camera.MatchOptions(camera="handheld", clip_path=str(video)))
    follow = camera.reprojection_errors(bpy.context, arm_list, moving)
    for name, rep in follow.items():
        np.testing.assert_allclose(rep.per_frame_px, static[name].per_frame_px, atol=1e-3)
