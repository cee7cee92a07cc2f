"""Hand model data (MANO-compatible) and its numpy forward pass (no torch, no bpy).

One ``HandModelData`` describes either the built-in model shipped in
``assets/hand_builtin.safetensors`` (made by tools/make_hand_model.py, see
docs/hand-model.md) or a user's MANO file converted by
``inference.handmodel.mano``. Both follow MANO's conventions exactly:

* template axes (right hand): fingers along -x, thumb toward +z, palm normal
  about -y; metres; left hand = right hand mirrored in x;
* 16 joints in ``ManoJoint`` order with parents ``MANO_PARENTS``; theta (16, 3)
  axis-angle relative to the parent in template axes and relative to the FLAT
  hand; row 0 pivots about J0(beta); ``transl`` is added last;
* rest joints are linear in beta: ``J(beta) = j_template + j_shapedirs @ beta``
  (for MANO this equals ``J_regressor @ (v_template + shapedirs @ beta)``, the
  regressor is applied once at conversion, so a joints-only forward never touches
  the vertices);
* keypoints: the 16 joints plus 5 fingertip vertices, in ``HandKeypoint`` order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .anatomy import default_joint_limits, joint_frames_from_rest
from .keypoints import MANO_PARENTS, NUM_BETAS, NUM_JOINTS, mano_to_keypoints
from .lbs import global_transforms, rodrigues, skin
from .tensorfile import TensorFileError, load_tensors

BUILTIN_ID = "builtin-v1"
MODEL_IDS = (BUILTIN_ID, "mano")
BUILTIN_PATH = Path(__file__).resolve().parent.parent / "assets" / "hand_builtin.safetensors"
_MIRROR = np.array([-1.0, 1.0, 1.0])


class HandModelError(ValueError):
    """A hand model could not be loaded or is inconsistent (message says why and what to do)."""


@dataclass
class HandModelData:
    """Arrays of one hand model side (float64 numpy unless noted). V vertices, F faces.

    Attributes:
        side: "right" or "left".
        model_id: "builtin-v1" or "mano".
        v_template: (V, 3) flat-hand template vertices, metres, template axes.
        faces: (F, 3) int32 triangles, counter-clockwise seen from outside.
        shapedirs: (V, 3, 10) vertex offset per unit beta (metres).
        posedirs: (V, 3, 135) pose-corrective offsets over (R_j - I) of joints 1..15, or None.
        j_template: (16, 3) rest joints at beta = 0, metres.
        j_shapedirs: (16, 3, 10) rest-joint offset per unit beta.
        weights: (V, 16) skinning weights, rows sum to 1.
        parents: (16,) int64 parent joint (MANO_PARENTS).
        tip_vertex_ids: (5,) int64 fingertip vertices, thumb, index, middle, ring, pinky.
        joint_frames: (16, 3, 3) local joint axes as columns (core.anatomy), at beta = 0.
        joint_limits: (16, 3, 2) radians [min, max] of the local rotation vector.
        j_regressor: (16, V) joint regressor when the model has one (MANO), else None.
        shape_names: name of each beta direction.
        info: free-form provenance (source file, version).
    """

    side: str
    model_id: str
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray | None
    j_template: np.ndarray
    j_shapedirs: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    tip_vertex_ids: np.ndarray
    joint_frames: np.ndarray
    joint_limits: np.ndarray
    j_regressor: np.ndarray | None = None
    shape_names: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    def validate(self) -> None:
        """Raise HandModelError naming the first inconsistent array."""
        v = self.num_vertices
        if self.side not in ("right", "left"):
            raise HandModelError(f"side must be 'right' or 'left', got {self.side!r}")
        if self.model_id not in MODEL_IDS:
            raise HandModelError(f"model_id must be one of {MODEL_IDS}, got {self.model_id!r}")
        b = self.num_betas
        expected = {
            "v_template": (v, 3),
            "shapedirs": (v, 3, b),
            "j_template": (NUM_JOINTS, 3),
            "j_shapedirs": (NUM_JOINTS, 3, b),
            "weights": (v, NUM_JOINTS),
            "parents": (NUM_JOINTS,),
            "tip_vertex_ids": (5,),
            "joint_frames": (NUM_JOINTS, 3, 3),
            "joint_limits": (NUM_JOINTS, 3, 2),
        }
        if self.posedirs is not None:
            expected["posedirs"] = (v, 3, 9 * (NUM_JOINTS - 1))
        if self.j_regressor is not None:
            expected["j_regressor"] = (NUM_JOINTS, v)
        for name, shape in expected.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise HandModelError(
                    f"hand model {self.model_id} ({self.side}): {name} has shape {arr.shape}, expected {shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise HandModelError(f"hand model {self.model_id} ({self.side}): {name} contains NaN or inf")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.min() < 0 or self.faces.max() >= v:
            raise HandModelError(f"faces must be (F, 3) vertex indices in [0, {v}), got shape {self.faces.shape}")
        if not np.array_equal(self.parents, MANO_PARENTS):
            raise HandModelError(f"parents {self.parents.tolist()} differ from MANO's {MANO_PARENTS.tolist()}")
        if self.tip_vertex_ids.min() < 0 or self.tip_vertex_ids.max() >= v:
            raise HandModelError(f"tip_vertex_ids {self.tip_vertex_ids.tolist()} out of range for {v} vertices")
        if not np.allclose(self.weights.sum(axis=1), 1.0, atol=1e-4):
            raise HandModelError("skinning weight rows must sum to 1")


@dataclass
class HandModelOutput:
    """Numpy forward result, metres, in the frame of ``transl`` (camera frame in a capture).

    Attributes:
        vertices: (B, V, 3) posed mesh vertices.
        joints: (B, 16, 3) posed joints, MANO order.
        keypoints: (B, 21, 3) joints + fingertip vertices in HandKeypoint order.
        rest_joints: (B, 16, 3) rest joints J(beta) (template axes, no pose, no transl).
    """

    vertices: np.ndarray
    joints: np.ndarray
    keypoints: np.ndarray
    rest_joints: np.ndarray


def mirror_data(data: HandModelData, side: str) -> HandModelData:
    """The same model mirrored in x (right <-> left): geometry, winding, shape space, frames, limits."""
    m = _MIRROR
    posedirs = None
    if data.posedirs is not None:
        # Mirrored rotations are M R M, so entry (a, b) of (R_j - I) flips sign by m_a * m_b.
        sign_ab = np.outer(m, m).ravel()
        posedirs = data.posedirs * m[None, :, None] * np.tile(sign_ab, NUM_JOINTS - 1)[None, None, :]
    out = replace(
        data,
        side=side,
        v_template=data.v_template * m,
        faces=np.ascontiguousarray(data.faces[:, ::-1]),
        shapedirs=data.shapedirs * m[None, :, None],
        posedirs=posedirs,
        j_template=data.j_template * m,
        j_shapedirs=data.j_shapedirs * m[None, :, None],
        info=dict(data.info, mirrored_from=data.side),
    )
    return with_anatomy(out)


def rest_tips(data: HandModelData, beta: np.ndarray | None = None) -> np.ndarray:
    """(5, 3) rest positions of the fingertip vertices for ``beta`` (default: zeros)."""
    ids = data.tip_vertex_ids
    tips = data.v_template[ids]
    if beta is not None:
        tips = tips + data.shapedirs[ids] @ np.asarray(beta, np.float64)
    return tips


def with_anatomy(data: HandModelData) -> HandModelData:
    """Fill joint_frames (from the mean rest joints and tips) and the side's default limits."""
    frames = joint_frames_from_rest(data.j_template, data.side, rest_tips(data))
    return replace(data, joint_frames=frames, joint_limits=default_joint_limits(data.side))


@lru_cache(maxsize=2)
def _read_builtin(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        return load_tensors(path)
    except FileNotFoundError:
        raise HandModelError(f"built-in hand model {path} is missing; run tools/make_hand_model.py") from None
    except TensorFileError as exc:
        raise HandModelError(f"built-in hand model is damaged ({exc}); run tools/make_hand_model.py") from None


def data_from_tensors(arrays: dict[str, np.ndarray], meta: dict[str, str], side: str = "right") -> HandModelData:
    """Build the RIGHT-hand data stored in a tensor file (see tools/make_hand_model.py), then mirror if asked."""
    need = ("v_template", "faces", "shapedirs", "j_template", "j_shapedirs", "weights", "tip_vertex_ids")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise HandModelError(f"hand model file lacks arrays {missing}")
    f64 = {
        k: np.asarray(arrays[k], np.float64)
        for k in ("v_template", "shapedirs", "j_template", "j_shapedirs", "weights")
    }
    # Stored as float32: renormalise so the weights are an exact partition of unity in float64.
    f64["weights"] = f64["weights"] / f64["weights"].sum(axis=1, keepdims=True)
    data = HandModelData(
        side=meta.get("side", "right"),
        model_id=meta.get("model_id", BUILTIN_ID),
        faces=np.array(arrays["faces"], np.int32),  # a copy: the file cache stays pristine
        posedirs=np.asarray(arrays["posedirs"], np.float64) if "posedirs" in arrays else None,
        parents=MANO_PARENTS.copy(),
        tip_vertex_ids=np.asarray(arrays["tip_vertex_ids"], np.int64),
        joint_frames=np.zeros((NUM_JOINTS, 3, 3)),
        joint_limits=np.zeros((NUM_JOINTS, 3, 2)),
        j_regressor=np.asarray(arrays["j_regressor"], np.float64) if "j_regressor" in arrays else None,
        shape_names=tuple(json.loads(meta.get("shape_names", "[]"))),
        info={k: v for k, v in meta.items() if k not in ("side", "model_id", "shape_names")},
        **f64,
    )
    data = with_anatomy(data)
    if side not in ("right", "left"):
        raise HandModelError(f"side must be 'right' or 'left', got {side!r}")
    if side != data.side:
        data = mirror_data(data, side)
    data.validate()
    return data


def load_builtin(side: str = "right", path: str | Path | None = None) -> HandModelData:
    """The built-in hand model for ``side`` ("right" or "left")."""
    arrays, meta = _read_builtin(str(path or BUILTIN_PATH))
    return data_from_tensors(arrays, meta, side)


def rest_joints(data: HandModelData, beta: np.ndarray | None = None) -> np.ndarray:
    """Rest joints J(beta): (16, 3) for a (10,) beta, or (B, 16, 3) for (B, 10); metres, template axes."""
    if beta is None:
        return data.j_template.copy()
    beta = np.asarray(beta, np.float64)
    return data.j_template + np.einsum("jkb,...b->...jk", data.j_shapedirs, beta[..., : data.num_betas])


def _batch(theta, beta, transl, num_betas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    theta = np.asarray(theta, np.float64)
    if theta.ndim == 2:
        theta = theta[None]
    if theta.ndim != 3 or theta.shape[1:] != (NUM_JOINTS, 3):
        raise HandModelError(f"theta must have shape (B, 16, 3), got {theta.shape}")
    b = theta.shape[0]
    beta = np.zeros((b, num_betas)) if beta is None else np.asarray(beta, np.float64).reshape(-1, num_betas)
    transl = np.zeros((b, 3)) if transl is None else np.asarray(transl, np.float64).reshape(-1, 3)
    if beta.shape[0] not in (1, b) or transl.shape[0] not in (1, b):
        raise HandModelError(f"beta {beta.shape} / transl {transl.shape} do not match batch size {b}")
    return theta, np.broadcast_to(beta, (b, num_betas)), np.broadcast_to(transl, (b, 3))


def forward(data: HandModelData, theta, beta=None, transl=None, joint_offsets=None) -> HandModelOutput:
    """Pose the model (MANO semantics, see module docstring). Numpy float64 reference implementation.

    Args:
        theta: (B, 16, 3) axis-angle, flat-hand relative (a single (16, 3) is accepted as B = 1).
        beta: (B, 10) or (10,) shape coefficients (default zeros).
        transl: (B, 3) or (3,) translation added last (default zeros).
        joint_offsets: (16, 3) metres added to the rest joints (a capture's ``joint_offsets``; default none).
    """
    theta, beta, transl = _batch(theta, beta, transl, data.num_betas)
    joints_rest = rest_joints(data, beta)
    if joint_offsets is not None:
        joints_rest = joints_rest + np.asarray(joint_offsets, np.float64)
    verts = data.v_template + np.einsum("vkb,nb->nvk", data.shapedirs, beta)
    rot = rodrigues(theta)
    if data.posedirs is not None:
        feat = (rot[:, 1:] - np.eye(3)).reshape(len(theta), -1)
        verts = verts + np.einsum("vkp,np->nvk", data.posedirs, feat)
    rot_g, pos_g = global_transforms(rot, joints_rest, data.parents)
    verts = skin(verts, data.weights, rot_g, pos_g, joints_rest) + transl[:, None]
    joints = pos_g + transl[:, None]
    keypoints = mano_to_keypoints(joints, verts[:, data.tip_vertex_ids])
    return HandModelOutput(vertices=verts, joints=joints, keypoints=keypoints, rest_joints=joints_rest)


__all__ = [
    "BUILTIN_ID",
    "HandModelData",
    "HandModelError",
    "HandModelOutput",
    "NUM_BETAS",
    "data_from_tensors",
    "forward",
    "load_builtin",
    "mirror_data",
    "rest_joints",
    "rest_tips",
    "with_anatomy",
]
