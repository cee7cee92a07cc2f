"""Capture file -> rigged, skinned, keyframed hands: ``import_capture``, the one core function
behind the import operator, the capture operators and batch mode.

Order of work: read and validate everything and compute all numbers first (nothing
in Blender changes if the capture is bad), then build: a collection, a "camera
space" Empty (OpenCV camera frame -> Blender world), and per hand an armature
(stage 1, edit bones), its skinned mesh and its action (stage 2). If building fails
half way, whatever was created is removed again before the error propagates.

Frame mapping: scene frame = ``frame_offset`` + source frame index (``Capture.frames``);
the default offset is the scene's start frame, so source frame 0 lands where a Movie
Clip starting at the scene's first frame shows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..core import anatomy, handmodel, naming
from ..core import rig_props as rp
from ..core.capture import SIDES, Capture, CaptureFormatError, HandTrack, read_capture
from . import capture_store, compat, convention, keys, rig, skin


class CaptureImportError(ValueError):
    """The capture cannot be imported (unreadable, no hands, degenerate skeleton); nothing was created."""


@dataclass
class ImportOptions:
    """How to import a capture.

    Attributes:
        frame_offset: scene frame of source frame 0; None = the scene's ``frame_start``.
        sides: which hands to import if present ("right", "left").
        with_mesh: build the skinned hand mesh (needs the hand model; else armature only).
        set_scene_timing: set the scene's fps and frame range from the capture.
        interpolation: keyframe interpolation of pose keys ("LINEAR", "BEZIER", "CONSTANT").
    """

    frame_offset: int | None = None
    sides: tuple[str, ...] = SIDES
    with_mesh: bool = True
    set_scene_timing: bool = False
    interpolation: str = "LINEAR"


@dataclass
class ImportResult:
    """What ``import_capture`` created (Blender names; look objects up in ``bpy.data``).

    Attributes:
        capture_path: the file read ("" for an in-memory capture).
        source: the capture's source video / photo.
        collection: the new collection holding everything.
        camera_space: the Empty whose local frame is the OpenCV camera frame (metres).
        armatures / meshes / actions: track key ("right", "left", "right_2", ...) -> object / object / action
            name (meshes may lack a key).
        frame_offset: scene frame = frame_offset + source frame index.
        scene_frames: (first, last) scene frame of the capture.
        keyed_frames: track key -> number of frames with pose keys (frames where the hand was found).
        warnings: things the user should know (no mesh, model mismatch, no valid frame).
    """

    capture_path: str
    source: str
    collection: str
    camera_space: str
    armatures: dict[str, str] = field(default_factory=dict)
    meshes: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    frame_offset: int = 0
    scene_frames: tuple[int, int] = (0, 0)
    keyed_frames: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _HandPlan:
    """Everything computed for one hand before Blender is touched."""

    key: str  # the capture's track key ("right", "right_2", ...): one rig per track
    side: str
    track: HandTrack
    layout: convention.BoneLayout
    model: handmodel.HandModelData | None
    mesh_vertices: np.ndarray | None  # (V, 3) rest mesh in armature space; None: no mesh wanted or possible


def import_capture(
    context,
    capture_or_path: Capture | str | os.PathLike,
    options: ImportOptions | None = None,
    models: dict[str, handmodel.HandModelData] | None = None,
) -> ImportResult:
    """Import a capture into ``context.scene``.

    Args:
        context: Blender context (``bpy.context`` or an operator's).
        capture_or_path: a ``.npz`` capture file or an in-memory ``Capture``.
        options: see ``ImportOptions``.
        models: side -> hand model data for captures fitted with a non-built-in model ("mano"); a
            missing side is mirrored from the other. Without it such hands get no mesh (armature only).

    Raises:
        CaptureImportError: unreadable or invalid file, no (selected) hands, degenerate skeleton.
    """
    options = options or ImportOptions()
    if options.interpolation not in keys.INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(keys.INTERPOLATIONS)}, got {options.interpolation!r}")
    capture, path = _load(capture_or_path)
    warnings: list[str] = []
    plans = [_plan_hand(capture, side, options, models or {}, warnings) for side in _sides(capture, options)]
    offset = context.scene.frame_start if options.frame_offset is None else int(options.frame_offset)

    rig.ensure_object_mode(context)
    created: list[bpy.types.ID] = []
    try:
        result = _build(context, capture, path, plans, offset, options, created)
    except BaseException:
        _remove(created)
        raise
    result.warnings = warnings
    return result


def _load(capture_or_path) -> tuple[Capture, str]:
    if isinstance(capture_or_path, Capture):
        capture, path = capture_or_path, ""
        try:
            capture.validate()
        except CaptureFormatError as exc:
            raise CaptureImportError(f"invalid capture: {exc}") from None
    else:
        path = str(Path(capture_or_path))
        try:
            capture = read_capture(path)
        except CaptureFormatError as exc:
            raise CaptureImportError(str(exc)) from None
    if capture.num_frames == 0:
        raise CaptureImportError(f"{path or 'capture'}: the capture holds no frames")
    return capture, path


def _sides(capture: Capture, options: ImportOptions) -> list[str]:
    unknown = [s for s in options.sides if s not in SIDES]
    if unknown:
        raise CaptureImportError(f"unknown hand sides {unknown}; use {SIDES}")
    if not capture.hands:
        raise CaptureImportError("the capture has no hands (no hand was found in the footage); nothing to import")
    sides = [k for s in SIDES if s in options.sides for k in capture.tracks_of(s)]  # track keys
    if not sides:
        raise CaptureImportError(
            f"the capture has only {sorted(capture.hands)} hands, none of the selected {list(options.sides)}"
        )
    return sides


def _plan_hand(capture: Capture, key: str, options: ImportOptions, models: dict, warnings: list[str]) -> _HandPlan:
    track = capture.hands[key]
    side = track.side
    rest = np.asarray(track.rest_joints, np.float64)
    beta = np.asarray(track.beta, np.float64)
    # The model also gives the rest fingertips, so load it even without a mesh (then quietly).
    model = _hand_model(capture, side, models, warnings if options.with_mesh else [])
    if model is None:
        tips = convention.estimate_rest_tips(rest, track.kp3d, track.valid)
    else:
        tips = handmodel.rest_tips(model, beta)
    verts = None
    if model is not None and options.with_mesh:
        # The mesh is only right if the model's skeleton for this beta is the capture's skeleton.
        expected = handmodel.rest_joints(model, beta) + np.asarray(track.joint_offsets, np.float64)
        err = float(np.abs(expected - rest).max())
        if err > 1e-4:
            warnings.append(
                f"{side} hand: model {model.model_id} gives rest joints {err * 1000:.2f} mm away from the capture's; "
                "the mesh may not sit exactly on the bones"
            )
        if model.posedirs is not None:
            warnings.append(f"{side} hand: pose-corrective shapes of {model.model_id} are not reproduced in Blender")
        b = beta[: model.num_betas]
        verts = model.v_template + model.shapedirs[..., : len(b)] @ b
    try:
        frames = anatomy.joint_frames_from_rest(rest, side, tips)
        layout = convention.bone_layout(rest, tips, frames)
    except ValueError as exc:
        raise CaptureImportError(f"{side} hand: the capture's rest joints make no skeleton ({exc})") from None
    if not np.any(track.valid):
        warnings.append(f"{side} hand: no frame has a valid pose; imported in rest pose without pose keys")
    return _HandPlan(key=key, side=side, track=track, layout=layout, model=model, mesh_vertices=verts)


def _hand_model(capture: Capture, side: str, models: dict, warnings: list[str]):
    model_id = capture.hand_model
    given = models.get(side) or next(iter(models.values()), None)
    if given is not None:
        # One side is enough: the other is its mirror image (as for MANO's own left/right files).
        return given if given.side == side else handmodel.mirror_data(given, side)
    if model_id.startswith("builtin"):
        try:
            model = handmodel.load_builtin(side)
        except handmodel.HandModelError as exc:
            warnings.append(f"{side} hand: no mesh, the built-in hand model failed to load ({exc})")
            return None
        if model.model_id != model_id:
            warnings.append(f"capture was fitted with {model_id!r}, the mesh uses {model.model_id!r}")
        return model
    warnings.append(
        f"{side} hand: the capture was fitted with hand model {model_id!r}, which is not loaded; "
        "imported the armature without a mesh"
    )
    return None


def _build(context, capture, path, plans, offset, options, created) -> ImportResult:
    scene = context.scene
    source = capture.source
    collection = bpy.data.collections.new(naming.collection_name(source))
    created.append(collection)
    scene.collection.children.link(collection)

    space = bpy.data.objects.new(naming.camera_space_name(source), None)
    created.append(space)
    collection.objects.link(space)
    space.empty_display_type = "ARROWS"
    space.empty_display_size = 0.1
    space.rotation_mode = "XYZ"
    space.rotation_euler = convention.OPENCV_TO_BLENDER_EULER
    k = capture.intrinsics
    capture_store.record_paths(space, "", source)
    rp.IMAGE_SIZE.write(space, capture.image_size)
    rp.INTRINSICS.write(space, (k.fx, k.fy, k.cx, k.cy))
    rp.INTRINSICS_SOURCE.write(space, k.source)  # given / estimated / default, for the Camera panel

    frames = np.asarray(capture.frames, np.int64)
    scene_frames = (offset + int(frames[0]), offset + int(frames[-1]))
    result = ImportResult(
        capture_path=path,
        source=source,
        collection=collection.name,
        camera_space=space.name,
        frame_offset=offset,
        scene_frames=scene_frames,
    )
    # Stage 1 (edit mode): every armature's bones. Stage 2 (object mode): meshes, modifiers, keys.
    rigs = []
    for plan in plans:
        names = naming.all_bones(plan.side)
        arm_obj, rest = rig.create_armature(
            context,
            collection,
            _per_track(naming.armature_name(source, plan.side), plan.key),
            _per_track(naming.armature_data_name(source, plan.side), plan.key),
            plan.layout,
            names,
            parent=space,
        )
        created += [arm_obj, arm_obj.data]
        rigs.append((plan, arm_obj, rest, names))
    material = None
    for plan, arm_obj, rest, names in rigs:
        side = plan.side
        _set_properties(arm_obj, capture, path, side, offset, frames, plan.key)
        if plan.mesh_vertices is not None:
            if material is None:
                material, new = skin.skin_material()
                if new:
                    created.append(material)
            mesh_obj = skin.create_skinned_mesh(
                collection,
                _per_track(naming.mesh_name(source, side), plan.key),
                arm_obj,
                plan.mesh_vertices,
                plan.model.faces,
                plan.model.weights,
                names[:16],
                material,
            )
            created += [mesh_obj, mesh_obj.data]
            result.meshes[plan.key] = mesh_obj.name
        action = keys.new_action(arm_obj, _per_track(naming.action_name(source, side), plan.key))
        created.append(action)
        n = _key_hand(arm_obj, action, plan.track, rig.rest_frames(rest[:16]), names, offset, frames, options)
        result.armatures[plan.key] = arm_obj.name
        result.actions[plan.key] = action.name
        result.keyed_frames[plan.key] = n
    if options.set_scene_timing:
        _set_scene_timing(scene, capture.fps, scene_frames)
    return result


def _per_track(name: str, key: str) -> str:
    """A side's first track keeps ``name``; track "right_2" gets "<name>_2" (one rig per track)."""
    return name if "_" not in key else f"{name}_{key.rsplit('_', 1)[1]}"


def _set_properties(obj, capture: Capture, path: str, side: str, offset: int, frames: np.ndarray, key: str) -> None:
    capture_store.record_paths(obj, path, capture.source)
    rp.HAND_MODEL.write(obj, capture.hand_model)
    rp.SIDE.write(obj, side)
    rp.TRACK.write(obj, key)
    rp.FPS.write(obj, capture.fps)
    rp.FRAME_OFFSET.write(obj, offset)  # scene frame = frame_offset + source frame index
    rp.SOURCE_FRAMES.write(obj, (frames[0], frames[-1]))
    rp.SCENE_FRAMES.write(obj, (offset + int(frames[0]), offset + int(frames[-1])))
    rp.VISIBLE.write(obj, 0)
    rp.CONFIDENCE.write(obj, 0.0)
    ui = obj.id_properties_ui(rp.VISIBLE.key)
    ui.update(min=0, max=1, description="1 where the hand was found in this frame (keyed)")
    ui = obj.id_properties_ui(rp.CONFIDENCE.key)
    ui.update(min=0.0, max=1.0, description="Hand detection confidence in this frame (keyed)")


def _key_hand(arm_obj, action, track: HandTrack, frames16, names, offset, frames, options) -> int:
    valid = np.asarray(track.valid, bool)
    scene_all = (offset + frames).astype(np.float64)
    channels = [
        keys.Channel(f'["{rp.VISIBLE.key}"]', 0, scene_all, valid.astype(np.float64), interpolation="CONSTANT"),
        keys.Channel(
            f'["{rp.CONFIDENCE.key}"]', 0, scene_all, np.where(valid, track.frame_conf, 0.0), interpolation="LINEAR"
        ),
    ]
    keyed = track.keyed  # observed frames and short gaps bridged from both sides (still not visible)
    n = int(keyed.sum())
    if n:
        quats, loc = convention.pose_to_bone_basis(track.theta[keyed], track.transl[keyed], frames16)
        at = scene_all[keyed]
        for j in range(16):
            channels += keys.bone_channels(names[j], "rotation_quaternion", at, quats[:, j], options.interpolation)
        channels += keys.bone_channels(names[0], "location", at, loc, options.interpolation)
    keys.write_channels(action, compat.assigned_slot(arm_obj), channels)
    return n


def _set_scene_timing(scene, fps: float, scene_frames: tuple[int, int]) -> None:
    if fps > 0:
        # Blender's frame rate is fps / fps_base with an integer fps: 29.97 -> 30 / 1.001.
        whole = max(1, round(fps))
        scene.render.fps = whole
        scene.render.fps_base = whole / fps
    scene.frame_start, scene.frame_end = scene_frames


def _remove(created: list[bpy.types.ID]) -> None:
    """Remove partially built data (objects before their data, so nothing is left with users)."""
    alive = []
    for idb in created:
        try:
            idb.name  # noqa: B018 - raises ReferenceError once the ID is gone
        except ReferenceError:
            continue
        alive.append(idb)
    if alive:
        bpy.data.batch_remove(alive)
