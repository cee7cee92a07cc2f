"""Meshing an implicit surface in numpy: surface nets, projection, smoothing, topology checks.

Surface nets put one vertex in every grid cell the surface crosses and one quad
across every grid edge with a sign change, so the result is closed whenever the
surface stays inside the grid. ``edge_use_counts`` checks that every edge is shared
by exactly two faces (the built-in model's test asserts the same).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from handmodel_exact import dot, norm

Field = Callable[[np.ndarray], np.ndarray]


def surface_nets(field: Field, lo: np.ndarray, hi: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the zero set of ``field`` inside the box [lo, hi] with grid spacing ``h``.

    Returns (vertices (V, 3) float64, faces (F, 3) int64), faces counter-clockwise from outside
    (outside = field >= 0).
    """
    n = np.ceil((np.asarray(hi) - np.asarray(lo)) / h).astype(int) + 1
    axes = [lo[a] + h * np.arange(n[a]) for a in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    val = field(grid.reshape(-1, 3)).reshape(tuple(n))
    inside = val < 0
    if (
        inside[0].any()
        or inside[-1].any()
        or inside[:, 0].any()
        or inside[:, -1].any()
        or inside[..., 0].any()
        or inside[..., -1].any()
    ):
        raise ValueError("the surface touches the grid boundary; enlarge the box")
    cells = n - 1
    cell_id = np.arange(np.prod(cells)).reshape(tuple(cells))
    acc = np.zeros((np.prod(cells), 3))
    cnt = np.zeros(np.prod(cells))
    quads = []
    for axis in range(3):
        sl0 = [slice(None)] * 3
        sl1 = [slice(None)] * 3
        sl0[axis] = slice(0, -1)
        sl1[axis] = slice(1, None)
        a_in, b_in = inside[tuple(sl0)], inside[tuple(sl1)]
        idx = np.argwhere(a_in != b_in)  # lower grid point of each crossing edge
        va = val[tuple(sl0)][a_in != b_in]
        vb = val[tuple(sl1)][a_in != b_in]
        t = va / (va - vb)
        point = lo + h * idx.astype(np.float64)
        point[:, axis] += h * t
        # The other two axes in cyclic order, so the loop (-,-) (+,-) (+,+) (-,+) faces +axis.
        u, v = (axis + 1) % 3, (axis + 2) % 3
        ring = []
        for du, dv in ((-1, -1), (0, -1), (0, 0), (-1, 0)):
            c = idx.copy()
            c[:, u] += du
            c[:, v] += dv
            ring.append(c)
        ok = np.ones(len(idx), bool)
        for c in ring:
            ok &= np.all((c >= 0) & (c < cells), axis=1)
        if not ok.all():
            raise ValueError("a crossing edge lies on the grid boundary; enlarge the box")
        ids = np.stack([cell_id[c[:, 0], c[:, 1], c[:, 2]] for c in ring], axis=1)
        for k in range(4):
            np.add.at(acc, ids[:, k], point)
            np.add.at(cnt, ids[:, k], 1.0)
        flip = ~a_in[a_in != b_in]  # lower end outside: the outward normal points toward -axis
        ids[flip] = ids[flip][:, ::-1]
        quads.append(ids)
    quads = np.concatenate(quads)
    used = np.flatnonzero(cnt)
    remap = np.full(len(cnt), -1)
    remap[used] = np.arange(len(used))
    verts = acc[used] / cnt[used, None]
    quads = remap[quads]
    return verts, _split_quads(verts, quads)


def _split_quads(verts: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Split each quad along its shorter diagonal (keeps the orientation)."""
    a, b, c, d = quads.T
    short_ac = norm(verts[a] - verts[c], axis=1) <= norm(verts[b] - verts[d], axis=1)
    t1 = np.where(short_ac[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    t2 = np.where(short_ac[:, None], np.stack([a, c, d], 1), np.stack([b, c, d], 1))
    return np.concatenate([t1, t2])


def edge_use_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique undirected edges (E, 2), number of faces using each)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.sort(e, axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq, counts


def is_watertight(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces, with opposite directions (consistent orientation)."""
    _, counts = edge_use_counts(faces)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return bool(np.all(counts == 2) and len(np.unique(directed, axis=0)) == len(directed))


def neighbours(faces: np.ndarray, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex adjacency as CSR (offsets (V+1,), indices)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    offsets = np.searchsorted(e[:, 0], np.arange(nv + 1))
    return offsets, e[:, 1]


def neighbour_mean(values: np.ndarray, adj: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean of ``values`` over each vertex's neighbours."""
    offsets, idx = adj
    sums = np.add.reduceat(values[idx], offsets[:-1], axis=0)
    return sums / np.diff(offsets)[:, None]


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals."""
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(norm(vn, axis=1, keepdims=True), 1e-15)


def gradient(field: Field, p: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of ``field`` at points p (N, 3)."""
    g = np.zeros_like(p)
    for a in range(3):
        d = np.zeros(3)
        d[a] = eps
        g[:, a] = (field(p + d) - field(p - d)) / (2 * eps)
    return g


def project(field: Field, p: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Newton steps along the gradient onto the zero set."""
    p = p.copy()
    for _ in range(iterations):
        f = field(p)
        g = gradient(field, p)
        p -= (f / np.maximum(dot(g, g), 1e-12))[:, None] * g
    return p


def relax(field: Field, verts: np.ndarray, faces: np.ndarray, iterations: int = 10, step: float = 0.5) -> np.ndarray:
    """Tangential Laplacian smoothing (evens out the triangles) with re-projection onto the surface."""
    adj = neighbours(faces, len(verts))
    v = project(field, verts)
    for _ in range(iterations):
        n = vertex_normals(v, faces)
        lap = neighbour_mean(v, adj) - v
        lap -= dot(lap, n)[:, None] * n
        v = project(field, v + step * lap, iterations=3)
    return v
