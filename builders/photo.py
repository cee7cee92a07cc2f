"""Photos in Blender: an image datablock as a file the inference worker reads (sRGB conversion, a PNG writer)
and a fitted photo pose applied to a HandCap armature's bones (set, optionally keyed). Used by
``operators.pose_photo``."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import bpy
import numpy as np

from ..core import naming
from ..core import rig_props as rp
from ..core.capture import HandTrack
from . import convention, rig


class PhotoError(ValueError):
    """An image that cannot be handed to the worker (the message says why)."""


#: Axis-angle of a pose mirrored in x (right <-> left hand): (x, y, z) -> (x, -y, -z).
_MIRROR_ROT = np.array([1.0, -1.0, -1.0])


def handcap_rig(obj) -> str | None:
    """The side ("right"/"left") of a HandCap armature object, else None."""
    if obj is None or obj.type != "ARMATURE":
        return None
    side = rp.SIDE.read(obj)
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


def linear_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """Linear light (0..1 floats) -> display-referred sRGB values (0..1), the IEC 61966-2-1 curve."""
    return np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(np.maximum(rgb, 0), 1 / 2.4) - 0.055)


def image_rgb8(image: bpy.types.Image) -> np.ndarray:
    """An image datablock's pixels as (H, W, 3) uint8 sRGB, top row first (PhotoError when it has none)."""
    w, h = image.size
    if w == 0 or h == 0:
        raise PhotoError(f"image '{image.name}' has no pixels (missing file or never rendered)")
    px = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)
    rgb = px[..., :3] if image.channels >= 3 else np.repeat(px[..., :1], 3, axis=2)
    if image.is_float and image.colorspace_settings.name.lower() not in ("srgb", "non-color"):
        rgb = linear_to_srgb(rgb)  # float buffers hold linear light; the detector expects sRGB pixels
    return np.clip(np.rint(rgb[::-1] * 255.0), 0, 255).astype(np.uint8)  # Blender stores bottom row first


def image_to_file(image: bpy.types.Image) -> tuple[str, Path | None]:
    """A file the worker can read for an image datablock: its own file when that is current on disk, else a
    temporary PNG of its pixels (packed, generated, painted or rendered images). Returns (path, temp or None)."""
    path = bpy.path.abspath(image.filepath, library=image.library) if image.filepath else ""
    if image.source == "FILE" and image.packed_file is None and not image.is_dirty and os.path.isfile(path):
        return path, None
    rgb8 = image_rgb8(image)
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
