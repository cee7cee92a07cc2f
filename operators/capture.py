"""Capture operator: footage -> capture file (in a worker process) -> rigged, keyframed hands.

Blender is never blocked: ``handcap.capture_clip`` starts ``python -m handcap capture`` in a worker
(``operators/worker.py``), follows its progress from a timer (progress bar, status text with frames done
and time left) and imports the result with ``builders.importer.import_capture`` when it succeeds. Esc
cancels: the worker is stopped and nothing in the file has changed. If the worker fails, the error is
reported and nothing is created. In background mode (``blender -b``, the bpy module, batch scripts) the
same operator simply waits for the worker (the run: ``operators/capture_run.py``). Its properties become one
``core.request.CaptureRequest`` (``capture_request``), the same request every other door sends.

Frame mapping (the importer's): scene frame = ``frame_offset`` + source frame index. For a Movie Clip
the offset is where the clip shows source frame 0 (``frame_start - frame_offset``), so keys line up with
the clip in the Clip Editor and as a camera background; for a file it is the scene's start frame.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..builders.importer import ImportOptions, ImportResult
from ..builders.smooth import smooth_new_hands
from ..core.media import VIDEO_EXTS
from ..core.request import MAX_HANDS, CaptureRequest, CaptureRequestError, parse_fit_pair
from .capture_run import CaptureInputError, CaptureRun, WorkerOperator
from .settings import get_prefs, resolve_interpreter, user_path, venv_dir  # noqa: F401 - their callers' old home

_DIGITS = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a file name


def apply_preferences(context, request: CaptureRequest) -> CaptureRequest:
    """Device, hand model and MANO folder come from the add-on preferences."""
    prefs = get_prefs(context)
    request.device = prefs.device
    request.model = prefs.hand_model
    if prefs.hand_model == "mano":
        mano = bpy.path.abspath(prefs.mano_dir)
        if not mano or not os.path.isdir(mano):
            raise CaptureInputError(
                "the MANO hand model is selected but 'MANO Folder' in HandCap's preferences is not an existing "
                "folder; set it or choose the Built-in hand model"
            )
        request.mano_dir = mano
    return request


# --------------------------------------------------------------------------- footage and frame range


@dataclass
class Footage:
    """What to capture and where its frames land in the scene.

    Attributes:
        source: path handed to the worker (video file, photo, image folder or printf pattern).
        zero_frame: scene frame of source frame 0.
        num_frames: frames in the source when known (Movie Clips), else None.
    """

    source: str
    zero_frame: int
    num_frames: int | None


def sequence_pattern(path: str) -> tuple[str, int]:
    """(printf pattern, index of ``path`` among the files the pattern matches) for one image of a sequence."""
    p = Path(path)
    m = _DIGITS.search(p.stem)
    if m is None:
        raise CaptureInputError(f"{p.name}: an image sequence needs numbered files (e.g. frame_0001.png)")
    width = len(m.group(1))
    head, tail = p.stem[: m.start()], p.stem[m.end() :] + p.suffix
    pattern = p.with_name(f"{head}%0{width}d{tail}")
    rx = re.compile(re.escape(head) + rf"(\d{{{width}}})" + re.escape(tail) + "$")
    numbers = sorted(int(mm.group(1)) for f in os.listdir(p.parent) if (mm := rx.match(f)))
    return str(pattern), numbers.index(int(m.group(1)))


def clip_footage(clip: bpy.types.MovieClip) -> Footage:
    path = bpy.path.abspath(clip.filepath, library=clip.library)
    if not path or not os.path.exists(path):
        raise CaptureInputError(f"the Movie Clip '{clip.name}' points to a missing file: {path or '(none)'}")
    # Blender shows file frame (scene frame - frame_start + frame_offset) at a scene frame (0-based).
    zero = clip.frame_start - clip.frame_offset
    if clip.source == "SEQUENCE":
        pattern, first = sequence_pattern(path)
        return Footage(pattern, zero - first, None)
    return Footage(path, zero, clip.frame_duration)


def file_footage(path: str, kind: str, scene) -> Footage:
    path = bpy.path.abspath(path)
    if not path:
        raise CaptureInputError("no file chosen")
    if kind == "SEQUENCE":
        if os.path.isdir(path):
            return Footage(path, scene.frame_start, None)
        if not os.path.isfile(path):
            raise CaptureInputError(f"{path}: no such file or folder")
        pattern, first = sequence_pattern(path)
        return Footage(pattern, scene.frame_start - first, None)
    if not os.path.isfile(path):
        raise CaptureInputError(f"{path}: no such file")
    return Footage(path, scene.frame_start, None)


def source_range(footage: Footage, mode: str, scene, first: int, last: int) -> tuple[int, int] | None:
    """Source frames [start, stop) to capture for a range mode ("SOURCE", "SCENE", "CUSTOM" in scene
    frames, inclusive), or None for the whole source."""
    if mode == "SOURCE":
        return None
    if mode == "SCENE":
        first, last = scene.frame_start, scene.frame_end
    if last < first:
        raise CaptureInputError(f"frame range {first}-{last} is empty (end before start)")
    start, stop = first - footage.zero_frame, last - footage.zero_frame + 1
    n = footage.num_frames
    if start < 0 or (n is not None and stop > n):
        shown = f"{footage.zero_frame}-{footage.zero_frame + n - 1}" if n else f"{footage.zero_frame} onwards"
        raise CaptureInputError(
            f"scene frames {first}-{last} are outside the footage, which covers scene frames {shown}"
        )
    return start, stop


def fit_overrides(text: str, same_person: bool = True) -> dict:
    """The fit overrides of the operator: NAME=VALUE pairs separated by spaces, plus ``same_person`` (two
    people's hands) unless the pairs set it; CaptureInputError names a malformed pair."""
    try:
        fit = dict(parse_fit_pair(pair) for pair in text.split())
    except CaptureRequestError as exc:
        raise CaptureInputError(str(exc)) from None
    if not same_person:
        fit.setdefault("same_person", False)
    return fit


def active_clip(context) -> bpy.types.MovieClip | None:
    return getattr(context, "edit_movieclip", None) or context.scene.active_clip


def capture_request(props, context, footage: Footage, clip=None) -> CaptureRequest:
    """The checked capture request of Capture Hands' properties (``props``: the operator, or anything with
    its property names) for ``footage``; device, hand model and MANO folder from the preferences."""
    scene = context.scene
    frames = source_range(footage, props.range_mode, scene, props.frame_first, props.frame_last)
    request = CaptureRequest(
        footage.source,
        frames=frames,
        stride=props.stride,
        hands=int(props.hands),
        mirrored=props.mirrored,
        min_confidence=props.min_confidence,
        min_frames=props.min_frames,
        bridge_gaps=getattr(props, "bridge_gaps", CaptureRequest.bridge_gaps),  # callers may predate the option
        detect=props.detect.lower().replace("_", "-"),
        fit=fit_overrides(props.fit_options, same_person=props.people == "ONE"),
    )
    if props.camera == "FOV":
        request.fov_deg = props.fov
    elif props.camera == "FOCAL_PX":
        request.focal_px = props.focal_px
    elif props.camera == "CLIP":
        if clip is None:
            raise CaptureInputError("'Clip Camera' needs the Active Movie Clip as footage")
        cam = clip.tracking.camera
        request.focal_mm, request.sensor_mm = cam.focal_length, cam.sensor_width
    elif props.camera == "PREFS":
        request.fov_deg = get_prefs(context).default_fov
    # AUTO: no camera option, so the capture estimates the focal length (its info says how well)
    apply_preferences(context, request)
    try:
        request.validate()
    except CaptureRequestError as exc:
        raise CaptureInputError(str(exc)) from None
    return request


# --------------------------------------------------------------------------- the operator


class HANDCAP_OT_capture_clip(WorkerOperator, bpy.types.Operator):
    """Capture hand motion from footage in the background and add rigged, keyframed hands"""

    bl_idname = "handcap.capture_clip"
    bl_label = "Capture Hands"
    # No REGISTER: a redo panel would re-run the whole inference on every tweak. UNDO: one step for the result.
    bl_options = {"UNDO"}

    source: EnumProperty(
        name="Footage",
        items=(
            ("ACTIVE_CLIP", "Active Movie Clip", "The clip open in the Clip Editor, else the scene's active clip"),
            ("FILE", "Video File", "A video file on disk"),
            ("SEQUENCE", "Image Sequence", "Numbered images: one of them, or their folder"),
        ),
        default="ACTIVE_CLIP",
    )
    filepath: StringProperty(name="File", subtype="FILE_PATH", options={"SKIP_SAVE"})
    range_mode: EnumProperty(
        name="Frames",
        items=(
            ("SOURCE", "Whole Footage", "Every frame of the clip or file"),
            ("SCENE", "Scene Range", "The scene's start to end frame"),
            ("CUSTOM", "Custom Range", "Scene frames from Start to End"),
        ),
        default="SOURCE",
    )
    frame_first: IntProperty(name="Start", description="First scene frame to capture", default=1)
    frame_last: IntProperty(name="End", description="Last scene frame to capture", default=250)
    stride: IntProperty(name="Step", description="Capture every n-th frame", default=1, min=1, max=100)
    hands: IntProperty(
        name="Hands",
        description="Most hands to capture (several people's hands: one rig per hand)",
        default=CaptureRequest.hands,
        min=1,
        max=MAX_HANDS,
    )
    bridge_gaps: IntProperty(
        name="Bridge Gaps",
        description="Fill a hand's gaps of up to this many captured frames from both sides (0 = leave them unkeyed)",
        default=CaptureRequest.bridge_gaps,
        min=0,
    )
    camera: EnumProperty(
        name="Lens",
        items=(
            ("AUTO", "From the Footage", "Focal length estimated from the hands' size and shape over the clip"),
            ("CLIP", "Clip Camera", "Focal length and sensor width of the Movie Clip's tracking camera"),
            ("FOV", "Field of View", "A horizontal field of view you know"),
            ("FOCAL_PX", "Focal Length in Pixels", "A focal length in pixels you know (e.g. from a calibration)"),
            ("PREFS", "Preferences", "The field of view set in HandCap's preferences"),
        ),
        default="AUTO",
    )
    fov: FloatProperty(name="Field of View", default=55.0, min=1.0, max=179.0, description="Horizontal, degrees")
    focal_px: FloatProperty(name="Focal Length (px)", default=1000.0, min=1.0, description="Focal length in pixels")
    mirrored: BoolProperty(
        name="Mirrored (Selfie)",
        description="The footage is a mirrored selfie view: the detected left and right hands are swapped",
        default=False,
    )
    people: EnumProperty(
        name="Hands Of",
        items=(
            ("ONE", "One Person", "Both hands are one person's: the fit gives them one size"),
            ("TWO", "Two People", "The hands may be two people's: each hand keeps its own size"),
        ),
        default="ONE",
    )
    min_confidence: FloatProperty(
        name="Minimum Confidence",
        description="Drop a hand whose best frame's confidence (landmark presence x handedness agreement) is "
        "below this",
        default=CaptureRequest.min_confidence,
        min=0.0,
        max=1.0,
    )
    min_frames: IntProperty(
        name="Minimum Frames",
        description="Drop a hand seen in fewer of the captured frames (a brief misdetection)",
        default=CaptureRequest.min_frames,
        min=1,
    )
    detect: EnumProperty(
        name="Palm Search",
        items=(
            ("TILED", "Tiled", "Photos: the full view plus tiles and a zoomed-out view (small and close-up hands)"),
            ("TILED_VIDEO", "Tiled Video", "Also tiles around a lost hand in videos (slower while one is missing)"),
            (
                "SEARCH",
                "Search",
                "Photos: also look for gloved or hidden hands with the landmark network (slower; may add a false hand)",
            ),
            ("FULL", "Full View", "The whole frame only, as MediaPipe looks"),
        ),
        default="TILED",
    )
    fit_options: StringProperty(
        name="Fit Options",
        description="Overrides of the fit's options as NAME=VALUE separated by spaces (as the command line's "
        "--fit), e.g. polish_iterations=3 w_2d=0.5",
        default="",
    )
    with_mesh: BoolProperty(name="Hand Mesh", description="Add the skinned hand mesh", default=True)
    set_scene_timing: BoolProperty(
        name="Set Scene Frame Rate and Range", description="Match the scene to the captured frames", default=False
    )
    smooth: BoolProperty(
        name="Smooth",
        description="Give each hand the default smoothing (the capture's fit leaves all smoothing over time to it). "
        "The raw keys are kept: change or reset it in the Smoothing panel",
        default=True,
    )

    def invoke(self, context, event):
        wm = context.window_manager
        if self.source != "ACTIVE_CLIP" and not self.filepath:
            wm.fileselect_add(self)  # the options show in the file browser's side panel (draw)
            return {"RUNNING_MODAL"}
        return wm.invoke_props_dialog(self, width=360, confirm_text="Capture")

    def execute(self, context):
        return self.start(context)

    def make_run(self, context) -> CaptureRun:
        scene = context.scene
        clip = None
        if self.source == "ACTIVE_CLIP":
            clip = active_clip(context)
            if clip is None:
                raise CaptureInputError("no active Movie Clip: open one in the Clip Editor, or choose a video file")
            footage = clip_footage(clip)
        else:
            footage = file_footage(self.filepath, self.source, scene)
        if self.source == "FILE" and Path(footage.source).suffix.lower() not in VIDEO_EXTS:
            raise CaptureInputError(
                f"{Path(footage.source).name} is not a video file ({', '.join(sorted(VIDEO_EXTS))})"
            )
        request = capture_request(self, context, footage, clip)
        options = ImportOptions(
            frame_offset=footage.zero_frame, with_mesh=self.with_mesh, set_scene_timing=self.set_scene_timing
        )
        return CaptureRun(request, resolve_interpreter(context), options, keep=True)

    def done(self, context, result: ImportResult) -> set[str]:
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        if self.smooth:
            for name, why in smooth_new_hands(result.armatures, result.keyed_frames).items():
                self.report({"WARNING"}, f"{name}: not smoothed (raw keys kept): {why}")
        hands = ", ".join(f"{side} ({result.keyed_frames[side]} frames)" for side in result.armatures)
        first, last = result.scene_frames
        self.report({"INFO"}, f"Captured {hands} into '{result.collection}', scene frames {first}-{last}")
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "source")
        if self.source != "ACTIVE_CLIP":
            layout.prop(self, "filepath")
        layout.prop(self, "range_mode")
        if self.range_mode == "CUSTOM":
            col = layout.column(align=True)
            col.prop(self, "frame_first")
            col.prop(self, "frame_last")
        layout.prop(self, "stride")
        layout.prop(self, "hands", expand=True)
        layout.prop(self, "camera")
        if self.camera == "FOV":
            layout.prop(self, "fov")
        elif self.camera == "FOCAL_PX":
            layout.prop(self, "focal_px")
        layout.prop(self, "mirrored")
        if int(self.hands) >= 2:
            layout.prop(self, "people", expand=True)
        layout.prop(self, "min_confidence")
        layout.prop(self, "min_frames")
        layout.prop(self, "bridge_gaps")
        layout.prop(self, "detect")
        layout.prop(self, "fit_options")
        layout.prop(self, "with_mesh")
        layout.prop(self, "set_scene_timing")
        layout.prop(self, "smooth")


CLASSES = (HANDCAP_OT_capture_clip,)
