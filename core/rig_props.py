"""The custom properties HandCap writes on Blender objects: name, type and meaning of each, stated once.

The importer (``builders/importer.py``) and the capture store (``builders/capture_store.py``) write them; the
camera, overlay, smoothing, export and panels read them back. Plain Python (no bpy): a property is read from
and written to anything with ``get`` / ``[]`` (an ``ID``'s custom properties), converted to the stated type.

Frame mapping: scene frame = ``FRAME_OFFSET`` + source frame index (``source_frames`` are source frames,
``scene_frames`` the same first / last frame in the scene).
"""

from __future__ import annotations

from dataclasses import dataclass

from .naming import PROP_PREFIX


@dataclass(frozen=True)
class RigProp:
    """One custom property.

    Attributes:
        key: the property's name on the object ("handcap_side").
        kind: the Python type of the value (str, int, float) or of each item of a sequence.
        length: None for a single value, else the sequence's length (e.g. 2 for a frame pair).
        meaning: what it holds, with units.
    """

    key: str
    kind: type
    length: int | None
    meaning: str

    def read(self, obj, default=None):
        """The value on ``obj`` in the stated type (a tuple for sequences), or ``default`` when absent."""
        value = obj.get(self.key)
        if value is None:
            return default
        if self.length is None:
            return self.kind(value)
        return tuple(self.kind(v) for v in value)

    def write(self, obj, value) -> None:
        """Store ``value`` on ``obj`` in the stated type (a list for sequences, checked for its length)."""
        if self.length is None:
            obj[self.key] = self.kind(value)
            return
        items = [self.kind(v) for v in value]
        if len(items) != self.length:
            raise ValueError(f"{self.key} holds {self.length} values, got {len(items)}")
        obj[self.key] = items

    def on(self, obj) -> bool:
        """Whether ``obj`` has this property."""
        return self.key in obj


def _p(name: str, kind: type, length: int | None, meaning: str) -> RigProp:
    return RigProp(PROP_PREFIX + name, kind, length, meaning)


# -- on each hand armature object ---------------------------------------------------------------------------
SIDE = _p("side", str, None, '"right" or "left": which hand; marks the object as a HandCap hand armature')
TRACK = _p("track", str, None, 'the track key in its capture ("right", "left", "right_2", ...); older rigs: the side')
HAND_MODEL = _p("hand_model", str, None, "the capture's hand model id (builtin or mano)")
FPS = _p("fps", float, None, "the footage's frame rate in frames per second (0 for photos)")
FRAME_OFFSET = _p("frame_offset", int, None, "scene frame of source frame 0 (scene = offset + source frame)")
SOURCE_FRAMES = _p("source_frames", int, 2, "first and last captured source frame (0-based, inclusive)")
SCENE_FRAMES = _p("scene_frames", int, 2, "the same first and last frame in the scene")
VISIBLE = _p("visible", int, None, "keyed per frame: 1 where the hand was found, else 0")
CONFIDENCE = _p("confidence", float, None, "keyed per frame: the hand's detection confidence, 0..1")

# -- on hand armatures and the camera-space Empty: where the capture and its footage are ----------------------
CAPTURE_PATH = _p("capture_path", str, None, 'the capture file as recorded: "//handcap/x.npz" or absolute')
CAPTURE_ABS = _p("capture_path_abs", str, None, "the capture file's absolute path where it was last kept")
MOVED_FROM = _p("capture_moved_from", str, None, "user-folder copy to remove once the first save has succeeded")
SOURCE = _p("source", str, None, "the footage, absolute path")
SOURCE_REL = _p("source_rel", str, None, 'the footage relative to the .blend ("" until saved)')

# -- on the camera-space Empty (parent of a capture's hands) ----------------------------------------------------
IMAGE_SIZE = _p("image_size", int, 2, "the footage's width and height in pixels")
INTRINSICS = _p("intrinsics", float, 4, "the capture camera's fx, fy, cx, cy in pixels")
INTRINSICS_SOURCE = _p("intrinsics_source", str, None, "how the focal length was obtained: given, estimated, default")

ALL = (
    SIDE,
    TRACK,
    HAND_MODEL,
    FPS,
    FRAME_OFFSET,
    SOURCE_FRAMES,
    SCENE_FRAMES,
    VISIBLE,
    CONFIDENCE,
    CAPTURE_PATH,
    CAPTURE_ABS,
    MOVED_FROM,
    SOURCE,
    SOURCE_REL,
    IMAGE_SIZE,
    INTRINSICS,
    INTRINSICS_SOURCE,
)


def track_key(obj) -> str:
    """The capture track a hand armature shows: its ``TRACK``, or its side for rigs imported before N tracks."""
    return TRACK.read(obj) or SIDE.read(obj)
