"""MANO pose -> Blender bone transforms (numpy only, no bpy: testable without Blender).

Frames. The armature's object space is the OpenCV camera frame of the capture
(x right, y down, z forward, metres); a "camera space" Empty above it maps that
frame into the Blender world (``OPENCV_TO_BLENDER``). The rest pose is the flat
template hand with rest joints ``J = J(beta)`` (template axes taken as camera axes).

Bones. Bone j (0..15, MANO order) has its head at ``J[j]`` and rest rotation
``B[j]`` (3x3, COLUMNS = bone X, Y, Z in armature space; Y along the bone, X the
curl axis). The 5 tip bones (FINGERS order) start at the fingertips and never move
relative to their distal segment.

Conversion. MANO poses joint j by ``R_j = rodrigues(theta[j])`` about ``J[j]`` in
template axes, relative to its parent; the root pivots about ``J[0]`` and
``transl`` is added last. Blender's pose chain (``blender_pose_matrices``) gives
``P_j = P_parent @ Rest_parent^-1 @ Rest_j @ Basis_j`` with ``Rest_j = [B_j | J_j]``.
Choosing ``Basis_j = rot(B_j^T R_j B_j)`` (plus ``loc = B_0^T transl`` on the root)
makes ``P_j @ Rest_j^-1`` equal MANO's skinning transform of joint j for every
pose, so bones and an LBS-skinned mesh reproduce the model exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.keypoints import FINGERS, MANO_PARENTS, NUM_JOINTS, HandKeypoint
from ..core.lbs import global_transforms, rodrigues
from ..core.naming import FINGER_JOINTS
from ..core.quat import make_continuous  # noqa: F401  (re-exported: one hemisphere rule for keys and filters)

#: Rotation of the "camera space" Empty: OpenCV camera axes -> Blender world for a
#: camera at the origin looking along +Y (x -> +X, y (down) -> -Z, z (forward) -> +Y).
#: It is a rotation of -90 degrees about X.
OPENCV_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
OPENCV_TO_BLENDER_EULER = (-np.pi / 2, 0.0, 0.0)

#: Distal MANO joint of each finger, in FINGERS order (thumb, index, middle, ring, pinky).
DISTAL_JOINTS = np.array([int(FINGER_JOINTS[f][-1]) for f in FINGERS], dtype=np.int64)
#: Bone whose tail is joint j's child: the wrist bone ends at the middle MCP.
WRIST_TAIL_JOINT = int(FINGER_JOINTS["middle"][0])
#: Tip bone length as a fraction of its distal segment (display only).
TIP_BONE_FRACTION = 0.5


@dataclass
class BoneLayout:
    """Rest layout of the 21 bones (16 joint bones in MANO order, then 5 tip bones).

    Attributes:
        heads: (21, 3) float64 bone heads, armature space (OpenCV camera frame), metres.
        tails: (21, 3) float64 bone tails, same frame.
        frames: (21, 3, 3) float64 rest rotations, columns = bone X (curl axis), Y (head -> tail), Z = X x Y.
        parents: (21,) int64 parent bone index, -1 for the wrist.
    """

    heads: np.ndarray
    tails: np.ndarray
    frames: np.ndarray
    parents: np.ndarray

    @property
    def rest_matrices(self) -> np.ndarray:
        """(21, 4, 4) bone rest matrices ``[B | head]`` (Blender's ``Bone.matrix_local``)."""
        return affine(self.frames, self.heads)


def affine(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations and (..., 3) translations -> (..., 4, 4) matrices."""
    rot = np.asarray(rot, dtype=np.float64)
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


def frames_along(heads: np.ndarray, tails: np.ndarray, x_hint: np.ndarray) -> np.ndarray:
    """Orthonormal bone frames with Y exactly along head -> tail and X closest to ``x_hint``.

    Blender derives a bone's Y axis from its head and tail, so a frame whose Y is
    even slightly off would not survive edit mode; projecting the hint keeps X the
    curl axis. Shapes: (N, 3), (N, 3), (N, 3, 3) hint frames or (N, 3) hint X axes.
    """
    y = np.asarray(tails, np.float64) - np.asarray(heads, np.float64)
    length = np.linalg.norm(y, axis=-1, keepdims=True)
    if np.any(length < 1e-6):
        raise ValueError("a bone is shorter than 1 micrometre; the rest joints are degenerate")
    y = y / length
    hint = np.asarray(x_hint, np.float64)
    x = hint[..., :, 0] if hint.ndim == 3 else hint
    x = x - np.sum(x * y, axis=-1, keepdims=True) * y
    xn = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(xn < 1e-6):
        raise ValueError("a joint frame's X axis is parallel to its bone; cannot set the bone roll")
    x = x / xn
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def bone_layout(rest_joints: np.ndarray, rest_tips: np.ndarray, joint_frames: np.ndarray) -> BoneLayout:
    """Build the 21-bone rest layout.

    Args:
        rest_joints: (16, 3) rest joints J(beta), metres (template axes = armature space).
        rest_tips: (5, 3) rest fingertips in FINGERS order.
        joint_frames: (16, 3, 3) anatomical frames (columns x = curl, y = along the bone, z = x cross y);
            only their X axes are used, re-orthonormalised against the actual bone directions.
    """
    joints = np.asarray(rest_joints, np.float64).reshape(NUM_JOINTS, 3)
    tips = np.asarray(rest_tips, np.float64).reshape(5, 3)
    tails = np.empty((NUM_JOINTS, 3))
    tails[0] = joints[WRIST_TAIL_JOINT]
    for j in range(1, NUM_JOINTS):
        children = np.flatnonzero(MANO_PARENTS == j)
        if len(children):
            tails[j] = joints[children[0]]
    tails[DISTAL_JOINTS] = tips
    frames = frames_along(joints, tails, np.asarray(joint_frames, np.float64))
    # Tip bones continue their distal segment: same frame, short tail.
    seg = tips - joints[DISTAL_JOINTS]
    tip_tails = tips + TIP_BONE_FRACTION * seg
    heads = np.concatenate([joints, tips])
    all_tails = np.concatenate([tails, tip_tails])
    all_frames = np.concatenate([frames, frames[DISTAL_JOINTS]])
    parents = np.concatenate([MANO_PARENTS, DISTAL_JOINTS]).astype(np.int64)
    return BoneLayout(heads=heads, tails=all_tails, frames=all_frames, parents=parents)


def estimate_rest_tips(rest_joints: np.ndarray, kp3d: np.ndarray | None, valid: np.ndarray | None) -> np.ndarray:
    """(5, 3) rest fingertips when no hand model mesh is at hand.

    Direction: the middle segment's; length: median fitted tip-to-DIP distance over
    valid frames of ``kp3d`` (T, 21, 3), else 0.8 of the middle segment.
    """
    joints = np.asarray(rest_joints, np.float64)
    tip_kp = [HandKeypoint[f"{finger.upper()}_TIP"] for finger in FINGERS]
    out = np.empty((5, 3))
    for f, (finger, tip) in enumerate(zip(FINGERS, tip_kp, strict=True)):
        j1, j2, j3 = (int(j) for j in FINGER_JOINTS[finger])
        d = joints[j3] - joints[j2]
        seg = np.linalg.norm(d)
        length = 0.8 * seg
        if kp3d is not None and valid is not None and np.any(valid):
            pts = np.asarray(kp3d, np.float64)[np.asarray(valid, bool)]
            length = float(np.median(np.linalg.norm(pts[:, tip] - pts[:, tip - 1], axis=-1)))
        out[f] = joints[j3] + d / max(seg, 1e-9) * length
    return out


def matrix_to_quaternion(mat: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z), w >= 0 where possible.

    Shepperd's method: branch on the largest of (trace, diagonal) for accuracy at any angle.
    """
    m = np.asarray(mat, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    tr = np.trace(m, axis1=1, axis2=2)
    diag = np.diagonal(m, axis1=1, axis2=2)
    choice = np.argmax(np.concatenate([tr[:, None], diag], axis=1), axis=1)
    q = np.empty((len(m), 4))
    # w largest
    i = choice == 0
    s = np.sqrt(np.maximum(tr[i] + 1.0, 0.0)) * 2.0
    q[i] = np.stack(
        [0.25 * s, (m[i, 2, 1] - m[i, 1, 2]) / s, (m[i, 0, 2] - m[i, 2, 0]) / s, (m[i, 1, 0] - m[i, 0, 1]) / s], -1
    )
    for axis in range(3):
        i = choice == axis + 1
        a, b, c = axis, (axis + 1) % 3, (axis + 2) % 3
        s = np.sqrt(np.maximum(1.0 + m[i, a, a] - m[i, b, b] - m[i, c, c], 0.0)) * 2.0
        qi = np.empty((int(i.sum()), 4))
        qi[:, 0] = (m[i, c, b] - m[i, b, c]) / s
        qi[:, 1 + a] = 0.25 * s
        qi[:, 1 + b] = (m[i, b, a] + m[i, a, b]) / s
        qi[:, 1 + c] = (m[i, c, a] + m[i, a, c]) / s
        q[i] = qi
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(shape + (4,))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), normalised first like Blender does -> (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def pose_to_bone_basis(theta: np.ndarray, transl: np.ndarray, rest_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MANO pose -> Blender pose-bone basis for the 16 joint bones.

    Args:
        theta: (T, 16, 3) axis-angle in template axes (flat-hand relative, row 0 global orient).
        transl: (T, 3) MANO translation, metres, armature space.
        rest_frames: (16, 3, 3) bone rest rotations B_j (columns X, Y, Z), armature space.

    Returns:
        (quats, wrist_loc): (T, 16, 4) ``rotation_quaternion`` (w, x, y, z) of each joint bone,
        hemisphere-continuous over T; (T, 3) ``location`` of the wrist bone (in its rest frame).
    """
    theta = np.asarray(theta, np.float64)
    b = np.asarray(rest_frames, np.float64)[:NUM_JOINTS]
    rot = rodrigues(theta)
    local = np.swapaxes(b, -1, -2)[None] @ rot @ b[None]
    quats = make_continuous(matrix_to_quaternion(local))
    loc = np.einsum("ji,tj->ti", b[0], np.asarray(transl, np.float64))
    return quats, loc


def basis_matrices(quats: np.ndarray, locs: np.ndarray | None = None) -> np.ndarray:
    """(..., 4) quaternions and optional (..., 3) locations -> (..., 4, 4) ``PoseBone.matrix_basis``."""
    rot = quaternion_to_matrix(quats)
    trans = np.zeros(rot.shape[:-1]) if locs is None else locs
    return affine(rot, trans)


def blender_pose_matrices(rest: np.ndarray, parents: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Reimplementation of Blender's pose chain (inherit rotation and scale, local location).

    ``PoseBone.matrix`` (armature space) of bone j is ``P_p @ inv(Rest_p) @ Rest_j @ Basis_j``,
    or ``Rest_j @ Basis_j`` for a root.

    Args:
        rest: (N, 4, 4) ``Bone.matrix_local``; parents: (N,) with parents before children;
        basis: (T, N, 4, 4) ``PoseBone.matrix_basis``.

    Returns:
        (T, N, 4, 4) pose matrices in armature space.
    """
    rest = np.asarray(rest, np.float64)
    inv_rest = np.linalg.inv(rest)
    out = np.empty(np.shape(basis), dtype=np.float64)
    for j, p in enumerate(parents):
        local = rest[j] @ basis[:, j]
        out[:, j] = local if p < 0 else out[:, p] @ (inv_rest[p] @ local)
    return out


def mano_skinning_transforms(theta: np.ndarray, transl: np.ndarray, rest_joints: np.ndarray) -> np.ndarray:
    """MANO's per-joint skinning transforms ``A_j`` (T, 16, 4, 4): a rest point p on joint j goes to
    ``A_j @ p`` (the model's own forward kinematics, via ``core.lbs``), translation included."""
    theta = np.asarray(theta, np.float64)
    t = len(theta)
    joints = np.broadcast_to(np.asarray(rest_joints, np.float64), (t, NUM_JOINTS, 3))
    rot_g, pos_g = global_transforms(rodrigues(theta), joints, MANO_PARENTS)
    trans = pos_g - np.einsum("tjkl,tjl->tjk", rot_g, joints) + np.asarray(transl, np.float64)[:, None]
    return affine(rot_g, trans)
