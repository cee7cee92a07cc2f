"""Small batched linear-algebra helpers of the solver (torch, float64)."""

from __future__ import annotations

import numpy as np
import torch


def spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve a x = b for symmetric positive definite a (N, n, n) and b (N, n) or (N, n, k); LU where Cholesky
    fails (a nearly singular system still gets a step)."""
    vector = b.dim() == a.dim() - 1
    rhs = b[..., None] if vector else b
    chol, info = torch.linalg.cholesky_ex(a)
    out = torch.cholesky_solve(rhs, chol) if bool((info == 0).all()) else torch.linalg.solve(a, rhs)
    return out[..., 0] if vector else out


def wrap_rotvec(r: torch.Tensor) -> torch.Tensor:
    """Same rotations (N, 3) with the angle kept within pi (shorter axis-angle)."""
    a = torch.linalg.norm(r, dim=-1, keepdim=True)
    return r * torch.where(a > np.pi, 1 - 2 * np.pi / torch.clamp(a, min=1e-12), torch.ones_like(a))
