"""Cost terms of the hand fit (torch) in Gauss-Newton form: value, gradient and Gauss-Newton Hessian.

Every term is a weighted sum of squared residuals ``w |r|^2``; for the Gauss-Newton step each returns the
per-frame cost, ``J^T W r`` and ``J^T W J`` (the common factor 2 dropped everywhere) with respect to the
frame's own parameters. Terms that couple neighbouring frames (temporal smoothness) are linearised in the
frame's own parameters with the neighbours held (block Jacobi); the solver damps the steps.
"""

from __future__ import annotations

import torch


def geman_mcclure(sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure cost of squared residuals: ~ sq for small residuals, saturating at sigma^2."""
    s2 = sigma * sigma
    return s2 * sq / (sq + s2)


def geman_mcclure_weight(sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Derivative of ``geman_mcclure`` with respect to sq: the IRLS weight (1 at zero, -> 0 for outliers)."""
    s2 = sigma * sigma
    return (s2 / (sq + s2)) ** 2


def temporal_terms(
    x: torch.Tensor, dx: torch.Tensor, w_velocity: float, w_accel: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Velocity and acceleration costs of trajectories x (T, K, D) along time, per frame.

    dx: (T, K, D, P) derivative of x at each frame with respect to that frame's P parameters of item K.
    Costs: w_velocity |x_t+1 - x_t|^2 per pair, w_accel |x_t-1 - 2 x_t + x_t+1|^2 per triple.
    Returns per-frame cost (T,) (each term counted in every frame it involves, for step acceptance),
    gradient (T, K, P), Hessian blocks (T, K, P, P) of the terms involving each frame, and the total cost
    (each term once).
    """
    t = x.shape[0]
    cost = x.new_zeros(t)
    grad = x.new_zeros(dx.shape[:2] + dx.shape[3:])
    coef_sq = x.new_zeros(t)  # sum over terms of coefficient^2 times weight, for the Hessian
    if t < 2:
        return cost, grad, grad[..., None] * grad[..., None, :], cost.sum()
    vel = x[1:] - x[:-1]  # (T-1, K, D)
    vc = w_velocity * (vel * vel).sum((1, 2))
    total = vc.sum()
    cost[1:] += vc
    cost[:-1] += vc
    # d/dx_t of |x_t+1 - x_t|^2 -> -(vel_t), of |x_t - x_t-1|^2 -> +vel_t-1
    r = x.new_zeros(x.shape)
    r[1:] += w_velocity * vel
    r[:-1] -= w_velocity * vel
    coef_sq[1:] += w_velocity
    coef_sq[:-1] += w_velocity
    if t >= 3 and w_accel > 0:
        acc = x[:-2] - 2 * x[1:-1] + x[2:]  # centred at 1..T-2
        ac = w_accel * (acc * acc).sum((1, 2))
        total = total + ac.sum()
        cost[:-2] += ac
        cost[1:-1] += ac
        cost[2:] += ac
        r[:-2] += w_accel * acc
        r[1:-1] -= 2 * w_accel * acc
        r[2:] += w_accel * acc
        coef_sq[:-2] += w_accel
        coef_sq[1:-1] += 4 * w_accel
        coef_sq[2:] += w_accel
    grad = torch.einsum("tkdp,tkd->tkp", dx, r)
    hess = coef_sq[:, None, None, None] * torch.einsum("tkdp,tkdq->tkpq", dx, dx)
    return cost, grad, hess, total


def temporal_cost(x: torch.Tensor, w_velocity: float, w_accel: float) -> torch.Tensor:
    """Per-frame cost (T,) of ``temporal_terms`` for trajectories x (T, D), without derivatives."""
    t = x.shape[0]
    cost = x.new_zeros(t)
    if t < 2:
        return cost
    vc = w_velocity * ((x[1:] - x[:-1]) ** 2).sum(1)
    cost[1:] += vc
    cost[:-1] += vc
    if t >= 3 and w_accel > 0:
        ac = w_accel * ((x[:-2] - 2 * x[1:-1] + x[2:]) ** 2).sum(1)
        cost[:-2] += ac
        cost[1:-1] += ac
        cost[2:] += ac
    return cost
