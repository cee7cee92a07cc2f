"""Time ``import_capture`` for a long two-hand capture inside bpy (target: under 3 s for 1800 frames x 2 hands).

Run: .venv/bin/python benchmarks/bench_import.py [--frames 1800] [--repeat 3]

Builds a synthetic capture with the built-in hand model (smooth random poses, 5 % of
frames without a hand), writes it to a temporary file, then imports it into an empty
scene and prints the wall time of each import (file read included) and its parts, then
the largest distance between the imported rig (bone heads, Armature-deformed mesh) and
``core.handmodel.forward`` over sampled frames.
Uses the package from the repo (editable install), not an installed extension.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_capture(frames: int, seed: int = 0):
    from handcap.core import anatomy, handmodel
    from handcap.core.capture import CameraIntrinsics, Capture, HandTrack

    rng = np.random.default_rng(seed)
    hands = {}
    for k, side in enumerate(("right", "left")):
        data = handmodel.load_builtin(side)
        beta = rng.normal(scale=0.8, size=10)
        lim = anatomy.default_joint_limits(side)
        lo, hi = np.maximum(lim[..., 0], -1.2), np.minimum(lim[..., 1], 1.2)
        phase = rng.uniform(0, 2 * np.pi, size=(16, 3))
        speed = rng.uniform(0.02, 0.1, size=(16, 3))
        wave = 0.5 + 0.5 * np.sin(np.arange(frames)[:, None, None] * speed + phase)
        theta = anatomy.from_local(lo + (hi - lo) * wave, data.joint_frames)
        theta[:, 0] = np.cumsum(rng.normal(scale=0.02, size=(frames, 3)), axis=0)
        transl = np.array([0.12 * (1 - 2 * k), 0.0, 0.5]) + np.cumsum(rng.normal(scale=0.002, size=(frames, 3)), 0)
        kp = handmodel.forward(data, theta, beta, transl).keypoints
        valid = rng.random(frames) > 0.05
        hands[side] = HandTrack(
            side=side,
            theta=theta.astype(np.float32),
            beta=beta.astype(np.float32),
            transl=transl.astype(np.float32),
            kp2d=np.zeros((frames, 21, 2), np.float32),
            kp3d=kp.astype(np.float32),
            frame_conf=valid.astype(np.float32),
            kp_conf=np.ones((frames, 21), np.float32),
            valid=valid,
            rest_joints=handmodel.rest_joints(data, beta).astype(np.float32),
        )
    return Capture(
        source="bench.mp4",
        frames=np.arange(frames, dtype=np.int64),
        fps=30.0,
        image_size=(1920, 1080),
        intrinsics=CameraIntrinsics.default(1920, 1080),
        hand_model=handmodel.BUILTIN_ID,
        hands=hands,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import bpy

    from handcap.builders import importer, keys
    from handcap.core.capture import write_capture

    cap = make_capture(args.frames)
    # Time the bulk key writing separately (it is the part that grows with the clip length).
    key_time = [0.0]
    write_channels = keys.write_channels

    def timed_write(*a, **kw):
        t0 = time.perf_counter()
        write_channels(*a, **kw)
        key_time[0] += time.perf_counter() - t0

    keys.write_channels = timed_write
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.npz"
        write_capture(path, cap)
        print(f"capture: {args.frames} frames x 2 hands, {path.stat().st_size / 1e6:.1f} MB")
        times = []
        for i in range(args.repeat):
            bpy.ops.wm.read_homefile(use_empty=True)
            key_time[0] = 0.0
            t0 = time.perf_counter()
            result = importer.import_capture(bpy.context, path)
            dt = time.perf_counter() - t0
            times.append(dt)
            n_keys = sum(
                len(fc.keyframe_points)
                for name in result.actions.values()
                for fc in bpy.data.actions[name].layers[0].strips[0].channelbags[0].fcurves
            )
            print(f"run {i + 1}: import {dt:.3f} s (writing {n_keys} keys: {key_time[0]:.3f} s)")
        print(f"best import time: {min(times):.3f} s for {args.frames} frames x 2 hands (target < 3 s)")
        accuracy(bpy, cap, result)


def accuracy(bpy, cap, result, samples: int = 12) -> None:
    from handcap.core import handmodel, naming

    space = np.array(bpy.data.objects[result.camera_space].matrix_world)
    joint_err = vert_err = 0.0
    for side, arm_name in result.armatures.items():
        arm = bpy.data.objects[arm_name]
        mesh = bpy.data.objects[result.meshes[side]]
        track = cap.hands[side]
        valid = np.flatnonzero(track.valid)
        picks = valid[np.linspace(0, len(valid) - 1, samples).astype(int)]
        f64 = [np.asarray(a, np.float64) for a in (track.theta[picks], track.beta, track.transl[picks])]
        ref = handmodel.forward(handmodel.load_builtin(side), *f64)
        for i, t in enumerate(picks):
            bpy.context.scene.frame_set(result.frame_offset + int(cap.frames[t]))
            mw = np.array(arm.matrix_world)
            heads = np.array([arm.pose.bones[n].head for n in naming.joint_bones(side)]) @ mw[:3, :3].T + mw[:3, 3]
            joint_err = max(joint_err, np.abs(heads - (ref.joints[i] @ space[:3, :3].T + space[:3, 3])).max())
            ev = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
            co = np.empty(len(ev.vertices) * 3, np.float32)
            ev.vertices.foreach_get("co", co)
            mm = np.array(mesh.matrix_world)
            verts = co.reshape(-1, 3) @ mm[:3, :3].T + mm[:3, 3]
            vert_err = max(vert_err, np.abs(verts - (ref.vertices[i] @ space[:3, :3].T + space[:3, 3])).max())
    print(f"max |bone head - model joint| over {samples} frames x 2 hands: {joint_err * 1e3:.5f} mm")
    print(f"max |deformed mesh vertex - model LBS vertex|: {vert_err * 1e3:.5f} mm")


if __name__ == "__main__":
    main()
