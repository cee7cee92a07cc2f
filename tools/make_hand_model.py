"""Generate the built-in hand model asset (assets/hand_builtin.safetensors).

Usage:
    .venv/bin/python tools/make_hand_model.py            # (re)write the asset
    .venv/bin/python tools/make_hand_model.py --check    # rebuild in memory and compare (see TOLERANCE)

Steps (details and sources in docs/hand-model.md):
1. skeleton from published hand anthropometry (handmodel_skeleton.py);
2. implicit surface of smooth-unioned round cones and ellipsoids (handmodel_sdf.py),
   meshed with surface nets and relaxed onto the surface (handmodel_mesh.py);
3. skinning weights: each vertex starts on the bone of the primitive it lies on, then
   the weights are diffused over the mesh so joints bend smoothly;
4. shape space: for each of the 10 named measures the skeleton and surface are rebuilt
   at +-1 standard deviation, the template vertices are carried along their bones and
   snapped onto the new surface, and the central difference is the shape direction
   (vertices and joints alike).
Only the right hand is stored; the left hand is its mirror image (core.handmodel).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from handmodel_exact import argmin_robust, dot, matmul, norm  # noqa: E402
from handmodel_mesh import is_watertight, neighbour_mean, neighbours, project, relax, surface_nets  # noqa: E402
from handmodel_sdf import Ellipsoid, HandSDF  # noqa: E402
from handmodel_skeleton import CHAIN, FINGERS, SHAPE_NAMES, SHAPE_SD, skeleton  # noqa: E402

from handcap.core.keypoints import MANO_PARENTS  # noqa: E402
from handcap.core.tensorfile import load_tensors, save_tensors  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ASSET = REPO / "assets" / "hand_builtin.safetensors"
VERSION = "builtin-v1"
GRID = 0.0036  # surface-nets cell size (metres): about 4000 vertices
DIFFUSION_STEPS = 8


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points p to segment a-b and the clamped parameter t in [0, 1]."""
    u = b - a
    t = np.clip(dot(p - a, u) / dot(u, u), 0.0, 1.0)
    return norm(p - a - t[:, None] * u, axis=1), t


def bone_ends(joints: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """(16, 2, 3) start and end of the bone of every joint (the wrist bone ends at the middle MCP)."""
    ends = np.zeros((16, 2, 3))
    ends[0] = joints[0], joints[4]
    for i, finger in enumerate(FINGERS):
        chain = CHAIN[finger]
        for k, joint in enumerate(chain):
            ends[joint] = joints[joint], (joints[chain[k + 1]] if k < 2 else tips[i])
    return ends


def mesh(sdf: HandSDF, joints: np.ndarray, tips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Watertight triangle mesh of the surface. Tries a few grid offsets until the mesh is closed
    and manifold (surface nets can pinch where two sheets pass through one cell)."""
    pts = np.concatenate([joints, tips])
    lo = pts.min(axis=0) - 0.04
    hi = pts.max(axis=0) + 0.04
    for frac in (0.0, 0.25, 0.5, 0.75, 0.125, 0.375, 0.625, 0.875):
        verts, faces = surface_nets(sdf, lo + frac * GRID, hi + frac * GRID, GRID)
        if is_watertight(faces):
            return relax(sdf, verts, faces, iterations=12), faces.astype(np.int32)
    raise RuntimeError("no grid offset gave a watertight mesh; change GRID")


def skin_weights(
    sdf: HandSDF, verts: np.ndarray, faces: np.ndarray, joints: np.ndarray, tips: np.ndarray
) -> np.ndarray:
    """(V, 16) smooth skinning weights, rows summing to 1."""
    prims = sdf.primitives
    nearest = argmin_robust(sdf.parts(verts), axis=1)
    finger_of = {}
    for i, finger in enumerate(FINGERS):
        for prim in sdf.fingers[i]:
            finger_of[id(prim)] = finger
    ends = bone_ends(joints, tips)
    webs = {id(web[0]): web for web in sdf.webs}
    w = np.zeros((len(verts), 16))
    for p_idx, prim in enumerate(prims):
        sel = np.flatnonzero(nearest == p_idx)
        if not len(sel):
            continue
        v = verts[sel]
        finger = finger_of.get(id(prim))
        if finger is None and prim.owner == 13 and isinstance(prim, Ellipsoid):
            finger = "thumb"  # thenar eminence rides on the thumb metacarpal
        if finger is not None:
            chain = CHAIN[finger]
            dist = np.stack([_segment_distance(v, *ends[j])[0] for j in chain], axis=1)
            w[sel, np.asarray(chain)[argmin_robust(dist, axis=1)]] = 1.0
        elif id(prim) in webs:
            # A skin web blends linearly between the two joints it hangs from.
            _, ja, jb = webs[id(prim)]
            _, t = _segment_distance(v, prim.a, prim.b)
            w[sel, ja] += 1.0 - t
            w[sel, jb] += t
        else:
            w[sel, prim.owner] = 1.0
    adj = neighbours(faces, len(verts))
    for _ in range(DIFFUSION_STEPS):
        w = 0.5 * w + 0.5 * neighbour_mean(w, adj)
    w[w < 1e-4] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def _rotation_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit u to unit v."""
    axis = np.cross(u, v)
    s, c = float(norm(axis)), float(dot(u, v))
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * matmul(kx, kx)


def carry(verts: np.ndarray, weights: np.ndarray, old, new) -> np.ndarray:
    """Move template vertices from skeleton ``old`` to ``new``: finger parts ride their bones
    (rotated and stretched along the bone), the palm (joint 0) follows the joints by
    inverse-distance interpolation. The caller snaps the result onto the new surface."""
    ea, eb = bone_ends(old.joints, old.tips), bone_ends(new.joints, new.tips)
    disp = np.zeros_like(verts)
    for j in range(1, 16):
        a, b = ea[j]
        a2, b2 = eb[j]
        u, u2 = (b - a) / norm(b - a), (b2 - a2) / norm(b2 - a2)
        scale = norm(b2 - a2) / norm(b - a)
        q = verts - a
        along = dot(q, u)
        perp = q - along[:, None] * u
        moved = a2 + scale * along[:, None] * u2 + matmul(perp, _rotation_between(u, u2).T)
        disp += weights[:, j : j + 1] * (moved - verts)
    ctrl = np.concatenate([old.joints, old.tips])
    ctrl_disp = np.concatenate([new.joints, new.tips]) - ctrl
    d = np.maximum(norm(verts[:, None] - ctrl[None], axis=2), 1e-3)
    k = 1.0 / (d * d * d)
    disp += weights[:, :1] * matmul(k, ctrl_disp) / k.sum(axis=1, keepdims=True)
    return verts + disp


def shape_space(verts: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3, 10) vertex and (16, 3, 10) joint directions, one standard deviation each."""
    base = skeleton()
    vdirs = np.zeros(verts.shape + (10,))
    jdirs = np.zeros((16, 3, 10))
    for k in range(10):
        res = []
        for sign in (1.0, -1.0):
            params = np.zeros(10)
            params[k] = sign
            sk = skeleton(params)
            moved = project(HandSDF(sk), carry(verts, weights, base, sk), iterations=6)
            res.append((moved, sk.joints))
        vdirs[..., k] = (res[0][0] - res[1][0]) / 2
        jdirs[..., k] = (res[0][1] - res[1][1]) / 2
    return vdirs, jdirs


def build() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All arrays and metadata of the asset (right hand, float32 / int32)."""
    sk = skeleton()
    sdf = HandSDF(sk)
    verts, faces = mesh(sdf, sk.joints, sk.tips)
    weights = skin_weights(sdf, verts, faces, sk.joints, sk.tips)
    tip_ids = np.array([argmin_robust(norm(verts - t, axis=1)) for t in sk.tips], np.int32)
    vdirs, jdirs = shape_space(verts, weights)
    arrays = {
        "v_template": verts.astype(np.float32),
        "faces": faces.astype(np.int32),
        "weights": weights.astype(np.float32),
        "shapedirs": vdirs.astype(np.float32),
        "j_template": sk.joints.astype(np.float32),
        "j_shapedirs": jdirs.astype(np.float32),
        "tip_vertex_ids": tip_ids,
        "parents": MANO_PARENTS.astype(np.int32),
    }
    meta = {
        "model_id": VERSION,
        "side": "right",
        "units": "metres",
        "shape_names": json.dumps(list(SHAPE_NAMES)),
        "shape_sd": json.dumps([float(v) for v in SHAPE_SD]),
        "generator": "tools/make_hand_model.py",
    }
    return arrays, meta


# --check accepts float arrays within these bounds of the shipped asset (float32 storage rounds at ~1e-8).
# The generator sums in a fixed order (handmodel_exact.py), so on x86-64 machines it matches bit for bit;
# the bounds cover a libm that rounds a cosine differently. One micrometre of mesh or joint position per
# standard deviation of shape, and a weight change of 1e-6 (under 1 um of skinned vertex for any pose of a
# 20 cm hand), are far below anything the fit or the rig can show (their figures are in tenths of a mm).
TOLERANCE = {"weights": 1e-6, "default": 1e-6}


def compare(arrays: dict[str, np.ndarray], old: dict[str, np.ndarray]) -> tuple[list[str], dict[str, float]]:
    """(names that fail, max |difference| of every float array); integer arrays must be equal."""
    bad, diffs = [], {}
    for k in sorted(set(arrays) | set(old)):
        if k not in old or k not in arrays or arrays[k].shape != old[k].shape or arrays[k].dtype != old[k].dtype:
            bad.append(k)
        elif arrays[k].dtype.kind == "f":
            diffs[k] = float(np.max(np.abs(arrays[k].astype(np.float64) - old[k]), initial=0.0))
            if not diffs[k] <= TOLERANCE.get(k, TOLERANCE["default"]):
                bad.append(k)
        elif not np.array_equal(arrays[k], old[k]):
            bad.append(k)
    return bad, diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate assets/hand_builtin.safetensors")
    ap.add_argument(
        "--check", action="store_true", help="rebuild in memory and compare with the asset (bit for bit, or TOLERANCE)"
    )
    ap.add_argument("--out", default=str(ASSET))
    args = ap.parse_args(argv)
    arrays, meta = build()
    if args.check:
        old, old_meta = load_tensors(args.out)
        bad, diffs = compare(arrays, old)
        if bad or old_meta != meta:
            detail = ", ".join(f"{k} max diff {diffs[k]:.3g}" for k in bad if k in diffs)
            print(f"MISMATCH in {bad or 'metadata'}{f' ({detail})' if detail else ''}: rerun tools/make_hand_model.py")
            return 1
        exact = all(arrays[k].tobytes() == old[k].tobytes() for k in arrays)
        how = "bit for bit" if exact else f"within TOLERANCE (largest float difference {max(diffs.values()):.3g})"
        print(f"OK: {args.out} matches the generator {how}")
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_tensors(args.out, arrays, meta)
    v, f = arrays["v_template"], arrays["faces"]
    print(f"wrote {args.out}: {len(v)} vertices, {len(f)} faces, watertight={is_watertight(f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
