"""Stage 2: the skinned hand mesh under an armature (vertex groups + Armature modifier).

Blender's Armature modifier with "Preserve Volume" off is linear blend skinning:
``v' = sum_j w_j (P_j Rest_j^-1) v`` with weights renormalised per vertex. With the
pose conversion of ``convention`` that is exactly the hand model's LBS, as long as
the mesh rest shape is ``v_template + shapedirs @ beta`` and no pose correctives apply.
"""

from __future__ import annotations

import bpy
import numpy as np

SKIN_MATERIAL = "HC_skin"
SKIN_COLOR = (0.80, 0.58, 0.47, 1.0)


def skin_material() -> tuple[bpy.types.Material, bool]:
    """The shared HandCap skin material: (material, created_now). Re-imports reuse it."""
    mat = bpy.data.materials.get(SKIN_MATERIAL)
    if mat is not None:
        return mat, False
    mat = bpy.data.materials.new(SKIN_MATERIAL)
    mat.diffuse_color = SKIN_COLOR  # viewport solid colour
    mat.roughness = 0.6
    tree = mat.node_tree  # Blender 5 gives new materials a Principled BSDF tree
    bsdf = tree.nodes.get("Principled BSDF") if tree is not None else None
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = SKIN_COLOR
        bsdf.inputs["Roughness"].default_value = 0.6
        sub = bsdf.inputs.get("Subsurface Weight")
        if sub is not None:
            sub.default_value = 0.15
    return mat, True


def create_skinned_mesh(
    collection: bpy.types.Collection,
    name: str,
    armature: bpy.types.Object,
    vertices: np.ndarray,
    faces: np.ndarray,
    weights: np.ndarray,
    group_names: list[str],
    material: bpy.types.Material | None = None,
) -> bpy.types.Object:
    """Create a mesh child of ``armature`` deformed by it.

    Args:
        vertices: (V, 3) rest vertices in armature space (metres).
        faces: (F, 3) triangle vertex indices.
        weights: (V, J) skinning weights; column j goes to vertex group ``group_names[j]``.
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (len(vertices), len(group_names)):
        raise ValueError(f"weights {weights.shape} do not match {len(vertices)} vertices x {len(group_names)} groups")
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
    if material is not None:
        mesh.materials.append(material)
    mesh.validate()

    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.parent = armature  # identity parent inverse: mesh space = armature space
    for j, group_name in enumerate(group_names):
        group = obj.vertex_groups.new(name=group_name)
        column = weights[:, j]
        nonzero = np.flatnonzero(column > 0.0)
        # One call per distinct weight value: hand-model weights repeat a lot (exact 1.0 on rigid parts).
        values, inverse = np.unique(column[nonzero], return_inverse=True)
        for k, value in enumerate(values):
            group.add(nonzero[inverse == k].tolist(), float(value), "REPLACE")
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = armature
    mod.use_vertex_groups = True
    mod.use_bone_envelopes = False
    mod.use_deform_preserve_volume = False
    return obj
