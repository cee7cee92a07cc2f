"""Non-destructive smoothing of imported hands, inside bpy with the installed extension."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO, installed, shared_path

pytestmark = pytest.mark.blender

T = 48
_REAL: dict = {}  # the real capture is made once per session, shared with test_blender_camera
GAP = (20, 23)  # frames [20, 23) lost: bridged by gap filling


def noisy_capture(hc, path=None, sides=("right", "left"), frames=T, seed=0, size=(1280, 720), gap=GAP):
    """A capture posed by the built-in model with smooth truth + per-frame noise (rotations ~1.5 deg,
    translation ~1.5 mm across, ~6 mm in depth), a short gap, and 2D keypoints = the fitted 3D
    keypoints projected through the intrinsics. Returns (capture, truth kp3d per side)."""
    hm = hc.mod("core.handmodel")
    capmod = hc.mod("core.capture")
    anatomy = hc.mod("core.anatomy")
    quat = hc.mod("core.quat")
    rng = np.random.default_rng(seed)
    k = capmod.CameraIntrinsics.default(*size)
    hands, truth = {}, {}
    time = np.arange(frames) / 30.0
    for n, side in enumerate(sides):
        data = hm.load_builtin(side)
        beta = rng.normal(scale=0.5, size=10)
        lim = anatomy.default_joint_limits(side)
        lo, hi = np.maximum(lim[..., 0], -1.0), np.minimum(lim[..., 1], 1.0)
        phase = rng.uniform(0, 2 * np.pi, size=(16, 3))
        local = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * time[:, None, None] + phase))
        theta = anatomy.from_local(local, data.joint_frames)
        theta[:, 0] = np.array([1.3, 0.2, 0.3 - 0.6 * n]) + 0.3 * np.sin(2 * np.pi * 0.3 * time)[:, None]
        transl = np.stack([np.full(frames, 0.1 - 0.2 * n), 0.02 * np.sin(2 * np.pi * 0.4 * time), 0.6 + 0.0 * time], 1)
        ref = hm.forward(data, theta, beta, transl)
        noisy_theta = quat.log(quat.mul(quat.exp(theta), quat.exp(rng.normal(scale=0.026, size=theta.shape))))
        noisy_transl = transl + rng.normal(size=transl.shape) * np.array([0.0015, 0.0015, 0.006])
        out = hm.forward(data, noisy_theta, beta, noisy_transl)
        kp3d = out.keypoints
        kp2d = kp3d[..., :2] / kp3d[..., 2:] * np.array([k.fx, k.fy]) + np.array([k.cx, k.cy])
        valid = np.ones(frames, bool)
        if gap is not None:
            valid[gap[0] : gap[1]] = False
        hands[side] = capmod.HandTrack(
            side=side,
            theta=np.where(valid[:, None, None], noisy_theta, 0).astype(np.float32),
            beta=beta.astype(np.float32),
            transl=np.where(valid[:, None], noisy_transl, 0).astype(np.float32),
            kp2d=kp2d.astype(np.float32),
            kp3d=kp3d.astype(np.float32),
            frame_conf=np.where(valid, 0.9, 0.0).astype(np.float32),
            kp_conf=np.ones((frames, 21), np.float32),
            valid=valid,
            rest_joints=out.rest_joints[0].astype(np.float32),
        )
        truth[side] = ref.keypoints
    cap = capmod.Capture(
        source="/footage/counting.mp4",
        frames=np.arange(frames, dtype=np.int64),
        fps=30.0,
        image_size=size,
        intrinsics=k,
        hand_model="builtin-v1",
        hands=hands,
    )
    if path is not None:
        capmod.write_capture(path, cap)
        cap = capmod.read_capture(path)
    return cap, truth


def import_hands(hc, cap, path=None, **options):
    importer = hc.mod("builders.importer")
    result = importer.import_capture(hc.bpy.context, path or cap, importer.ImportOptions(frame_offset=1, **options))
    return result, {side: hc.bpy.data.objects[name] for side, name in result.armatures.items()}


def bone_heads(hc, arm, frames, bones):
    """(len(frames), len(bones), 3) evaluated pose-bone heads in armature space (Blender's own evaluation)."""
    scene = hc.bpy.context.scene
    out = []
    for f in frames:
        scene.frame_set(int(f))
        out.append([tuple(arm.pose.bones[b].head) for b in bones])  # copy: .head is a live view
    return np.array(out, dtype=np.float64)


def pose_keys(action, data_path, index):
    curves = installed("builders.compat").all_fcurves(action)
    fc = next(c for c in curves if c.data_path == data_path and c.array_index == index)
    co = np.empty(2 * len(fc.keyframe_points), np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2), fc


def select_only(hc, objs):
    bpy = hc.bpy
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = objs[0]


def test_smoothing_in_blender_matches_the_capture_pipeline_and_lowers_jitter(hc):
    bpy = hc.bpy
    naming = hc.mod("core.naming")
    cs = hc.mod("core.capture_smoothing")
    smoothing = hc.mod("core.smoothing")
    cap, truth = noisy_capture(hc)
    _, arms = import_hands(hc, cap, with_mesh=False)
    select_only(hc, [arms["right"], arms["left"]])
    arms["right"].handcap_smoothing.sigma = 2.0
    assert bpy.ops.handcap.smooth_motion() == {"FINISHED"}
    frames = np.arange(T)
    for side, arm in arms.items():
        props = arm.handcap_smoothing
        assert props.is_smoothed and props.sigma == 2.0  # the active hand's settings were shared
        assert props.jitter_after < props.jitter_before / 5, (props.jitter_before, props.jitter_after)
        assert props.filled_frames == GAP[1] - GAP[0]
        raw = props.raw_action
        assert raw is not None and raw.name.startswith(".") and props.raw_source == arm.animation_data.action
        # Blender's evaluated bones equal the capture-file pipeline (filters are invariant to bone axes).
        expect, result = cs.smooth_track(cap.hands[side], smoothing.SmoothingSettings(sigma=2.0), cap.fps)
        got = bone_heads(hc, arm, frames + 1, naming.joint_bones(side))
        kp = hc.mod("core.keypoints")
        joints16 = np.argsort(kp.MANO_TO_KEYPOINTS)[:16]  # keypoint rows of the 16 MANO joints
        np.testing.assert_allclose(got, expect.kp3d[:, joints16], atol=3e-4)
        assert props.deviation_mean == pytest.approx(result.report.deviation_mean_mm, rel=0.05)
        # and it is closer to the truth than the raw capture was
        err = np.linalg.norm(got - truth[side][:, joints16], axis=-1).mean()
        raw_err = np.linalg.norm(cap.hands[side].kp3d - truth[side], axis=-1)[cap.hands[side].valid].mean()
        assert err < 0.8 * raw_err
        # the gap is keyed now, its visibility stays as captured
        keys, _ = pose_keys(
            arm.animation_data.action, f'pose.bones["{naming.joint_bone(5, side)}"].rotation_quaternion', 0
        )
        assert set(range(GAP[0] + 1, GAP[1] + 1)) <= set(keys[:, 0].astype(int))
        vis, _ = pose_keys(arm.animation_data.action, '["handcap_visible"]', 0)
        assert not vis[GAP[0] : GAP[1], 1].any()


def test_resmoothing_starts_from_raw_and_reset_restores_it(hc):
    bpy = hc.bpy
    naming = hc.mod("core.naming")
    builder = hc.mod("builders.smooth")
    cap, _ = noisy_capture(hc, sides=("right",))
    _, arms = import_hands(hc, cap, with_mesh=False)
    arm = arms["right"]
    path = f'pose.bones["{naming.joint_bone(2, "right")}"].rotation_quaternion'
    raw_keys, _ = pose_keys(arm.animation_data.action, path, 1)
    select_only(hc, [arm])
    arm.handcap_smoothing.sigma = 1.0
    bpy.ops.handcap.smooth_motion()
    light, _ = pose_keys(arm.animation_data.action, path, 1)
    arm.handcap_smoothing.sigma = 4.0
    bpy.ops.handcap.smooth_motion()
    heavy, _ = pose_keys(arm.animation_data.action, path, 1)
    arm.handcap_smoothing.sigma = 1.0
    bpy.ops.handcap.smooth_motion()
    again, _ = pose_keys(arm.animation_data.action, path, 1)
    np.testing.assert_array_equal(again, light)  # from raw every time, not cumulative
    assert np.abs(heavy[:, 1] - light[:, 1]).max() > 1e-3
    assert bpy.ops.handcap.reset_smoothing() == {"FINISHED"}
    restored, fc = pose_keys(arm.animation_data.action, path, 1)
    np.testing.assert_array_equal(restored, raw_keys)
    assert fc.keyframe_points[0].interpolation == "LINEAR"
    assert not arm.handcap_smoothing.is_smoothed
    with pytest.raises(builder.SmoothMotionError, match="nothing to reset"):
        builder.reset_smoothing(_fresh(hc))


def _fresh(hc):
    cap, _ = noisy_capture(hc, sides=("left",), frames=10, gap=None)
    return import_hands(hc, cap, with_mesh=False)[1]["left"]


def test_key_reduction_writes_fewer_linear_keys(hc):
    naming = hc.mod("core.naming")
    builder = hc.mod("builders.smooth")
    smoothing = hc.mod("core.smoothing")
    cap, _ = noisy_capture(hc, sides=("right",), gap=None)
    _, arms = import_hands(hc, cap, with_mesh=False)
    arm = arms["right"]
    report = builder.smooth_armature(arm, smoothing.SmoothingSettings(reduce_keys=True, key_tolerance_deg=1.0))
    assert report.keys_after < 0.6 * report.keys_before
    keys, fc = pose_keys(
        arm.animation_data.action, f'pose.bones["{naming.joint_bone(4, "right")}"].rotation_quaternion', 0
    )
    assert len(keys) < T and {k.interpolation for k in fc.keyframe_points} == {"LINEAR"}
    assert arm.handcap_smoothing.keys_after == report.keys_after


def test_raw_capture_survives_save_and_reload(hc, tmp_path):
    bpy = hc.bpy
    cap, _ = noisy_capture(hc, sides=("right",), frames=20, gap=None)
    _, arms = import_hands(hc, cap, with_mesh=False)
    name = arms["right"].name
    hc.mod("builders.smooth").smooth_armature(arms["right"])
    blend = tmp_path / "smoothed.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    arm = bpy.data.objects[name]
    assert arm.handcap_smoothing.is_smoothed and arm.handcap_smoothing.raw_action is not None
    hc.mod("builders.smooth").reset_smoothing(arm)


def test_bad_input_gets_clear_messages(hc):
    bpy = hc.bpy
    builder = hc.mod("builders.smooth")
    smoothing = hc.mod("core.smoothing")
    cap, _ = noisy_capture(hc, sides=("right",), frames=8, gap=None)
    cap.hands["right"].valid[:] = False  # the hand was never found
    _, arms = import_hands(hc, cap, with_mesh=False)
    arm = arms["right"]
    with pytest.raises(builder.SmoothMotionError, match="nothing captured"):
        builder.smooth_armature(arm)
    assert arm.handcap_smoothing.raw_action is None  # nothing was changed
    select_only(hc, [arm])
    with pytest.raises(RuntimeError, match="nothing captured"):  # operators report errors as RuntimeError here
        bpy.ops.handcap.smooth_motion()
    with pytest.raises(smoothing.SmoothingError, match="window"):
        builder.smooth_armature(arm, smoothing.SmoothingSettings(method="savgol", window=4))
    empty = bpy.data.objects.new("not a hand", None)
    bpy.context.scene.collection.objects.link(empty)
    select_only(hc, [empty])
    assert not bpy.types.HANDCAP_OT_smooth_motion.poll(bpy.context)
    with pytest.raises(builder.SmoothMotionError, match="not a HandCap hand"):
        builder.smooth_armature(empty)


def test_new_hands_are_smoothed_unless_too_short_and_failures_are_returned(hc):
    """What Capture Hands and convert run after an import: hands keyed on 3+ frames get their default
    smoothing; a one-frame hand is left raw; a hand that cannot be smoothed is named with the reason and
    keeps its keys."""
    builder = hc.mod("builders.smooth")
    cap, _ = noisy_capture(hc, frames=8, gap=None)
    result, arms = import_hands(hc, cap, with_mesh=False)
    arms["left"].animation_data.action = None  # e.g. removed by the user or a script
    failed = builder.smooth_new_hands(result.armatures, result.keyed_frames)
    assert list(failed) == [arms["left"].name] and "no action" in failed[arms["left"].name]
    assert arms["right"].handcap_smoothing.is_smoothed and not arms["left"].handcap_smoothing.is_smoothed
    photo, _ = noisy_capture(hc, sides=("right",), frames=1, gap=None)
    result, arms = import_hands(hc, photo, with_mesh=False)
    assert builder.smooth_new_hands(result.armatures, result.keyed_frames) == {}
    assert not arms["right"].handcap_smoothing.is_smoothed and builder.raw_action(arms["right"], create=False) is None


@pytest.fixture
def counting_capture(tmp_path_factory):
    return counting_capture_files(tmp_path_factory)


def counting_capture_files(tmp_path_factory):
    """(video, capture path): the whole shared two-hands clip (210 frames) captured by the real command."""
    video = shared_path("videos", "two_hands_counting_720p.mp4")
    if importlib.util.find_spec("handcap.cli.capture") is None:
        pytest.skip("the capture command (python -m handcap capture) is not in this build")
    if "path" not in _REAL:
        out = tmp_path_factory.mktemp("counting") / "counting.npz"
        cmd = [sys.executable, "-m", "handcap", "capture", str(video), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        _REAL["path"] = out
    return video, _REAL["path"]


@pytest.mark.shared_data
@pytest.mark.slow
def test_default_smoothing_on_real_footage(hc, counting_capture):
    """The issue's target with the default settings on the whole real clip: jitter down at least 5x, joints
    within 3 mm of the raw capture on average, each hand. Measured 2026-12-02: 5.12x / 2.81 mm right,
    6.20x / 2.93 mm left, the same as ``benchmarks/bench_smoothing.py --capture``."""
    _, path = counting_capture
    cap = hc.mod("core.capture").read_capture(path)
    assert set(cap.hands) == {"right", "left"}
    _, arms = import_hands(hc, cap, path=path, with_mesh=False)
    for side, arm in arms.items():
        report = hc.mod("builders.smooth").smooth_armature(arm)
        print(f"{side}: {report.summary()}")
        assert report.jitter_reduction >= 5.0, report
        assert report.deviation_mean_mm < 3.0, report


def test_smoothing_and_reset_keep_the_keys_of_bridged_frames(hc):
    """A capture's bridged gap (keyed, not visible) keeps its keys through smoothing without gap filling and
    through a reset: smoothing loses no key the import wrote."""
    naming = hc.mod("core.naming")
    builder = hc.mod("builders.smooth")
    smoothing = hc.mod("core.smoothing")
    cap, _ = noisy_capture(hc, sides=("right",), gap=None)
    track = cap.hands["right"]
    track.valid = track.valid.copy()
    track.valid[20:23] = False
    track.bridged = ~track.valid
    _, arms = import_hands(hc, cap, with_mesh=False)
    arm = arms["right"]
    path = f'pose.bones["{naming.joint_bone(0, "right")}"].location'
    raw, _ = pose_keys(arm.animation_data.action, path, 2)
    bridged = {1 + f for f in (20, 21, 22)}  # import_hands keys source frame f at scene frame 1 + f
    assert bridged <= set(raw[:, 0].astype(int).tolist())
    builder.smooth_armature(arm, smoothing.SmoothingSettings(fill_gaps=False))
    after, _ = pose_keys(arm.animation_data.action, path, 2)
    assert bridged <= set(after[:, 0].astype(int).tolist()) and len(after) == len(raw)
    on_gap = np.isin(after[:, 0].astype(int), list(bridged))
    np.testing.assert_allclose(after[on_gap], raw[np.isin(raw[:, 0].astype(int), list(bridged))], atol=1e-6)
    assert np.abs(after[~on_gap, 1] - raw[~np.isin(raw[:, 0].astype(int), list(bridged)), 1]).max() > 1e-4
    builder.reset_smoothing(arm)
    restored, _ = pose_keys(arm.animation_data.action, path, 2)
    np.testing.assert_array_equal(restored, raw)
