"""MANO pose -> Blender bone math (builders/convention.py), checked in plain numpy.

The key claim: with bone rest frames B_j, pose basis quat(B_j^T R_j B_j) and wrist
location B_0^T transl, Blender's pose chain reproduces MANO's skinning transforms
exactly, for ANY orthonormal rest frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from handcap.builders import convention as cv
from handcap.core import anatomy, handmodel
from handcap.core.keypoints import MANO_PARENTS, NUM_JOINTS
from handcap.core.lbs import rodrigues


def random_rotations(rng, n):
    q = rng.normal(size=(n, 4))
    return cv.quaternion_to_matrix(q)


def synthetic_skeleton(rng):
    """A plausible right-hand rest skeleton (template axes: fingers along -x, thumb toward +z), metres."""
    joints = np.zeros((NUM_JOINTS, 3))
    # (MCP joint index, MCP z offset, segment lengths) per finger, fingers spread along z.
    fingers = {1: (0.025, 0.040), 4: (0.005, 0.045), 10: (-0.015, 0.042), 7: (-0.033, 0.035)}
    for mcp, (z, seg) in fingers.items():
        joints[mcp] = [-0.09, 0.0, z]
        joints[mcp + 1] = joints[mcp] + [-seg, -0.002, 0.0]
        joints[mcp + 2] = joints[mcp + 1] + [-0.7 * seg, -0.002, 0.0]
    joints[13] = [-0.025, -0.01, 0.025]
    joints[14] = [-0.05, -0.012, 0.05]
    joints[15] = [-0.075, -0.012, 0.065]
    joints = joints + rng.normal(scale=0.002, size=joints.shape)
    tips = np.array([joints[15] + [-0.02, 0, 0.01]] + [joints[j] + [-0.02, -0.002, 0] for j in (3, 6, 12, 9)])
    return joints, tips


@pytest.fixture
def rig():
    rng = np.random.default_rng(7)
    joints, tips = synthetic_skeleton(rng)
    frames = anatomy.joint_frames_from_rest(joints, "right", tips)
    return rng, joints, tips, cv.bone_layout(joints, tips, frames)


def test_quaternion_round_trip_at_every_angle():
    rng = np.random.default_rng(0)
    mats = random_rotations(rng, 500)
    # Include the awkward cases: identity and half turns about each axis.
    mats = np.concatenate([mats, np.eye(3)[None], np.diag([1.0, -1, -1])[None], np.diag([-1.0, 1, -1])[None]])
    q = cv.matrix_to_quaternion(mats)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(cv.quaternion_to_matrix(q), mats, atol=1e-12)
    # Same convention as axis-angle: a rotation of angle a about unit u is (cos a/2, sin a/2 u).
    u = np.array([0.0, 0.6, 0.8])
    q1 = cv.matrix_to_quaternion(rodrigues(0.5 * u))
    np.testing.assert_allclose(q1, [np.cos(0.25), *(np.sin(0.25) * u)], atol=1e-12)


def test_make_continuous_keeps_rotations_and_removes_sign_flips():
    rng = np.random.default_rng(1)
    # A smooth rotation path, then random sign flips per key.
    t = np.linspace(0, 3, 60)[:, None]
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    q = cv.matrix_to_quaternion(rodrigues(t * 2.0 * axis))[:, None].repeat(3, axis=1)
    flipped = q * rng.choice([-1.0, 1.0], size=q.shape[:2])[..., None]
    fixed = cv.make_continuous(flipped)
    assert np.all(np.sum(fixed[1:] * fixed[:-1], axis=-1) > 0)
    np.testing.assert_allclose(cv.quaternion_to_matrix(fixed), cv.quaternion_to_matrix(q), atol=1e-12)
    assert np.all(np.abs(np.sum(fixed * q, axis=-1)) > 1 - 1e-12)


def test_bone_layout_frames_are_proper_and_follow_bones(rig):
    _, joints, tips, layout = rig
    assert layout.heads.shape == (21, 3) and layout.frames.shape == (21, 3, 3)
    np.testing.assert_allclose(
        layout.frames @ np.swapaxes(layout.frames, 1, 2), np.eye(3)[None].repeat(21, 0), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(layout.frames), 1.0, atol=1e-12)
    direction = (layout.tails - layout.heads) / np.linalg.norm(layout.tails - layout.heads, axis=1, keepdims=True)
    np.testing.assert_allclose(layout.frames[:, :, 1], direction, atol=1e-12)
    # Tails: wrist -> middle MCP, inner segments -> child joint, distal -> fingertip; tips start at fingertips.
    np.testing.assert_allclose(layout.tails[0], joints[4])
    np.testing.assert_allclose(layout.tails[1], joints[2])
    np.testing.assert_allclose(layout.tails[cv.DISTAL_JOINTS], tips)
    np.testing.assert_allclose(layout.heads[16:], tips)
    assert list(layout.parents[:16]) == list(MANO_PARENTS) and list(layout.parents[16:]) == list(cv.DISTAL_JOINTS)


def test_bone_x_axis_is_the_anatomical_curl_axis(rig):
    _, joints, tips, layout = rig
    frames = anatomy.joint_frames_from_rest(joints, "right", tips)
    # anatomy's frames already have y along the bones, so re-orthonormalising changes nothing.
    np.testing.assert_allclose(layout.frames[:16], frames, atol=1e-12)


def test_frames_along_projects_a_skewed_hint():
    heads = np.zeros((1, 3))
    tails = np.array([[0.0, 0.0, 0.02]])
    frame = cv.frames_along(heads, tails, np.array([[1.0, 0.0, 0.3]]))
    np.testing.assert_allclose(frame[0][:, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(frame[0][:, 1], [0, 0, 1], atol=1e-12)
    with pytest.raises(ValueError, match="parallel"):
        cv.frames_along(heads, tails, np.array([[0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="shorter"):
        cv.frames_along(heads, heads, np.array([[1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("frames_kind", ["anatomical", "random"])
def test_blender_pose_chain_reproduces_mano_exactly(rig, frames_kind):
    rng, joints, tips, layout = rig
    if frames_kind == "random":
        # The derivation holds for any orthonormal rest frames, not only anatomical ones.
        rand = random_rotations(rng, 21)
        layout = cv.bone_layout(joints, tips, rand[:16])
    t = 12
    theta = rng.normal(scale=0.6, size=(t, NUM_JOINTS, 3))
    transl = rng.normal(scale=0.2, size=(t, 3)) + [0, 0, 0.5]
    quats, loc = cv.pose_to_bone_basis(theta, transl, layout.frames[:16])
    assert quats.shape == (t, 16, 4) and loc.shape == (t, 3)
    basis = np.broadcast_to(np.eye(4), (t, 21, 4, 4)).copy()
    basis[:, :16] = cv.basis_matrices(quats)
    basis[:, 0, :3, 3] = loc
    pose = cv.blender_pose_matrices(layout.rest_matrices, layout.parents, basis)
    deform = pose @ np.linalg.inv(layout.rest_matrices)[None]
    a = cv.mano_skinning_transforms(theta, transl, joints)
    np.testing.assert_allclose(deform[:, :16], a, atol=1e-12)
    # Tip bones ride rigidly on their distal segment: their heads land where MANO moves the rest tips.
    a_distal = a[:, cv.DISTAL_JOINTS]
    tip_moved = np.einsum("tfij,fj->tfi", a_distal[..., :3, :3], tips) + a_distal[..., :3, 3]
    np.testing.assert_allclose(pose[:, 16:, :3, 3], tip_moved, atol=1e-12)


def test_pose_matches_the_hand_model_forward():
    """Bone heads and LBS through the Blender-chain transforms equal core.handmodel.forward."""
    rng = np.random.default_rng(3)
    data = handmodel.load_builtin("left")
    beta = rng.normal(scale=1.0, size=10)
    theta = rng.normal(scale=0.4, size=(5, NUM_JOINTS, 3))
    transl = rng.normal(scale=0.1, size=(5, 3)) + [0, 0, 0.6]
    ref = handmodel.forward(data, theta, beta, transl)
    rest = handmodel.rest_joints(data, beta)
    tips = handmodel.rest_tips(data, beta)
    layout = cv.bone_layout(rest, tips, anatomy.joint_frames_from_rest(rest, "left", tips))
    quats, loc = cv.pose_to_bone_basis(theta, transl, layout.frames[:16])
    basis = np.broadcast_to(np.eye(4), (5, 21, 4, 4)).copy()
    basis[:, :16] = cv.basis_matrices(quats)
    basis[:, 0, :3, 3] = loc
    pose = cv.blender_pose_matrices(layout.rest_matrices, layout.parents, basis)
    np.testing.assert_allclose(pose[:, :16, :3, 3], ref.joints, atol=1e-10)
    if data.posedirs is None:
        deform = pose[:, :16] @ np.linalg.inv(layout.rest_matrices[:16])[None]
        blended = np.einsum("vj,tjkl->tvkl", data.weights, deform)
        v_shaped = data.v_template + data.shapedirs @ beta
        verts = np.einsum("tvkl,vl->tvk", blended[..., :3, :3], v_shaped) + blended[..., :3, 3]
        # The model stores weights in float32 (rows sum to 1 within ~5e-8), and the camera-space translation
        # rides inside each joint transform here but is added after skinning in forward: ~1e-8 m apart.
        np.testing.assert_allclose(verts, ref.vertices, atol=1e-7)


def test_opencv_to_blender_rotation():
    m = cv.OPENCV_TO_BLENDER
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-15)
    assert np.linalg.det(m) == pytest.approx(1.0)
    np.testing.assert_allclose(m @ [1, 0, 0], [1, 0, 0])  # right stays right
    np.testing.assert_allclose(m @ [0, 1, 0], [0, 0, -1])  # image down -> world down
    np.testing.assert_allclose(m @ [0, 0, 1], [0, 1, 0])  # forward -> +Y
    np.testing.assert_allclose(rodrigues(np.array([cv.OPENCV_TO_BLENDER_EULER[0], 0, 0])), m, atol=1e-15)


def test_estimate_rest_tips_uses_fitted_tip_lengths(rig):
    rng, joints, tips, _ = rig
    kp = np.zeros((4, 21, 3))
    # Fitted DIP -> tip distance of 17 mm on every finger (keypoints 4, 8, 12, 16, 20 vs the ones before).
    for tip in (4, 8, 12, 16, 20):
        kp[:, tip] = kp[:, tip - 1] + [0.017, 0.0, 0.0]
    valid = np.array([True, True, False, True])
    est = cv.estimate_rest_tips(joints, kp, valid)
    distal = joints[cv.DISTAL_JOINTS]
    np.testing.assert_allclose(np.linalg.norm(est - distal, axis=1), 0.017, atol=1e-12)
    fallback = cv.estimate_rest_tips(joints, None, None)
    middle = joints[cv.DISTAL_JOINTS - 1]
    np.testing.assert_allclose(
        np.linalg.norm(fallback - distal, axis=1), 0.8 * np.linalg.norm(distal - middle, axis=1), atol=1e-12
    )
