"""Built-in hand model: asset, numpy forward, torch forward, anatomy frames and limits."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from handcap.core.anatomy import (
    clamp_to_limits,
    default_joint_limits,
    from_local,
    joint_frames_from_rest,
    limit_violation,
    to_local,
)
from handcap.core.handmodel import (
    BUILTIN_PATH,
    HandModelError,
    forward,
    load_builtin,
    rest_joints,
    rest_tips,
)
from handcap.core.keypoints import MANO_PARENTS, HandKeypoint, ManoJoint
from handcap.core.lbs import matrix_to_rotvec, rodrigues

REPO = Path(__file__).resolve().parent.parent
MIRROR = np.array([-1.0, 1.0, 1.0])
CHAINS = {"thumb": (13, 14, 15), "index": (1, 2, 3), "middle": (4, 5, 6), "ring": (10, 11, 12), "pinky": (7, 8, 9)}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny batched ops: extra threads only add contention on a shared CPU.
    try:
        import torch
    except ImportError:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def right():
    return load_builtin("right")


@pytest.fixture(scope="module")
def left():
    return load_builtin("left")


def descendants(j: int) -> set[int]:
    out = {j}
    for c in range(16):
        if MANO_PARENTS[c] in out:
            out.add(c)
    return out


def signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.sum(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6.0)


# ---------------------------------------------------------------- mesh asset


def test_mesh_is_closed_oriented_and_large_enough(right):
    f = right.faces
    assert right.num_vertices >= 1000 and f.dtype == np.int32
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2), "every edge must be shared by exactly two faces"
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "faces must be consistently oriented"
    # Closed genus-0 surface: V - E + F = 2, and every vertex is used.
    assert right.num_vertices - len(counts) + len(f) == 2
    assert len(np.unique(f)) == right.num_vertices
    # Outward orientation: positive enclosed volume, about that of a hand (300-600 cm^3 incl. wrist stump).
    assert 300e-6 < signed_volume(right.v_template, f) < 600e-6


def test_weights_are_a_smooth_partition_of_unity(right):
    w = right.weights
    assert w.shape == (right.num_vertices, 16)
    assert np.all(w >= 0) and np.allclose(w.sum(axis=1), 1.0, atol=1e-5)
    f = right.faces
    jumps = np.abs(w[f[:, 0]] - w[f[:, 1]]).max(axis=1)
    # The largest steps sit on the creases between neighbouring fingers; elsewhere the weights blend.
    assert jumps.max() < 0.5, f"weights jump by {jumps.max()} across one edge"
    assert np.quantile(jumps, 0.99) < 0.35 and np.median(jumps) < 0.02
    # Fingertips belong to their distal joint.
    for i, chain in enumerate(CHAINS.values()):
        assert w[right.tip_vertex_ids[i], chain[2]] > 0.9


def test_template_follows_mano_axes_and_mean_size(right):
    j = right.j_template
    tips = rest_tips(right)
    assert np.all(tips[1:, 0] < j[[1, 4, 10, 7], 0]), "fingers must point along -x"
    assert tips[0, 2] > tips[1, 2] > tips[4, 2], "thumb toward +z, pinky toward -z"
    length = np.linalg.norm(tips[2] - j[0])
    assert 0.18 < length < 0.19, f"wrist to middle tip {length}"
    assert np.linalg.norm(j[0]) > 0.05, "J0 is not the origin (pivot bugs must show)"
    frames = right.joint_frames
    assert frames[ManoJoint.MIDDLE1][:, 2] @ np.array([0, -1.0, 0]) > 0.95, "palm normal about -y"
    assert np.array_equal(right.parents, MANO_PARENTS)


# ---------------------------------------------------------------- shape space

_SHAPE_CLAIMS = {
    # beta index: (measure, expected relative change for +1, tolerance)
    0: ("hand_length", 0.060, 0.01),
    1: ("mcp_breadth", 0.040, 0.01),
    2: ("palm_length", 0.030, 0.01),
    3: ("middle_finger", 0.040, 0.01),
    4: ("thumb", 0.050, 0.01),
    7: ("index_ring", 0.035, 0.01),
    8: ("little", 0.050, 0.01),
}


def _measures(data, beta):
    j = rest_joints(data, beta)
    t = rest_tips(data, beta)
    return {
        "hand_length": np.linalg.norm(t[2] - j[0]),
        "mcp_breadth": np.linalg.norm(j[1] - j[7]),
        "palm_length": np.linalg.norm(j[4] - j[0]),
        "middle_finger": np.linalg.norm(t[2] - j[4]),
        "thumb": np.linalg.norm(t[0] - j[13]),
        "index_ring": np.linalg.norm(t[1] - j[1]) / np.linalg.norm(t[3] - j[10]),
        "little": np.linalg.norm(t[4] - j[7]),
        "proximal": np.linalg.norm(j[5] - j[4]),
    }


@pytest.mark.parametrize("k", sorted(_SHAPE_CLAIMS))
def test_shape_directions_change_what_they_claim(right, k):
    name, change, tol = _SHAPE_CLAIMS[k]
    beta = np.zeros(10)
    beta[k] = 1.0
    base, moved = _measures(right, np.zeros(10)), _measures(right, beta)
    assert moved[name] / base[name] - 1 == pytest.approx(change, abs=tol)
    if k != 0:  # only the overall size may change the overall length much
        assert abs(moved["hand_length"] / base["hand_length"] - 1) < 0.025


def test_mesh_only_shape_directions(right):
    v0 = right.v_template
    for k in (5, 6):
        assert np.abs(right.j_shapedirs[..., k]).max() < 1e-9, f"{right.shape_names[k]} must not move joints"
    # thickness: the palm gets thicker (y extent), not wider.
    j = right.j_template
    palm = (np.abs(v0[:, 0] - (j[0, 0] + j[4, 0]) / 2) < 0.003) & (np.abs(v0[:, 2] - j[4, 2]) < 0.004)
    d = right.shapedirs[..., 5]
    assert np.ptp((v0 + d)[palm, 1]) / np.ptp(v0[palm, 1]) - 1 > 0.04
    across = np.abs(v0[:, 0] - (j[0, 0] + j[4, 0]) / 2) < 0.003
    assert abs(np.ptp((v0 + d)[across, 2]) / np.ptp(v0[across, 2]) - 1) < 0.02
    # finger girth: vertices of the middle finger's middle phalanx move away from its axis.
    a, b = right.j_template[5], right.j_template[6]
    u = (b - a) / np.linalg.norm(b - a)
    rel = v0 - a
    along = rel @ u
    sel = (along > 0.3 * np.linalg.norm(b - a)) & (along < 0.7 * np.linalg.norm(b - a))
    radial = rel - np.outer(along, u)
    sel &= np.linalg.norm(radial, axis=1) < 0.012
    grown = np.linalg.norm(
        radial[sel] + right.shapedirs[sel, :, 6] - np.outer(right.shapedirs[sel, :, 6] @ u, u), axis=1
    )
    assert np.median(grown / np.linalg.norm(radial[sel], axis=1)) - 1 == pytest.approx(0.06, abs=0.02)


def test_phalanx_proportion_keeps_finger_length(right):
    beta = np.zeros(10)
    beta[9] = 1.0
    base, moved = _measures(right, np.zeros(10)), _measures(right, beta)
    assert moved["proximal"] / base["proximal"] - 1 == pytest.approx(0.04, abs=0.01)
    assert moved["middle_finger"] == pytest.approx(base["middle_finger"], rel=2e-3)


# ---------------------------------------------------------------- numpy forward


def test_rest_pose_gives_rest_joints(right):
    rng = np.random.default_rng(1)
    beta = rng.normal(size=(3, 10))
    transl = rng.normal(scale=0.3, size=(3, 3))
    out = forward(right, np.zeros((3, 16, 3)), beta, transl)
    np.testing.assert_allclose(out.joints, rest_joints(right, beta) + transl[:, None], atol=1e-12)
    shaped = right.v_template + np.einsum("vkb,nb->nvk", right.shapedirs, beta)
    np.testing.assert_allclose(out.vertices, shaped + transl[:, None], atol=1e-12)
    assert out.keypoints.shape == (3, 21, 3)
    np.testing.assert_allclose(out.keypoints[:, HandKeypoint.MIDDLE_TIP], out.vertices[:, right.tip_vertex_ids[2]])
    np.testing.assert_allclose(out.keypoints[:, HandKeypoint.THUMB_CMC], out.joints[:, ManoJoint.THUMB1])


@pytest.mark.parametrize("joint", range(16))
def test_rotating_one_joint_moves_only_its_descendants(right, joint):
    theta = np.zeros((1, 16, 3))
    theta[0, joint] = [0.3, -0.5, 0.4]
    rest = forward(right, np.zeros((1, 16, 3)))
    out = forward(right, theta)
    moved = np.linalg.norm(out.joints[0] - rest.joints[0], axis=1) > 1e-9
    sub = descendants(joint)
    assert not moved[joint], "a joint rotates about its own rest position"
    assert set(np.flatnonzero(moved)) == sub - {joint}
    # Fingertips of other fingers stay put.
    tip_joint = {0: 15, 1: 3, 2: 6, 3: 12, 4: 9}
    for i, dist in tip_joint.items():
        tip_moved = np.linalg.norm(out.keypoints[0, 4 * i + 4] - rest.keypoints[0, 4 * i + 4]) > 1e-9
        assert tip_moved == (dist in sub)


def test_global_orient_pivots_about_j0_then_translates(right):
    beta = np.linspace(-1, 1, 10)
    theta = np.zeros((1, 16, 3))
    theta[0, 0] = [0.4, 1.1, -0.3]
    transl = np.array([0.1, -0.2, 0.5])
    out = forward(right, theta, beta, transl)
    j0 = rest_joints(right, beta)[0]
    np.testing.assert_allclose(out.joints[0, 0], j0 + transl, atol=1e-12)
    rot = rodrigues(theta[0, 0])
    rest = forward(right, np.zeros((1, 16, 3)), beta)
    expected = (rest.vertices[0] - j0) @ rot.T + j0 + transl
    np.testing.assert_allclose(out.vertices[0], expected, atol=1e-12)


def test_left_is_the_mirror_of_right(right, left):
    rng = np.random.default_rng(2)
    theta = rng.normal(scale=0.4, size=(2, 16, 3))
    beta = rng.normal(size=(2, 10))
    transl = rng.normal(scale=0.2, size=(2, 3))
    out_r = forward(right, theta, beta, transl)
    # A mirrored rotation vector is -M w (rotation vectors are pseudo-vectors).
    out_l = forward(left, -theta * MIRROR, beta, transl * MIRROR)
    np.testing.assert_allclose(out_l.vertices, out_r.vertices * MIRROR, atol=1e-12)
    np.testing.assert_allclose(out_l.keypoints, out_r.keypoints * MIRROR, atol=1e-12)
    assert signed_volume(left.v_template, left.faces) == pytest.approx(signed_volume(right.v_template, right.faces))
    # Frames: same flexion axis sense (curl), mirrored bone and palmar axes.
    np.testing.assert_allclose(
        left.joint_frames, MIRROR[:, None] * right.joint_frames * np.array([-1, 1, 1]), atol=1e-9
    )
    np.testing.assert_allclose(
        to_local(-theta * MIRROR, left.joint_frames), to_local(theta, right.joint_frames) * [1, -1, -1], atol=1e-9
    )


def test_bad_inputs_raise_clear_errors(right, tmp_path):
    with pytest.raises(HandModelError, match="theta must have shape"):
        forward(right, np.zeros((2, 15, 3)))
    with pytest.raises(HandModelError, match="side"):
        load_builtin("middle")
    bad = tmp_path / "hand.safetensors"
    bad.write_bytes(b"\x01\x00")
    with pytest.raises(HandModelError, match="damaged"):
        load_builtin("right", bad)
    with pytest.raises(HandModelError, match="missing"):
        load_builtin("right", tmp_path / "nothing.safetensors")


# ---------------------------------------------------------------- anatomy and rotations


@pytest.mark.parametrize("side", ["right", "left"])
def test_joint_frames_are_rotations_along_bones_that_curl_toward_the_palm(side, right, left):
    data = right if side == "right" else left
    f = data.joint_frames
    np.testing.assert_allclose(f.transpose(0, 2, 1) @ f, np.broadcast_to(np.eye(3), f.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(f), 1.0, atol=1e-9)
    tips = rest_tips(data)
    np.testing.assert_allclose(joint_frames_from_rest(data.j_template, side, tips), f, atol=1e-12)
    palm = f[ManoJoint.MIDDLE1][:, 2]
    for i, chain in enumerate(CHAINS.values()):
        ends = [data.j_template[c] for c in chain] + [tips[i]]
        for k, joint in enumerate(chain):
            bone = (ends[k + 1] - ends[k]) / np.linalg.norm(ends[k + 1] - ends[k])
            assert f[joint][:, 1] @ bone > 0.999
            # +40 degrees of local flexion moves the tip toward the palm side.
            theta = np.zeros((1, 16, 3))
            theta[0, joint] = from_local(np.array([[0.7, 0, 0]]), f[joint : joint + 1])[0]
            out = forward(data, theta)
            tip_move = out.keypoints[0, 4 * i + 4] - forward(data, np.zeros((1, 16, 3))).keypoints[0, 4 * i + 4]
            lean = palm if i else f[joint][:, 2]
            assert tip_move @ lean > 0.5 * np.linalg.norm(tip_move), (side, joint)


def test_limits_and_violation_helpers(right, left):
    lim = right.joint_limits
    assert lim.shape == (16, 3, 2) and np.all(lim[..., 0] < lim[..., 1])
    assert np.all(np.degrees(lim[[1, 4, 7, 10], 0, 1]) >= 90), "MCP flexion reaches at least 90 degrees"
    np.testing.assert_allclose(left.joint_limits[:, 0], lim[:, 0])
    np.testing.assert_allclose(left.joint_limits[:, 1:], -lim[:, 1:, ::-1])
    np.testing.assert_allclose(default_joint_limits("left"), left.joint_limits)
    frames = right.joint_frames
    zero = np.zeros((2, 16, 3))
    assert np.all(limit_violation(zero, frames, lim) == 0)
    local = np.zeros((16, 3))
    local[2, 0] = np.radians(130)  # PIP flexed 20 degrees past 110
    local[5, 2] = np.radians(-25)  # PIP abducted 15 degrees past -10
    viol = limit_violation(from_local(local, frames), frames, lim)
    assert viol[2, 0] == pytest.approx(np.radians(20)) and viol[5, 2] == pytest.approx(np.radians(15))
    assert np.count_nonzero(viol > 1e-12) == 2
    clamped = clamp_to_limits(from_local(local, frames), frames, lim)
    assert np.all(limit_violation(clamped, frames, lim) < 1e-12)


def test_rodrigues_round_trip_including_zero_and_near_pi():
    rng = np.random.default_rng(3)
    axes = rng.normal(size=(50, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-9, 1e-4, np.pi - 1e-7, np.pi - 1e-3], rng.uniform(0, np.pi, 45)])
    rv = axes * angles[:, None]
    rot = rodrigues(rv)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(rodrigues(matrix_to_rotvec(rot)), rot, atol=1e-7)
    np.testing.assert_allclose(matrix_to_rotvec(rot)[:3], rv[:3], atol=1e-12)


# ---------------------------------------------------------------- torch model


def test_torch_matches_numpy_within_a_micrometre(right, left):
    torch = pytest.importorskip("torch")
    from handcap.inference.handmodel import HandModel, load_hand_model

    rng = np.random.default_rng(4)
    theta = rng.normal(scale=0.6, size=(5, 16, 3))
    beta = rng.normal(size=(5, 10))
    transl = rng.normal(scale=0.3, size=(5, 3))
    for data in (right, left):
        model = HandModel(data)  # float32, as the fitter uses it
        ref = forward(data, theta, beta, transl)
        out = model(torch.tensor(theta), torch.tensor(beta), torch.tensor(transl))
        assert np.abs(out.vertices.numpy() - ref.vertices).max() < 1e-6
        assert np.abs(out.keypoints.numpy() - ref.keypoints).max() < 1e-6
        assert np.abs(out.rest_joints.numpy() - ref.rest_joints).max() < 1e-6
        # a skeleton calibrated beyond beta: both move the same rest joints and skin about them
        offsets = rng.normal(scale=0.004, size=(16, 3))
        ref_off = forward(data, theta, beta, transl, joint_offsets=offsets)
        out_off = model(
            torch.tensor(theta), torch.tensor(beta), torch.tensor(transl), joint_offsets=torch.tensor(offsets)
        )
        assert np.abs(out_off.vertices.numpy() - ref_off.vertices).max() < 1e-6
        assert np.abs(out_off.keypoints.numpy() - ref_off.keypoints).max() < 1e-6
        assert np.abs(ref_off.rest_joints - ref.rest_joints - offsets).max() < 1e-12
        assert np.abs(ref_off.keypoints - ref.keypoints).max() > 1e-3  # the offsets do move the keypoints
        fast = model(torch.tensor(theta), torch.tensor(beta), torch.tensor(transl), with_vertices=False)
        assert fast.vertices is None
        assert torch.allclose(fast.keypoints, out.keypoints, atol=1e-7)
    model = load_hand_model("builtin", "left")
    assert model.side == "left" and model.num_betas == 10 and tuple(model.faces.shape) == left.faces.shape
    assert tuple(model.joint_frames.shape) == (16, 3, 3) and tuple(model.joint_limits.shape) == (16, 3, 2)
    assert model.parents.tolist() == MANO_PARENTS.tolist()


def test_torch_gradients_are_finite_at_the_flat_hand():
    torch = pytest.importorskip("torch")
    from handcap.inference.handmodel import load_hand_model

    model = load_hand_model("builtin", "right")
    theta = torch.zeros(3, 16, 3, requires_grad=True)
    beta = torch.zeros(10, requires_grad=True)
    out = model(theta, beta, torch.zeros(3), with_vertices=False)
    (out.keypoints**2).sum().backward()
    assert torch.isfinite(theta.grad).all() and torch.isfinite(beta.grad).all()
    assert beta.grad.abs().sum() > 0 and theta.grad.abs().sum() > 0
    with pytest.raises(HandModelError, match="beta must have shape"):
        model(torch.zeros(3, 16, 3), torch.zeros(3, 9))
    with pytest.raises(HandModelError, match="unknown hand model kind"):
        load_hand_model("smpl")


@pytest.mark.slow
def test_asset_is_reproduced_by_its_generator():
    res = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_hand_model.py"), "--check", "--out", str(BUILTIN_PATH)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK:" in res.stdout


def test_generator_sums_in_a_fixed_order():
    """The generator's reductions equal plain left-to-right float sums bit for bit (no BLAS kernel order)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import handmodel_exact as ex
    finally:
        sys.path.remove(str(REPO / "tools"))
    rng = np.random.default_rng(7)
    a, m = rng.normal(size=(50, 21)), rng.normal(size=(21, 3))
    naive = np.array(
        [[sum((a[i, k] * m[k, j] for k in range(1, 21)), a[i, 0] * m[0, j]) for j in range(3)] for i in range(50)]
    )
    assert ex.matmul(a, m).tobytes() == naive.tobytes()
    v = rng.normal(size=(40, 3))
    assert ex.norm(v, axis=1).tolist() == [math.sqrt(x * x + y * y + z * z) for x, y, z in v]
    # A near tie (closer than the tie grid) goes to the first candidate whatever the rounding.
    d = np.array([[0.0123456789, 0.0123456789 - 1e-13], [0.02, 0.01]])
    assert ex.argmin_robust(d, axis=1).tolist() == [0, 1]


def test_thumb_opposition_is_reachable_within_the_default_limits():
    torch = pytest.importorskip("torch")
    from handcap.inference.handmodel import load_hand_model

    model = load_hand_model("builtin", "right", dtype=torch.float64)
    frames, lim = model.joint_frames, model.joint_limits
    mask = torch.zeros(16, 3, dtype=torch.float64)
    mask[[13, 14, 15, 7, 8, 9]] = 1.0  # thumb and little finger may move
    local = torch.zeros(16, 3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([local], lr=0.04)
    for _ in range(300):
        clamped = torch.maximum(torch.minimum(local * mask, lim[..., 1]), lim[..., 0])
        theta = torch.einsum("jik,jk->ji", frames, clamped)
        kp = model(theta[None], with_vertices=False).keypoints[0]
        dist = (kp[HandKeypoint.THUMB_TIP] - kp[HandKeypoint.PINKY_TIP]).norm()
        opt.zero_grad()
        dist.backward()
        opt.step()
    assert dist.item() < 0.005
