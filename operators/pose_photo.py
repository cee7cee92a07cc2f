"""Pose from a photo: ``handcap.pose_photo`` poses the active HandCap rig (or new hands) like a photo.

The photo goes through the same worker as footage (one frame); the UI stays responsive while it runs and
Esc cancels. With an active HandCap armature the fitted pose of the same side is applied to its bones
(a pose of the other hand is mirrored onto it); otherwise new hands are imported. "Insert Keyframe" keys
the pose at the current frame; without it the pose is set but not keyed.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..builders import convention, rig
from ..builders.importer import CaptureImportError, ImportOptions, import_capture
from ..core import naming
from ..core.capture import CaptureFormatError, HandTrack, read_capture
from .capture import CaptureInputError, CaptureRun, WorkerOperator, apply_preferences, resolve_interpreter
from .worker import CaptureRequest

P = naming.PROP_PREFIX
#: Axis-angle of a pose mirrored in x (right <-> left hand): (x, y, z) -> (x, -y, -z).
_MIRROR_ROT = np.array([1.0, -1.0, -1.0])


def handcap_rig(obj) -> str | None:
    """The side ("right"/"left") of a HandCap armature object, else None."""
    if obj is None or obj.type != "ARMATURE":
        return None
    side = obj.get(P + "side")
    return side if side in naming.SIDE_SUFFIX and naming.joint_bone(0, side) in obj.pose.bones else None


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image, top row first, as an 8-bit RGB PNG (no third-party writer needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(rgb, np.uint8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def image_to_file(image: bpy.types.Image) -> tuple[str, Path | None]:
    """A file the worker can read for an image datablock: its own file when that is current on disk, else a
    temporary PNG of its pixels (packed, generated, painted or rendered images). Returns (path, temp or None)."""
    path = bpy.path.abspath(image.filepath, library=image.library) if image.filepath else ""
    if image.source == "FILE" and image.packed_file is None and not image.is_dirty and os.path.isfile(path):
        return path, None
    w, h = image.size
    if w == 0 or h == 0:
        raise CaptureInputError(f"image '{image.name}' has no pixels (missing file or never rendered)")
    px = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)
    rgb = px[..., :3] if image.channels >= 3 else np.repeat(px[..., :1], 3, axis=2)
    if image.is_float and image.colorspace_settings.name.lower() not in ("srgb", "non-color"):
        # Float buffers hold linear light; the detector expects display-referred (sRGB) pixels.
        rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(np.maximum(rgb, 0), 1 / 2.4) - 0.055)
    rgb8 = np.clip(np.rint(rgb[::-1] * 255.0), 0, 255).astype(np.uint8)  # Blender stores bottom row first
    fd, tmp = tempfile.mkstemp(prefix="handcap-photo-", suffix=".png")
    os.close(fd)
    write_png(tmp, rgb8)
    return tmp, Path(tmp)


def pose_rig(arm_obj, track: HandTrack, index: int, mirrored: bool, key_frame: int | None) -> None:
    """Set (and optionally key) the 16 joint bones of a HandCap armature to frame ``index`` of ``track``."""
    side = handcap_rig(arm_obj)
    names = naming.joint_bones(side)
    rest = np.array([np.array(arm_obj.data.bones[n].matrix_local, dtype=np.float64) for n in names])
    theta = np.asarray(track.theta[index], np.float64)
    transl = np.asarray(track.transl[index], np.float64)
    wrist_photo = np.asarray(track.rest_joints[0], np.float64)
    if mirrored:
        theta = theta * _MIRROR_ROT
        transl = transl * [-1.0, 1.0, 1.0]
        wrist_photo = wrist_photo * [-1.0, 1.0, 1.0]
    # Put the wrist where the photo has it even though this rig's rest wrist (its own hand shape) differs.
    transl = transl + wrist_photo - rest[0, :3, 3]
    quats, loc = convention.pose_to_bone_basis(theta[None], transl[None], rig.rest_frames(rest))
    for j, name in enumerate(names):
        pb = arm_obj.pose.bones[name]
        pb.rotation_mode = "QUATERNION"
        pb.rotation_quaternion = quats[0, j].tolist()
        if j == 0:
            pb.location = loc[0].tolist()
        if key_frame is not None:
            pb.keyframe_insert("rotation_quaternion", frame=key_frame, group=name)
            if j == 0:
                pb.keyframe_insert("location", frame=key_frame, group=name)


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
            path, temp = image_to_file(image)
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
