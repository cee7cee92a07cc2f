"""What differs between the Blender releases HandCap supports (4.2 LTS, 4.5 LTS, 5.0), in one place.

Every ``bpy.app.version`` check of the extension lives here; the builders call these helpers instead.

* Actions: 4.4 made them layered and slotted (action -> slot -> layer -> keyframe strip -> channelbag ->
  F-curves); 5.0 removed the old ``Action.fcurves``. Before 4.4 an action holds its F-curves itself and
  there are no slots: ``assigned_slot`` is None there, and ``channelbag`` returns an adapter over
  ``Action.fcurves`` with a channelbag's ``fcurves.new/find/remove``. ``bpy_extras.anim_utils`` gained its
  channelbag helpers only in 5.0, so the layered path is written out here.
* EEVEE's engine id is ``BLENDER_EEVEE_NEXT`` in 4.2 to 4.5 and ``BLENDER_EEVEE`` again in 5.0.
* The Video Sequencer's ``sequences`` became ``strips`` in 4.4.
* 5.0 moved video output to ``image_settings.media_type`` and the compositor to a node group in
  ``Scene.compositing_node_group``; before, the scene owns its tree (``use_nodes`` / ``node_tree``), and
  Alpha Over's inputs are two sockets named "Image" (``Background`` / ``Foreground`` from 5.0).
"""

from __future__ import annotations

import bpy

VERSION = bpy.app.version
#: Layered, slotted actions (Blender 4.4+).
SLOTTED_ACTIONS = VERSION >= (4, 4, 0)
#: Scene compositor as a node group with a Group Output, video output as a media type (Blender 5.0+).
BLENDER_5 = VERSION >= (5, 0, 0)
#: HandCap's engine names -> this release's render engine ids.
_ENGINES = {"BLENDER_EEVEE": "BLENDER_EEVEE" if BLENDER_5 else "BLENDER_EEVEE_NEXT"}


def render_engine(name: str) -> str:
    """Blender's id for a HandCap engine name ("BLENDER_WORKBENCH", "BLENDER_EEVEE", "CYCLES")."""
    return _ENGINES.get(name, name)


# --- actions -------------------------------------------------------------------------------------------


class _Curves:
    """``Action.fcurves`` (before 4.4) with the calls of a channelbag's ``fcurves``."""

    def __init__(self, curves):
        self._curves = curves

    def new(self, data_path: str, index: int = 0, group_name: str = ""):
        return self._curves.new(data_path, index=index, action_group=group_name)

    def find(self, data_path: str, index: int = 0):
        return self._curves.find(data_path, index=index)

    def remove(self, fcurve) -> None:
        self._curves.remove(fcurve)

    def __iter__(self):
        return iter(list(self._curves))

    def __len__(self) -> int:
        return len(self._curves)


class _ActionBag:
    """A pre-4.4 action standing in for the one channelbag it has."""

    def __init__(self, action):
        self.fcurves = _Curves(action.fcurves)


def assigned_slot(obj):
    """The action slot ``obj`` is animated by; None before 4.4 (no slots) or when it has none."""
    anim = obj.animation_data
    if not SLOTTED_ACTIONS or anim is None:
        return None
    return anim.action_slot


def new_action(obj, name: str):
    """A fresh action (with one slot for ``obj`` where slots exist), assigned to ``obj``."""
    action = bpy.data.actions.new(name)
    anim = obj.animation_data or obj.animation_data_create()
    if SLOTTED_ACTIONS:
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        anim.action = action
        anim.action_slot = slot
    else:
        anim.action = action
    return action


def assign_action(obj, action, slot_identifier: str | None = None):
    """Assign ``action`` to ``obj`` on its slot with ``slot_identifier`` (e.g. a copy of ``obj``'s previous
    action on the previous slot), on its first slot when that is None, on a new slot when neither exists.
    Returns the slot (None before 4.4)."""
    anim = obj.animation_data or obj.animation_data_create()
    anim.action = action
    if not SLOTTED_ACTIONS:
        return None
    slot = next((s for s in action.slots if slot_identifier in (None, s.identifier)), None)
    if slot is None:
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
    anim.action_slot = slot
    return slot


def slot_identifier(obj) -> str | None:
    slot = assigned_slot(obj)
    return slot.identifier if slot is not None else None


def slot_in(action, obj):
    """``obj``'s slot in ``action``: the assigned one, or in a copy of its action the slot with the same
    identifier (a copied action keeps its slots). None before 4.4."""
    slot = assigned_slot(obj)
    if slot is None or action == obj.animation_data.action:
        return slot
    return next((s for s in action.slots if s.identifier == slot.identifier), None)


def channelbag(action, slot, create: bool = False):
    """The F-curves of ``action`` for ``slot`` (anything with ``.fcurves``), or None when there are none
    and ``create`` is False. Before 4.4 the slot is ignored: the action's own F-curves."""
    if action is None:
        return None
    if not SLOTTED_ACTIONS:
        return _ActionBag(action)
    if slot is None:
        return None
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag:
                return bag
    if not create:
        return None
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def assigned_channelbag(obj):
    """The F-curves ``obj`` is animated by (its action on its slot), or None."""
    anim = obj.animation_data
    if anim is None or anim.action is None:
        return None
    return channelbag(anim.action, assigned_slot(obj))


def new_fcurve(bag, data_path: str, index: int, group: str):
    """A new F-curve in ``bag`` (from ``channelbag``) in channel group ``group`` ("" for none); a channelbag's
    ``fcurves.new`` takes the group only from 5.0, so 4.4 to 4.5 set it afterwards."""
    if BLENDER_5 or not SLOTTED_ACTIONS:
        return bag.fcurves.new(data_path, index=index, group_name=group)
    fc = bag.fcurves.new(data_path, index=index)
    if group:
        fc.group = bag.groups.get(group) or bag.groups.new(group)
    return fc


def all_fcurves(action) -> list:
    """Every F-curve of ``action``, all slots."""
    if not SLOTTED_ACTIONS:
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


# --- rendering -----------------------------------------------------------------------------------------


def sequencer_strips(editor):
    """A sequence editor's strip collection (``strips`` from 4.4, ``sequences`` before)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def set_video_output(image_settings) -> None:
    """Make a render write video (FFMPEG); 5.0 first switches the output to a video media type."""
    if BLENDER_5:
        image_settings.media_type = "VIDEO"
    image_settings.file_format = "FFMPEG"


# --- compositor ------------------------------------------------------------------------------------------


class CompositorInUse(ValueError):
    """Before 5.0 a scene has one compositor tree of its own; HandCap will not rewire one that holds nodes."""


def alpha_over_inputs(node) -> tuple:
    """(background, foreground) inputs of an Alpha Over node: named from 5.0, the two "Image" sockets before."""
    if BLENDER_5:
        return node.inputs["Background"], node.inputs["Foreground"]
    return node.inputs[1], node.inputs[2]


def use_compositor(scene, fill):
    """Composite ``scene``'s renders through the nodes ``fill(tree)`` adds (it returns the node whose first
    output is the result). Returns what ``restore_compositor`` needs.

    5.0: a new node group with a Group Output becomes ``scene.compositing_node_group`` (the user's group is
    only unassigned). Before: the scene's own tree (``use_nodes``) with a Composite node; it must hold no nodes
    (enabling it adds Blender's defaults, cleared here), and ours are removed again afterwards.

    Raises:
        CompositorInUse: before 5.0, the scene's compositor tree already holds nodes.
    """
    if BLENDER_5:
        previous = scene.compositing_node_group
        tree = bpy.data.node_groups.new(".HC_overlay", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
        tree.links.new(fill(tree).outputs[0], out.inputs[0])
        scene.compositing_node_group = tree
        return previous, tree
    had_tree, previous = scene.node_tree is not None, scene.use_nodes
    if had_tree and len(scene.node_tree.nodes):
        raise CompositorInUse(
            f"scene '{scene.name}' has compositor nodes of its own: Blender {bpy.app.version_string} gives a scene "
            "one compositor, so the footage cannot go under the hands without rewiring it. Render without the "
            "footage, or from a scene without compositor nodes"
        )
    scene.use_nodes = True
    tree = scene.node_tree
    tree.nodes.clear()
    out = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(fill(tree).outputs[0], out.inputs["Image"])
    return previous, tree


def restore_compositor(scene, state) -> None:
    """Undo ``use_compositor``: the user's compositor as it was, HandCap's nodes gone."""
    previous, tree = state
    if BLENDER_5:
        scene.compositing_node_group = previous
        bpy.data.node_groups.remove(tree)
    else:
        tree.nodes.clear()
        scene.use_nodes = previous
