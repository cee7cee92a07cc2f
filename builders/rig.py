"""Stage 1 of an import: the armature object and its edit bones (rest pose).

The armature's object space is the capture's OpenCV camera frame; bones come from
``convention.BoneLayout``. Everything after edit mode (mesh, modifiers, keys) is
stage 2 and addresses bones by name only, because edit-bone references die when
edit mode ends.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from .convention import BoneLayout, affine


def ensure_object_mode(context) -> None:
    """Leave edit/pose/sculpt mode: bones can only be built from object mode."""
    obj = context.view_layer.objects.active
    if obj is not None and obj.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")


def create_armature(
    context,
    collection: bpy.types.Collection,
    name: str,
    data_name: str,
    layout: BoneLayout,
    bone_names: list[str],
    parent: bpy.types.Object | None = None,
) -> tuple[bpy.types.Object, np.ndarray]:
    """Create an armature object whose bones follow ``layout`` (21 bones named ``bone_names``).

    Joint bones deform, tip bones do not. Finger segments after the first are connected
    to their parent (their heads coincide), so dragging a chain keeps it in one piece.

    Returns:
        (object, rest): the armature object (left in object mode, active and selected) and
        (21, 4, 4) float64 ``Bone.matrix_local`` read back from Blender, i.e. the rest
        matrices Blender really uses (float32 rounding included) in armature space.
    """
    if len(bone_names) != len(layout.heads):
        raise ValueError(f"{len(bone_names)} bone names for {len(layout.heads)} bones")
    arm = bpy.data.armatures.new(data_name)
    arm.display_type = "OCTAHEDRAL"
    obj = bpy.data.objects.new(name, arm)
    collection.objects.link(obj)
    if parent is not None:
        obj.parent = parent
    obj.show_in_front = True

    ensure_object_mode(context)
    for other in context.view_layer.objects.selected:
        other.select_set(False)
    context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        _build_edit_bones(arm, layout, bone_names)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    rest = np.array([np.array(arm.bones[n].matrix_local, dtype=np.float64) for n in bone_names])
    return obj, rest


def _build_edit_bones(arm: bpy.types.Armature, layout: BoneLayout, bone_names: list[str]) -> None:
    mats = affine(layout.frames, layout.heads)
    lengths = np.linalg.norm(layout.tails - layout.heads, axis=1)
    for name, mat, length in zip(bone_names, mats, lengths, strict=True):
        eb = arm.edit_bones.new(name)
        # The matrix setter keeps the bone's length, so give it the length first.
        eb.head = (0.0, 0.0, 0.0)
        eb.tail = (0.0, float(length), 0.0)
        eb.matrix = Matrix(mat.tolist())
    for i, parent in enumerate(layout.parents):
        if parent < 0:
            continue
        eb = arm.edit_bones[bone_names[i]]
        eb.parent = arm.edit_bones[bone_names[parent]]
        # Connect where the head already sits on the parent's tail, except on the wrist's children
        # (their heads fan out from the palm and only the middle finger's would qualify).
        eb.use_connect = bool(layout.parents[parent] >= 0) and bool(
            np.allclose(layout.heads[i], layout.tails[parent], atol=1e-9)
        )
    n_joints = len(bone_names) - 5
    for name in bone_names[n_joints:]:
        arm.edit_bones[name].use_deform = False


def rest_frames(rest: np.ndarray) -> np.ndarray:
    """(N, 4, 4) read-back rest matrices -> (N, 3, 3) exactly orthonormal rotations (nearest, via SVD),
    removing float32 round-off before they enter the pose conversion."""
    u, _, vt = np.linalg.svd(rest[:, :3, :3])
    return u @ vt
