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


def solve_block_banded(
    diag: torch.Tensor, off1: torch.Tensor, off2: torch.Tensor, rhs: torch.Tensor, coupled: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Solve the symmetric positive definite block-pentadiagonal system of a whole track.

    Args:
        diag: (T, n, n) blocks H[t, t]; off1: (T-1, n, n) blocks H[t, t+1]; off2: (T-2, n, n) blocks H[t, t+2]
            (the lower blocks are their transposes).
        rhs: (T, n).
        coupled: (n,) bool, the unknowns the off-diagonal blocks may touch, when the caller knows them; off1
            and off2 are then the blocks of those unknowns alone, (T-1, c, c) and (T-2, c, c). Else they are
            found from the blocks' nonzeros.

    Returns:
        (T, n) solution, or None when the matrix is not positive definite. Memory and time grow linearly with
        T, where a dense solve would grow as T^2 and T^3. Unknowns that no off-diagonal block touches (a
        frame's finger rotations when only the wrist is smoothed over time) are first eliminated frame by frame
        (Schur complement, batched Cholesky); the coupled rest is solved by banded Cholesky.
    """
    t, n = rhs.shape
    if coupled is not None:
        coupled = coupled.to(rhs.device)
    else:
        coupled = torch.zeros(n, dtype=torch.bool, device=rhs.device)
        for off in (off1, off2):
            if off.numel():
                touched = (off != 0).any(0)  # (n, n): entries nonzero in some frame
                coupled |= touched.any(0) | touched.any(1)
        tied = torch.nonzero(coupled)[:, 0]
        off1, off2 = off1[:, tied][:, :, tied], off2[:, tied][:, :, tied]
    if bool(coupled.all()):
        return _banded_cholesky(diag, off1, off2, rhs)
    free, tied = torch.nonzero(~coupled)[:, 0], torch.nonzero(coupled)[:, 0]
    chol, info = torch.linalg.cholesky_ex(diag[:, free][:, :, free])
    if bool((info != 0).any()):
        return None
    h_ft = diag[:, free][:, :, tied]  # (T, f, c)
    y = torch.cholesky_solve(torch.cat([h_ft, rhs[:, free, None]], -1), chol)  # H_ff^-1 [H_fc | b_f]
    out = torch.empty_like(rhs)
    if len(tied):
        schur = diag[:, tied][:, :, tied] - h_ft.transpose(1, 2) @ y[..., :-1]
        reduced = rhs[:, tied] - (h_ft.transpose(1, 2) @ y[..., -1:])[..., 0]
        x_tied = _banded_cholesky(schur, off1, off2, reduced)
        if x_tied is None:
            return None
        out[:, tied] = x_tied
        out[:, free] = y[..., -1] - (y[..., :-1] @ x_tied[..., None])[..., 0]
    else:
        out[:, free] = y[..., -1]
    return out


def _banded_cholesky(diag: torch.Tensor, off1: torch.Tensor, off2: torch.Tensor, rhs: torch.Tensor):
    """``solve_block_banded`` by one banded Cholesky of the whole matrix (LAPACK via scipy, on the CPU)."""
    from scipy.linalg import LinAlgError, solveh_banded

    t, n = rhs.shape
    u = 3 * n - 1 if t > 2 else (2 * n - 1 if t == 2 else n - 1)
    ab = np.zeros((u + 1, t * n))
    p, q = np.triu_indices(n)
    base = (np.arange(t) * n)[:, None]
    ab[u + p - q, base + q] = diag.detach().cpu().numpy()[:, p, q]
    pp, qq = np.indices((n, n)).reshape(2, -1)
    for k, off in ((1, off1), (2, off2)):
        if t > k:
            ab[u + pp - qq - k * n, base[:-k] + k * n + qq] = off.detach().cpu().numpy()[:, pp, qq]
    try:
        out = solveh_banded(ab, rhs.detach().cpu().numpy().reshape(-1), check_finite=False)
    except LinAlgError:
        return None
    return torch.as_tensor(out.reshape(t, n), dtype=rhs.dtype, device=rhs.device)
