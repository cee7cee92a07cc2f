"""Stage 2: keyframes, written in bulk (``keyframe_points.add`` + ``foreach_set``).

One ``keyframe_insert`` per key costs a Python round trip and a depsgraph tag each;
thousands of frames x 70 channels would take minutes. Here every F-curve is filled
with a few array calls. Actions use Blender's layered API where it exists (4.4+; the only one in 5.x):
action -> slot -> layer -> keyframe strip -> channelbag -> F-curves; ``compat`` covers 4.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from . import compat

#: Keyframe interpolation name -> Blender's enum value (what ``foreach_set`` takes).
INTERPOLATIONS = {k: v.value for k, v in bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items.items()}


@dataclass
class Channel:
    """One F-curve to write.

    Attributes:
        data_path: RNA path from the animated ID, e.g. ``pose.bones["hand.R"].rotation_quaternion``.
        index: array index (0 for scalars).
        frames: (n,) scene frames (float), strictly increasing.
        values: (n,) values at those frames.
        group: channel group name (the bone name for bone channels, "" for none).
        interpolation: Blender keyframe interpolation, e.g. "LINEAR", "CONSTANT", "BEZIER".
    """

    data_path: str
    index: int
    frames: np.ndarray
    values: np.ndarray
    group: str = ""
    interpolation: str = "LINEAR"


def bone_channels(
    bone: str, prop: str, frames: np.ndarray, values: np.ndarray, interpolation: str = "LINEAR"
) -> list[Channel]:
    """Channels of a pose-bone vector property; ``values`` is (n, components)."""
    path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{prop}'
    return [
        Channel(path, i, frames, values[:, i], group=bone, interpolation=interpolation) for i in range(values.shape[1])
    ]


def new_action(obj: bpy.types.Object, name: str) -> bpy.types.Action:
    """A fresh action with one slot for ``obj``, assigned to it. Blender suffixes ``name`` (.001 ...)
    when it is taken, so an existing action is never reused or overwritten."""
    return compat.new_action(obj, name)


def write_channels(action: bpy.types.Action, slot, channels: list[Channel]) -> None:
    """Create the F-curves of ``channels`` in ``action``'s channelbag for ``slot`` (None before Blender 4.4,
    see ``compat``), all keys at once."""
    bag = compat.channelbag(action, slot, create=True)
    for ch in channels:
        n = len(ch.frames)
        if n == 0:
            continue
        fc = compat.new_fcurve(bag, ch.data_path, ch.index, ch.group)
        points = fc.keyframe_points
        points.add(n)
        co = np.empty((n, 2), dtype=np.float32)
        co[:, 0] = ch.frames
        co[:, 1] = ch.values
        points.foreach_set("co", co.ravel())
        points.foreach_set("interpolation", np.full(n, INTERPOLATIONS[ch.interpolation], dtype=np.int32))
        # Handles for BEZIER keys (and a sorted, consistent curve for everything else).
        fc.update()
