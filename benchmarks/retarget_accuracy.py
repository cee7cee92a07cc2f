"""Retargeting accuracy and speed on a Rigify rig (generated here by bpy's Rigify) and a Mixamo-named rig,
plus export round-trip errors (FBX, BVH, glTF).

    .venv/bin/python benchmarks/retarget_accuracy.py [--frames 60] [--json]

Accuracy: angle between each captured finger segment's world direction and the rig's (Rigify: the DEF-
bones the mesh follows), on every keyed frame of each hand of a synthetic two-hand clip with varied finger
poses.
Round trip: world rotation of every pose bone after export + re-import vs. before (BVH: relative to rest,
as BVH stores no bone roll). Needs bpy 5.0.1; no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/retarget_rigs.py holds the synthetic clip and rig builders


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60, help="frames of the synthetic clip")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import bpy
    import numpy as np

    from handcap.builders import export as ex
    from handcap.builders.importer import ImportOptions, import_capture
    from handcap.builders.retarget import retarget
    from handcap.core.retarget_suggest import suggest_mapping
    from tests import retarget_rigs as R

    out: dict = {"frames": args.frames, "rigs": {}, "round_trip_deg": {}}
    for rig_kind in ("rigify", "mixamo"):
        bpy.ops.wm.read_homefile(use_empty=True)
        rig_name = R.generate_rigify_rig(bpy) if rig_kind == "rigify" else R.build_mixamo_rig(bpy)
        rig = bpy.data.objects[rig_name]
        imported = import_capture(bpy.context, R.synthetic_capture(args.frames), ImportOptions(with_mesh=False))
        sources = [bpy.data.objects[imported.armatures[s]] for s in ("right", "left")]
        mapping = suggest_mapping({b.name: b.parent.name if b.parent else None for b in rig.data.bones}).mapping
        t0 = time.perf_counter()
        result = retarget(bpy.context, sources, rig, mapping)
        seconds = time.perf_counter() - t0
        # Each hand on its own keyed frames (between keys both rigs interpolate, each in its own bone axes).
        finger_pairs = [p for p in mapping.pairs if p.key != "hand"]
        err = np.concatenate(
            [
                R.direction_errors_deg(bpy, sources, rig, mapping, result.frames[side])[
                    :, [i for i, p in enumerate(finger_pairs) if p.side == side]
                ].ravel()
                for side in ("right", "left")
            ]
        )
        frames = sorted(set(result.frames["right"]) | set(result.frames["left"]))
        out["rigs"][rig_kind] = {
            "bones": len(rig.data.bones),
            "keyed_bones": len(result.bones),
            "max_deg": float(err.max()),
            "mean_deg": float(err.mean()),
            "ms_per_frame": 1000.0 * seconds / len(frames),
        }

    bpy.ops.wm.read_homefile(use_empty=True)
    n = min(args.frames, 30)
    imported = import_capture(bpy.context, R.synthetic_capture(n, invalid_right=()), ImportOptions(with_mesh=True))
    arms = [bpy.data.objects[imported.armatures[s]] for s in ("right", "left")]
    frames = list(range(1, n + 1))
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("fbx", "bvh", "glb"):
            res = ex.export_armatures(bpy.context, arms, Path(tmp) / "hands", ex.ExportOptions(format=fmt))
            worst = 0.0
            for arm, path in zip(arms, res.files if fmt == "bvh" else res.files * 2, strict=True):
                before = set(bpy.data.objects.keys())
                if fmt == "fbx":
                    bpy.ops.import_scene.fbx(filepath=path, anim_offset=0.0)
                elif fmt == "bvh":
                    bpy.ops.import_anim.bvh(filepath=path, axis_forward="Y", axis_up="Z", frame_start=1)
                else:
                    bpy.ops.import_scene.gltf(filepath=path)
                names = {b.name for b in arm.data.bones}
                new = [bpy.data.objects[o] for o in set(bpy.data.objects.keys()) - before]
                (imp,) = [o for o in new if o.type == "ARMATURE" and {b.name for b in o.data.bones} == names]
                rel = fmt == "bvh"
                want = R.world_pose_rotations(bpy, arm, frames, rel)
                got = R.world_pose_rotations(bpy, imp, frames, rel)
                worst = max(worst, max(float(R.rotation_angle_deg(got[b], want[b]).max()) for b in want))
            out["round_trip_deg"][fmt] = worst

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"synthetic clip: {args.frames} frames, both hands (right hand lost on one frame)")
        for kind, r in out["rigs"].items():
            print(
                f"{kind:7s} ({r['bones']} bones, {r['keyed_bones']} keyed): finger direction error "
                f"max {r['max_deg']:.4f} deg, mean {r['mean_deg']:.4f} deg; {r['ms_per_frame']:.1f} ms/frame"
            )
        for fmt, worst in out["round_trip_deg"].items():
            print(f"round trip {fmt}: worst bone rotation error {worst:.4f} deg over {n} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
