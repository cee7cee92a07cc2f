"""The hand model's closed-form keypoint Jacobians (inference/handmodel/jacobians.py) against central finite
differences of its own forward pass: pose (in joint frames), rest joints, shape; built-in and MANO-like."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from handcap.core.handmodel import load_builtin
from handcap.core.keypoints import KEYPOINT_FINGER, MANO_TO_KEYPOINTS, NUM_JOINTS
from handcap.inference.handmodel.jacobians import keypoint_jacobians, left_jacobian
from handcap.inference.handmodel.model import HandModel, rodrigues

EPS = 1e-5  # central differences: truncation error ~ EPS^2


def _model(side: str, posedirs: bool) -> HandModel:
    data = load_builtin(side)
    if posedirs:  # MANO-like pose correctives, large enough to matter (mm per radian)
        rng = np.random.default_rng(3)
        data = dataclasses.replace(data, posedirs=rng.normal(scale=5e-3, size=(data.num_vertices, 3, 135)))
    return HandModel(data, dtype=torch.float64)


def _state(seed: int, n: int = 4):
    rng = np.random.default_rng(seed)
    theta = torch.tensor(rng.normal(scale=0.5, size=(n, NUM_JOINTS, 3)))
    beta = torch.tensor(rng.normal(size=(n, 10)))
    offsets = torch.tensor(rng.normal(scale=0.004, size=(n, NUM_JOINTS, 3)))
    return theta, beta, offsets


def _points(model, theta, beta, offsets):
    out = model(theta, beta, None, with_vertices=False, joint_offsets=offsets)
    return out.keypoints - out.joints[:, :1]


def _central(f, x, steps):
    """d f / d x along each step (..., same shape as x): list of (B, 21, 3)."""
    return [(f(x + EPS * s) - f(x - EPS * s)) / (2 * EPS) for s in steps]


def _pose_steps(frames):
    for j in range(NUM_JOINTS):
        for c in range(3):
            s = torch.zeros(NUM_JOINTS, 3, dtype=torch.float64)
            s[j] = frames[j, :, c]
            yield s


def _unit_steps(shape):
    for i in range(int(np.prod(shape))):
        s = torch.zeros(int(np.prod(shape)), dtype=torch.float64)
        s[i] = 1.0
        yield s.reshape(shape)


@pytest.mark.parametrize("side", ["right", "left"])
def test_builtin_jacobians_equal_finite_differences(side):
    model = _model(side, posedirs=False)
    theta, beta, offsets = _state(1)
    frames = model.joint_frames.clone()
    frames[0] = torch.eye(3, dtype=torch.float64)  # the fit's root coordinates are the camera axes
    jac = keypoint_jacobians(model, theta, beta, offsets, frames=frames, with_rest=True)
    np.testing.assert_array_equal(jac.points.numpy(), _points(model, theta, beta, offsets).numpy())
    fd = _central(lambda th: _points(model, th, beta, offsets), theta, list(_pose_steps(frames)))
    np.testing.assert_allclose(jac.d_pose.numpy(), torch.stack(fd, -1).numpy(), atol=1e-8)
    fd = _central(lambda o: _points(model, theta, beta, o), offsets, list(_unit_steps((NUM_JOINTS, 3))))
    np.testing.assert_allclose(jac.d_rest.reshape(4, 21, 3, -1).numpy(), torch.stack(fd, -1).numpy(), atol=1e-8)
    fd = _central(lambda b: _points(model, theta, b, offsets), beta, list(_unit_steps((10,))))
    np.testing.assert_allclose(jac.d_beta.numpy(), torch.stack(fd, -1).numpy(), atol=1e-8)
    # the derivative is not trivially small: a joint turn moves its finger's tip by centimetres per radian
    assert jac.d_pose.abs().max() > 0.05 and jac.d_beta.abs().max() > 1e-3


def test_mano_like_correctives_are_exact_within_each_finger():
    """With pose correctives a joint also nudges other fingers' tips; those columns are left out by design,
    every other column is exact."""
    model = _model("right", posedirs=True)
    theta, beta, offsets = _state(2)
    jac = keypoint_jacobians(model, theta, beta, offsets, with_rest=True)
    fd = torch.stack(_central(lambda th: _points(model, th, beta, offsets), theta, list(_unit_steps((16, 3)))), -1)
    joint_finger = KEYPOINT_FINGER[np.argsort(MANO_TO_KEYPOINTS)[:NUM_JOINTS]]  # finger of each MANO joint
    own = (KEYPOINT_FINGER[:, None] == joint_finger[None, :]) | (np.arange(NUM_JOINTS)[None, :] == 0)
    cols = np.repeat(own, 3, axis=1)  # (21, 48): the keypoint's own chain
    got, want = jac.d_pose.numpy(), fd.numpy()
    np.testing.assert_allclose(np.where(cols[:, None], got, 0), np.where(cols[:, None], want, 0), atol=1e-8)
    assert np.abs(np.where(cols[:, None], 0, got)).max() == 0.0
    # the correctives really are in play: ignoring them would miss this much on the tips' own columns
    plain = keypoint_jacobians(_model("right", posedirs=False), theta, beta, offsets).d_pose.numpy()
    assert np.abs(np.where(cols[:, None], plain - want, 0)).max() > 1e-3
    fd = _central(lambda b: _points(model, theta, b, offsets), beta, list(_unit_steps((10,))))
    np.testing.assert_allclose(jac.d_beta.numpy(), torch.stack(fd, -1).numpy(), atol=1e-8)


def test_left_jacobian_turns_rotations_as_the_exponential_map_does():
    rng = np.random.default_rng(4)
    rv = torch.tensor(rng.normal(scale=1.0, size=(6, 3)))
    rv[0] = 0.0  # the series branch
    rv[1] = 1e-5
    d = torch.tensor(rng.normal(size=(6, 3))) * 1e-6
    lhs = rodrigues(rv + d)
    rhs = rodrigues((left_jacobian(rv) @ d[..., None])[..., 0]) @ rodrigues(rv)
    np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), atol=1e-11)
