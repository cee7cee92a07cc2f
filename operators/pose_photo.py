"""Pose from a photo: ``handcap.pose_photo`` poses the active HandCap rig (or new hands) like a photo.

The photo goes through the same worker as footage (one frame); the UI stays responsive while it runs and
Esc cancels. With an active HandCap armature the fitted pose of the same side is applied to its bones
(a pose of the other hand is mirrored onto it); otherwise new hands are imported. "Insert Keyframe" keys
the pose at the current frame; without it the pose is set but not keyed.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..builders.importer import CaptureImportError, ImportOptions, import_capture
from ..builders.photo import PhotoError, handcap_rig, image_to_file, pose_rig
from ..core.capture import CaptureFormatError, read_capture
from ..core.request import CaptureRequest
from .capture import CaptureInputError, CaptureRun, WorkerOperator, apply_preferences, resolve_interpreter


class HANDCAP_OT_pose_photo(WorkerOperator, bpy.types.Operator):
    """Pose the active HandCap rig, or new hands, like the hands in a photo"""

    bl_idname = "handcap.pose_photo"
    bl_label = "Pose from Photo"
    # No REGISTER: a redo panel would re-run the whole inference on every tweak. UNDO: one step for the result.
    bl_options = {"UNDO"}

    source: EnumProperty(
        name="Photo",
        items=(("FILE", "Image File", "A photo on disk"), ("IMAGE", "Image", "An image already in this file")),
        default="FILE",
    )
    filepath: StringProperty(name="File", subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    image_name: StringProperty(name="Image", description="Name of the image datablock")
    target: EnumProperty(
        name="Target",
        items=(
            ("ACTIVE", "Active Rig", "Pose the active HandCap armature (new hands when none is active)"),
            ("NEW", "New Hands", "Always add new hands"),
        ),
        default="ACTIVE",
    )
    insert_key: BoolProperty(name="Insert Keyframe", description="Key the pose at the current frame", default=True)
    hands: EnumProperty(
        name="Hands", items=(("1", "One", "At most one hand"), ("2", "Two", "Up to two hands")), default="2"
    )

    def invoke(self, context, event):
        wm = context.window_manager
        if self.source == "FILE" and not self.filepath:
            wm.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return wm.invoke_props_dialog(self, width=360, confirm_text="Pose")

    def execute(self, context):
        return self.start(context)

    def make_run(self, context) -> CaptureRun:
        # The interpreter first: a missing one must not leave a temporary photo behind.
        interpreter = resolve_interpreter(context)
        temp = None
        if self.source == "IMAGE":
            image = bpy.data.images.get(self.image_name)
            if image is None:
                raise CaptureInputError(f"no image named '{self.image_name}' in this file")
            try:
                path, temp = image_to_file(image)
            except PhotoError as exc:
                raise CaptureInputError(str(exc)) from None
        else:
            path = bpy.path.abspath(self.filepath)
            if not path or not os.path.isfile(path):
                raise CaptureInputError(f"{path or 'no file chosen'}: no such photo")
        request = CaptureRequest(path, hands=int(self.hands))  # the focal length is estimated from the hands
        try:
            apply_preferences(context, request)
        except CaptureInputError:
            if temp is not None:
                temp.unlink(missing_ok=True)
            raise
        target = context.active_object if self.target == "ACTIVE" and handcap_rig(context.active_object) else None
        frame = context.scene.frame_current
        key = frame if self.insert_key else None

        def apply(context, capture_path):
            return self._apply(context, capture_path, target, frame, key)

        return CaptureRun(request, interpreter, apply=apply, temp_files=(temp,) if temp else ())

    def _apply(self, context, capture_path, target, frame: int, key: int | None) -> str:
        try:
            capture = read_capture(capture_path)
        except CaptureFormatError as exc:
            raise CaptureImportError(str(exc)) from None
        found = [s for s, t in capture.hands.items() if bool(np.asarray(t.valid)[0])]
        if not found:
            raise CaptureImportError(f"no hand found in {Path(capture.source).name}; nothing was changed")
        if target is not None:
            side = handcap_rig(target)
            use = side if side in found else found[0]
            pose_rig(target, capture.hands[use], 0, mirrored=use != side, key_frame=key)
            note = "" if use == side else f" (mirrored from the {use} hand: the photo has no {side} hand)"
            return f"Posed '{target.name}' like the {side} hand in the photo{note}"
        options = ImportOptions(frame_offset=frame - int(capture.frames[0]), sides=tuple(found))
        result = import_capture(context, capture, options)
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        if key is None:
            # The importer keys every hand; keep the pose but drop the keys.
            for side, name in result.armatures.items():
                obj = bpy.data.objects[name]
                bpy.data.actions.remove(obj.animation_data.action)
                pose_rig(obj, capture.hands[side], 0, mirrored=False, key_frame=None)
        return f"Added {', '.join(result.armatures)} hand(s) posed like the photo in '{result.collection}'"

    def done(self, context, result: str) -> set[str]:
        self.report({"INFO"}, result)
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "source")
        if self.source == "FILE":
            layout.prop(self, "filepath")
        else:
            layout.prop_search(self, "image_name", bpy.data, "images")
        layout.prop(self, "target")
        layout.prop(self, "hands", expand=True)
        layout.prop(self, "insert_key")


CLASSES = (HANDCAP_OT_pose_photo,)
