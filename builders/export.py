"""Export animated armatures (HandCap hands or a retargeted rig) through Blender's own exporters:
FBX (``io_scene_fbx``), BVH one file per armature (``io_anim_bvh``), glTF binary (``io_scene_gltf2``).

Files are never half-written: every file goes to a temporary name in the target folder and is renamed
into place only when all of them were written; on any failure the temporary files are removed and an
existing file of the same name is left as it was.

Axes. FBX and glTF convert Blender's Z-up world to their Y-up conventions themselves. Blender's BVH
exporter writes armature space as it is, so a HandCap hand (whose armature space is the OpenCV camera
frame under the "camera space" Empty) is exported from a temporary copy with the object's world
transform applied to its bones: the BVH then holds Blender world axes (Z up) like any BVH Blender
writes, and imports back in place with ``axis_forward="Y", axis_up="Z"``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from mathutils import Matrix

from ..core import rig_props as rp
from ..core.naming import SIDE_SUFFIX
from .rig import ensure_object_mode

FORMATS = ("fbx", "bvh", "glb")


class ExportError(ValueError):
    """Nothing could be exported as asked (no armature, unwritable folder, exporter failure); no file changed."""


@dataclass
class ExportOptions:
    """How to export.

    Attributes:
        format: "fbx", "bvh" or "glb".
        frame_range: (first, last) scene frames, inclusive; None = the span of the armatures' actions.
        include_meshes: also export meshes deformed by the armatures (FBX, glTF).
    """

    format: str = "fbx"
    frame_range: tuple[int, int] | None = None
    include_meshes: bool = True


@dataclass
class ExportResult:
    """What was written.

    Attributes:
        files: absolute paths of the files written (one per armature for BVH, else one).
        objects: names of the exported objects.
        frame_range: (first, last) scene frames exported.
    """

    files: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    frame_range: tuple[int, int] = (0, 0)


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (works for root and read-only disks)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError(f"{folder}: exists and is not a folder") from None
    except OSError as exc:
        raise ExportError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    if not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".handcap-write-test-"):
            pass
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write files there ({exc.strerror or exc})") from None
    return folder


def _tmp_name(path: Path) -> Path:
    # Keep the real extension last: some exporters append theirs when it is missing.
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def action_frame_range(armatures: Sequence[bpy.types.Object]) -> tuple[int, int] | None:
    spans = []
    for obj in armatures:
        anim = obj.animation_data
        if anim is not None and anim.action is not None:
            first, last = anim.action.frame_range
            spans.append((int(round(first)), int(round(last))))
    if not spans:
        return None
    return min(s[0] for s in spans), max(s[1] for s in spans)


def deformed_meshes(armatures: Sequence[bpy.types.Object]) -> list[bpy.types.Object]:
    arms = set(armatures)
    out = []
    for obj in bpy.data.objects:
        if obj.type != "MESH":
            continue
        if obj.parent in arms or any(m.type == "ARMATURE" and m.object in arms for m in obj.modifiers):
            out.append(obj)
    return out


def bvh_file_names(path: Path, armatures: Sequence[bpy.types.Object]) -> list[Path]:
    """One BVH per armature: ``path`` itself for one, else ``<stem>.R.bvh`` / ``<stem>.L.bvh`` for HandCap
    hands and ``<stem>_<object>.bvh`` for other rigs."""
    if len(armatures) == 1:
        return [path]
    names = []
    for obj in armatures:
        side = rp.SIDE.read(obj)
        tag = f".{SIDE_SUFFIX[side]}" if side in SIDE_SUFFIX else f"_{bpy.path.clean_name(obj.name)}"
        names.append(path.with_name(f"{path.stem}{tag}{path.suffix}"))
    if len(set(names)) != len(names):
        raise ExportError(f"two armatures would be written to the same BVH file name: {[str(n) for n in names]}")
    return names


def export_armatures(
    context,
    armatures: Sequence[bpy.types.Object],
    path: str | os.PathLike,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export ``armatures`` (with their actions, and their meshes when asked) to ``path``.

    Raises:
        ExportError: unknown format, no armature, unwritable folder, or the exporter failed.
    """
    options = options or ExportOptions()
    fmt = options.format.lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {options.format!r}; choose one of {', '.join(FORMATS)}")
    armatures = [a for a in armatures if a is not None]
    if not armatures:
        raise ExportError("nothing to export: no armature given")
    for obj in armatures:
        if obj.type != "ARMATURE":
            raise ExportError(f"{obj.name!r} is not an armature")
    path = Path(path).with_suffix("." + fmt)
    check_writable_folder(path.parent)
    frame_range = (
        options.frame_range
        or action_frame_range(armatures)
        or (
            context.scene.frame_current,
            context.scene.frame_current,
        )
    )
    if frame_range[1] < frame_range[0]:
        raise ExportError(f"frame range {frame_range[0]}..{frame_range[1]} is empty")
    targets = bvh_file_names(path, armatures) if fmt == "bvh" else [path]
    tmps = [_tmp_name(p) for p in targets]
    ensure_object_mode(context)
    scene = context.scene
    state = (scene.frame_start, scene.frame_end, scene.frame_current)
    selection = (list(context.selected_objects), context.view_layer.objects.active)
    objects = list(armatures)
    try:
        scene.frame_start, scene.frame_end = frame_range
        if fmt == "bvh":
            for obj, tmp in zip(armatures, tmps, strict=True):
                _export_bvh(context, obj, tmp, frame_range)
        else:
            if options.include_meshes:
                objects += deformed_meshes(armatures)
            _select(context, objects)
            if fmt == "fbx":
                _run(bpy.ops.export_scene.fbx, tmp=tmps[0], **_FBX_OPTIONS)
            else:
                _run(bpy.ops.export_scene.gltf, tmp=tmps[0], **_GLTF_OPTIONS)
        for tmp in tmps:
            if not tmp.is_file():
                raise ExportError(f"the {fmt.upper()} exporter wrote no file")
        for tmp, final in zip(tmps, targets, strict=True):
            os.replace(tmp, final)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        scene.frame_start, scene.frame_end, _ = state
        scene.frame_set(state[2])
        _select(context, selection[0], selection[1])
    return ExportResult(
        files=[str(p.resolve()) for p in targets], objects=[o.name for o in objects], frame_range=frame_range
    )


_FBX_OPTIONS = dict(
    use_selection=True,
    object_types={"ARMATURE", "MESH", "EMPTY"},
    add_leaf_bones=False,
    bake_anim=True,
    bake_anim_use_all_bones=True,
    bake_anim_use_nla_strips=False,
    bake_anim_use_all_actions=False,  # only each object's current action, not every action in the file
    bake_anim_force_startend_keying=True,
    bake_anim_step=1.0,
    bake_anim_simplify_factor=0.0,  # one key per frame, none dropped
)
_GLTF_OPTIONS = dict(
    export_format="GLB",
    use_selection=True,
    export_animations=True,
    export_animation_mode="ACTIVE_ACTIONS",
    export_frame_range=True,
    export_skins=True,
    export_leaf_bone=False,
)


def _run(op, tmp: Path, **kwargs) -> None:
    try:
        result = op(filepath=str(tmp), **kwargs)
    except RuntimeError as exc:  # bpy.ops turns the exporter's error reports into RuntimeError
        raise ExportError(f"{op.idname_py()} failed: {str(exc).strip()}") from None
    if "FINISHED" not in result:
        raise ExportError(f"{op.idname_py()} did not finish ({', '.join(sorted(result))})")


def _select(context, objects, active=None) -> None:
    view_layer = context.view_layer
    for obj in list(context.selected_objects):
        obj.select_set(False)
    for obj in objects:
        try:
            if obj.name in view_layer.objects:
                obj.select_set(True)
        except ReferenceError:
            continue
    try:
        view_layer.objects.active = active if active is not None else (objects[0] if objects else None)
    except (ReferenceError, IndexError):
        view_layer.objects.active = None


def _export_bvh(context, obj, tmp: Path, frame_range: tuple[int, int]) -> None:
    """BVH of ``obj`` from a temporary copy whose world transform is applied to its bones (see module doc)."""
    world = obj.matrix_world.copy()
    copy = obj.copy()
    copy.data = obj.data.copy()
    copy.parent = None
    context.scene.collection.objects.link(copy)
    try:
        copy.matrix_world = Matrix.Identity(4)
        # Rest bones take the world transform; pose keys are relative to each bone's rest, so they stay valid.
        copy.data.transform(world)
        _select(context, [copy], copy)
        first, last = frame_range
        _run(bpy.ops.export_anim.bvh, tmp=tmp, frame_start=first, frame_end=last, rotate_mode="NATIVE")
    finally:
        data = copy.data
        bpy.data.objects.remove(copy)
        bpy.data.armatures.remove(data)
