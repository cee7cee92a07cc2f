"""Measure the built-in hand model: mesh, anthropometry, shape directions and forward-pass cost.

Usage: .venv/bin/python tools/handmodel_stats.py [--threads 1] [--frames 400]

Every number quoted in docs/hand-model.md comes from this script.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from handcap.core.handmodel import forward, load_builtin, rest_joints, rest_tips


def _edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)


def measures(data, beta: np.ndarray) -> dict[str, float]:
    """Skeleton measures in millimetres (ratios unitless) for one beta."""
    j, t = rest_joints(data, beta), rest_tips(data, beta)
    mm = 1000.0
    return {
        "hand length (wrist-middle tip)": mm * np.linalg.norm(t[2] - j[0]),
        "MCP breadth (index-little joint centres)": mm * np.linalg.norm(j[1] - j[7]),
        "palm length (wrist-middle MCP)": mm * np.linalg.norm(j[4] - j[0]),
        "middle finger (MCP-tip)": mm * np.linalg.norm(t[2] - j[4]),
        "thumb (CMC-tip)": mm * np.linalg.norm(t[0] - j[13]),
        "index/ring length ratio": np.linalg.norm(t[1] - j[1]) / np.linalg.norm(t[3] - j[10]),
        "little finger (MCP-tip)": mm * np.linalg.norm(t[4] - j[7]),
        "middle proximal phalanx": mm * np.linalg.norm(j[5] - j[4]),
    }


def mesh_measures(data, beta: np.ndarray) -> dict[str, float]:
    v = data.v_template + data.shapedirs @ beta
    j = rest_joints(data, beta)
    centre = (j[0] + j[4]) / 2
    palm = (np.abs(v[:, 0] - centre[0]) < 0.003) & (np.abs(v[:, 2] - j[4, 2]) < 0.004)
    near_mcp = np.abs(v[:, 0] - (j[4, 0] + 0.01)) < 0.003
    near_mcp &= v[:, 2] < j[1, 2] + 0.02  # leave the thumb out
    # Middle finger, middle phalanx: breadth of the cross-section half-way between PIP and DIP.
    u = (j[6] - j[5]) / np.linalg.norm(j[6] - j[5])
    rel = v - (j[5] + j[6]) / 2
    along = rel @ u
    radial = rel - np.outer(along, u)
    ring = (np.abs(along) < 0.002) & (np.linalg.norm(radial, axis=1) < 0.012)
    a, b, c = (v[data.faces[:, k]] for k in range(3))
    volume = np.sum(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6.0
    return {
        "palm thickness at its centre (mm)": 1000 * np.ptp(v[palm, 1]),
        "hand breadth 1 cm proximal of the MCPs (mm)": 1000 * np.ptp(v[near_mcp, 2]),
        "middle phalanx breadth, middle finger (mm)": 1000 * np.ptp(radial[ring, 2]),
        "volume incl. 3 cm wrist stump (cm^3)": volume * 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for the timing")
    ap.add_argument("--frames", type=int, default=400, help="batch size for the timing")
    args = ap.parse_args(argv)
    data = load_builtin("right")
    _, counts = _edges(data.faces)
    print(f"vertices {data.num_vertices}, faces {len(data.faces)}, edges {len(counts)}")
    print(f"edges shared by exactly 2 faces: {np.mean(counts == 2) * 100:.1f} %")
    print(f"Euler characteristic V - E + F = {data.num_vertices - len(counts) + len(data.faces)}")
    zero = np.zeros(10)
    for name, value in {**measures(data, zero), **mesh_measures(data, zero)}.items():
        print(f"  {name}: {value:.3f}")
    print("shape directions (+1 standard deviation), relative change of each measure in %:")
    base = {**measures(data, zero), **mesh_measures(data, zero)}
    for k, name in enumerate(data.shape_names):
        beta = np.zeros(10)
        beta[k] = 1.0
        cur = {**measures(data, beta), **mesh_measures(data, beta)}
        changes = {m: 100 * (cur[m] / base[m] - 1) for m in base}
        big = ", ".join(f"{m.split(' (')[0]} {c:+.1f}" for m, c in changes.items() if abs(c) >= 0.5)
        print(f"  beta[{k}] {name}: {big}")

    import torch

    from handcap.inference.handmodel import HandModel

    torch.set_num_threads(args.threads)
    model = HandModel(data)
    n = args.frames
    theta = torch.zeros(n, 16, 3, requires_grad=True)
    beta = torch.zeros(10, requires_grad=True)
    transl = torch.zeros(n, 3)
    for with_vertices, reps in ((False, 30), (True, 3)):
        model(theta, beta, transl, with_vertices=with_vertices)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            out = model(theta, beta, transl, with_vertices=with_vertices)
            loss = out.keypoints.sum() + (out.vertices.sum() if with_vertices else 0)
            loss.backward()
        ms = (time.perf_counter() - t0) / reps * 1000
        what = "full mesh" if with_vertices else "joints + 5 tips"
        print(f"torch forward+backward, {what}, {n} frames, {args.threads} thread(s): {ms:.1f} ms")
    ref = forward(data, np.random.default_rng(0).normal(scale=0.5, size=(8, 16, 3)))
    got = model(torch.tensor(np.random.default_rng(0).normal(scale=0.5, size=(8, 16, 3))))
    diff = np.abs(got.vertices.detach().numpy() - ref.vertices).max()
    print(f"numpy vs torch float32, max vertex difference: {diff:.2e} m")


if __name__ == "__main__":
    main()
