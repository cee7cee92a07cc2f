"""Implicit surface of the built-in hand: smooth-unioned round cones and ellipsoids around a Skeleton.

``HandSDF(skel)(points)`` returns an approximate signed distance (negative inside, metres).
Every primitive carries the MANO joint whose bone it dresses (``owner``) so the
skinning weights can start from "which primitive is this vertex on".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from handmodel_exact import dot, matmul, norm
from handmodel_skeleton import CHAIN, FINGERS, Skeleton

_DORSAL = np.array([0.0, 1.0, 0.0])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / norm(v)


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (blend radius k metres)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k / 4.0


@dataclass
class RoundCone:
    """Segment a -> b with radius ra -> rb; the cross-section is squashed by ``flat`` along ``up``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float
    owner: int
    up: np.ndarray = field(default_factory=lambda: _DORSAL.copy())
    flat: float = 1.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        u = self.b - self.a
        h = max(float(norm(u)), 1e-9)
        u = u / h
        up = _unit(self.up - dot(self.up, u) * u)
        q = p - self.a
        t = np.clip(dot(q, u) / h, 0.0, 1.0)
        c = q - (t * h)[:, None] * u
        cu = dot(c, up)
        c = c + ((1.0 / self.flat - 1.0) * cu)[:, None] * up
        # Scaling by the mean squash keeps the field roughly unit-gradient for blending.
        return (norm(c, axis=1) - (self.ra + (self.rb - self.ra) * t)) * (0.5 + 0.5 * self.flat)


@dataclass
class Ellipsoid:
    """Ellipsoid at ``centre`` with semi-axes ``radii`` along the columns of ``axes``."""

    centre: np.ndarray
    axes: np.ndarray
    radii: np.ndarray
    owner: int

    def __call__(self, p: np.ndarray) -> np.ndarray:
        q = matmul(p - self.centre, self.axes)
        k0 = norm(q / self.radii, axis=1)
        k1 = norm(q / self.radii**2, axis=1)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _frame(along: np.ndarray, up: np.ndarray = _DORSAL) -> np.ndarray:
    a = _unit(along)
    u = _unit(up - dot(up, a) * a)
    return np.stack([a, u, np.cross(a, u)], axis=1)


class HandSDF:
    """Signed distance of the hand surface for one skeleton (right hand)."""

    # Blend radii (metres, scaled with the hand): within a finger, palm parts, finger-to-palm, thumb-to-palm.
    K_FINGER, K_PALM, K_JOIN, K_THUMB, K_WEB = 0.004, 0.012, 0.007, 0.010, 0.012

    def __init__(self, skel: Skeleton):
        s, th = skel.scale, skel.thickness
        j, tips = skel.joints, skel.tips
        self.scale = s
        self.fingers: list[list] = []
        for i, finger in enumerate(FINGERS):
            chain = CHAIN[finger]
            r = skel.radii[finger]
            pts = [j[c] for c in chain] + [tips[i]]
            up = _DORSAL
            if finger == "thumb":
                # The thumb nail faces away from the pad, which leans toward the little finger.
                up = _unit(np.array([0.0, np.cos(np.radians(50)), np.sin(np.radians(50))]))
                pts[-1] = pts[-1] - r[-1] * _unit(pts[-1] - pts[-2])
                prims = [RoundCone(pts[0], pts[1], 0.0125 * s, r[0], chain[0], up, 0.85)]
                for k in (1, 2):
                    prims.append(RoundCone(pts[k], pts[k + 1], r[k - 1], r[k], chain[k], up, 0.85))
                knuckle = Ellipsoid(pts[2] + 0.08 * r[1] * up, _frame(pts[2] - pts[1], up), np.full(3, r[1]), chain[1])
                prims.append(knuckle)
            else:
                pts[-1] = pts[-1] - r[-1] * _unit(pts[-1] - pts[-2])
                prims = [RoundCone(pts[k], pts[k + 1], r[k], r[k + 1], chain[k], up, 0.88) for k in range(3)]
                for k in (1, 2):  # knuckle bulges at PIP and DIP, slightly dorsal
                    centre = pts[k] + 0.15 * r[k] * up
                    radii = r[k] * np.array([0.85, 0.96, 1.02])
                    prims.append(Ellipsoid(centre, _frame(pts[k + 1] - pts[k]), radii, chain[k]))
            self.fingers.append(prims)
        self.palm = self._palm(skel, s, th)
        # Skin webs, each with the two joints it hangs between: the thumb web (thumb end first)
        # and the interdigital webs at the bases of the proximal phalanges.
        self.webs: list[tuple[RoundCone, int, int]] = [
            (
                RoundCone(
                    j[13] + 0.8 * (j[14] - j[13]) + np.array([0, -0.002, 0]) * s,
                    j[1] + 0.25 * (j[0] - j[1]),
                    0.0055 * s,
                    0.0075 * s,
                    13,
                    _DORSAL,
                    0.7,
                ),
                13,
                0,
            )
        ]
        for a, b in ((1, 4), (4, 10), (10, 7)):
            pa = j[a] + 0.30 * (j[a + 1] - j[a]) + np.array([0, -0.002, 0]) * s
            pb = j[b] + 0.30 * (j[b + 1] - j[b]) + np.array([0, -0.002, 0]) * s
            self.webs.append((RoundCone(pa, pb, 0.0055 * s, 0.0055 * s, a, _DORSAL, 0.7), a, b))
        self.cut_x = j[0][0] + 0.030 * s  # the wrist stump ends on this plane

    @staticmethod
    def _palm(skel: Skeleton, s: float, th: float) -> list:
        j = skel.joints
        wrist = j[0]
        mcps = {"index": j[1], "middle": j[4], "ring": j[10], "pinky": j[7]}
        prims: list = []
        pw = skel.palm_width  # lateral radii follow the palm-width parameter
        for finger, m in mcps.items():
            base = wrist + 0.12 * (m - wrist)
            base[2] = wrist[2] + 0.55 * (base[2] - wrist[2] + 0.88 * (m[2] - wrist[2]))
            r_end = (0.0105 if finger == "pinky" else 0.0118) * s * pw
            prims.append(RoundCone(base, m, 0.0135 * s * pw, r_end, 0, _DORSAL, 0.78 * th / pw))
        mean_mcp = np.mean(list(mcps.values()), axis=0)
        centre = 0.5 * (wrist + mean_mcp) + np.array([0.0, -0.002, -0.004]) * s
        prims.append(Ellipsoid(centre, _frame(mean_mcp - wrist), np.array([0.042, 0.0125 * th, 0.036 * pw]) * s, 0))
        # Thenar eminence along the thumb metacarpal, bulging palmar.
        c, m = j[13], j[14]
        centre = c + 0.42 * (m - c) + np.array([0.0, -0.006 * th, -0.005]) * s
        prims.append(Ellipsoid(centre, _frame(m - c), np.array([0.025, 0.012 * th, 0.015]) * s, 13))
        # Hypothenar eminence along the ulnar palm edge.
        pk = mcps["pinky"]
        centre = wrist + 0.45 * (pk - wrist) + np.array([0.0, -0.004 * th, -0.004]) * s
        prims.append(Ellipsoid(centre, _frame(pk - wrist), np.array([0.034, 0.0125 * th, 0.012 * pw]) * s, 0))
        # Distal palmar pads under the knuckle line.
        centre = mean_mcp + np.array([0.009, -0.005 * th, 0.0]) * s
        pad = np.array([0.034 * pw, 0.009 * th, 0.011]) * s
        prims.append(Ellipsoid(centre, _frame(mcps["index"] - mcps["pinky"]), pad, 0))
        # Wrist stump (cut flat later).
        a = wrist + np.array([-0.005, 0.0, 0.0]) * s
        b = wrist + np.array([0.045, 0.0, 0.0]) * s
        prims.append(RoundCone(a, b, 0.0280 * s * pw, 0.0270 * s * pw, 0, _DORSAL, 0.62 * th / pw))
        return prims

    def parts(self, p: np.ndarray) -> np.ndarray:
        """(N, P) distance to every primitive (for skinning), in ``primitives`` order."""
        return np.stack([prim(p) for prim in self.primitives], axis=1)

    @property
    def primitives(self) -> list:
        return [q for f in self.fingers for q in f] + self.palm + [w[0] for w in self.webs]

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        s = self.scale
        palm = None
        for prim in self.palm:
            d = prim(p)
            palm = d if palm is None else smin(palm, d, self.K_PALM * s)
        for web, _, _ in self.webs:
            palm = smin(palm, web(p), self.K_WEB * s)
        out = None
        for i, prims in enumerate(self.fingers):
            # Phalanges meet with a hard union (a smooth one would swell every joint into a ring);
            # the knuckle bulges blend in softly. Fingers blend into the palm but never into each
            # other, so no skin bridges the gaps between them.
            bones = np.min([prim(p) for prim in prims if isinstance(prim, RoundCone)], axis=0)
            for prim in prims:
                if not isinstance(prim, RoundCone):
                    bones = smin(bones, prim(p), self.K_FINGER * s)
            d = smin(palm, bones, (self.K_THUMB if i == 0 else self.K_JOIN) * s)
            out = d if out is None else np.minimum(out, d)
        # Flat wrist cut with a rounded rim: smooth max with the half-space x <= cut_x.
        cut = p[:, 0] - self.cut_x
        return -smin(-out, -cut, 0.006 * s)
