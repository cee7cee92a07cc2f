"""Capture operator: footage -> capture file (in a worker process) -> rigged, keyframed hands.

Blender is never blocked: ``handcap.capture_clip`` starts ``python -m handcap capture`` in a worker
(``operators/worker.py``), follows its progress from a timer (progress bar, status text with frames done
and time left) and imports the result with ``builders.importer.import_capture`` when it succeeds. Esc
cancels: the worker is stopped and nothing in the file has changed. If the worker fails, the error is
reported and nothing is created. In background mode (``blender -b``, the bpy module, batch scripts) the
same operator simply waits for the worker.

Frame mapping (the importer's): scene frame = ``frame_offset`` + source frame index. For a Movie Clip
the offset is where the clip shows source frame 0 (``frame_start - frame_offset``), so keys line up with
the clip in the Clip Editor and as a camera background; for a file it is the scene's start frame.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..builders import capture_store
from ..builders.importer import CaptureImportError, ImportOptions, ImportResult, import_capture
from ..builders.smooth import smooth_new_hands
from ..core import naming
from ..preferences import ADDON_ID, get_prefs
from . import interpreter as interp
from .worker import CaptureJob, CaptureRequest, WorkerError, format_seconds

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
_DIGITS = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a file name


class CaptureInputError(ValueError):
    """The footage, frame range or settings cannot be captured (message says why); nothing was started."""


# --------------------------------------------------------------------------- environment helpers


def user_path(name: str, create: bool = False) -> Path:
    """A folder under HandCap's user data (the extension's own, outside Blender's and the add-on's files)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path=name, create=create))
    except ValueError:
        # Not installed as an extension (a legacy add-on install): Blender's user data folder instead.
        return Path(bpy.utils.user_resource("DATAFILES", path=f"handcap/{name}", create=create))


def venv_dir() -> Path:
    return user_path("venv")


def resolve_interpreter(context) -> interp.Interpreter:
    """The worker's interpreter per the preferences (raises InterpreterError with the fix)."""
    prefs = get_prefs(context)
    return interp.choose_interpreter(
        prefs.python_path, sys.executable, venv_dir(), interp.requirements_importable_here()
    )


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


# --------------------------------------------------------------------------- a capture run


class CaptureRun:
    """One capture from request to result, driven by a modal timer or by a blocking wait.

    ``poll()`` follows the worker; ``finish(context)`` hands a successful capture file to ``apply``
    (default: ``import_capture`` with ``options``) or raises ``WorkerError`` with the reason, having created
    nothing; ``cancel()`` stops the worker. The temporary capture file (and ``temp_files``) are always removed.
    With ``keep`` the capture is first copied to its lasting place (``builders.capture_store``: beside the saved
    .blend, else the extension's user folder) and ``apply`` gets that copy, so the hands can find it later.
    """

    def __init__(
        self,
        request: CaptureRequest,
        interpreter: interp.Interpreter,
        options: ImportOptions | None = None,
        apply: Callable | None = None,
        temp_files: tuple[Path, ...] = (),
        keep: bool = False,
    ):
        self.options = options or ImportOptions()
        self.apply = apply or (lambda context, path: import_capture(context, str(path), self.options))
        self.temp_files = temp_files
        self.keep = keep
        log = user_path("logs", create=True) / "last_capture.log"
        log.unlink(missing_ok=True)
        self.log_path = log
        self.job = CaptureJob(request, interpreter, log_path=log)

    def start(self) -> CaptureRun:
        try:
            self.job.start()
        except WorkerError:
            self._remove_temp()
            raise
        return self

    def poll(self) -> str:
        return self.job.poll()

    def wait(self) -> str:
        """Block until the worker has ended (background mode)."""
        while self.poll() == CaptureJob.RUNNING:
            time.sleep(0.1)
        return self.job.state

    def status_text(self) -> str:
        p = self.job.progress
        return f"{p.describe()}, {format_seconds(p.elapsed_s)} elapsed (Esc cancels)"

    def cancel(self) -> None:
        self.job.cancel()
        self._remove_temp()

    def finish(self, context):
        try:
            if self.job.state != CaptureJob.FINISHED:
                raise WorkerError(self.job.error or f"the capture did not finish ({self.job.state.lower()})")
            if not self.keep:
                return self.apply(context, self.job.output)
            try:
                stem = naming.clip_stem(str(self.job.request.source))
                kept, created = capture_store.keep_capture(self.job.output, stem, user_path("captures", create=True))
            except capture_store.CaptureStoreError as exc:
                raise WorkerError(str(exc)) from None
            try:
                return self.apply(context, kept)
            except Exception:
                if created:
                    Path(kept).unlink(missing_ok=True)  # nothing was imported: leave no orphan copy
                raise
        finally:
            self.job.cleanup()
            self._remove_temp()

    def _remove_temp(self) -> None:
        for path in self.temp_files:
            Path(path).unlink(missing_ok=True)


# --------------------------------------------------------------------------- modal operator base


class WorkerOperator:
    """Mixin: run a CaptureRun without blocking the UI, or to completion in background mode.

    Subclasses implement ``make_run(context) -> CaptureRun`` (raise CaptureInputError for bad input) and
    ``done(context, result) -> set`` (report and return {"FINISHED"}).
    """

    _run: CaptureRun | None = None
    _timer = None

    def start(self, context) -> set[str]:
        try:
            run = self.make_run(context)
            run.start()
        except (CaptureInputError, interp.InterpreterError, WorkerError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._run = run
        wm = context.window_manager
        if bpy.app.background or context.window is None:
            run.wait()
            return self._finish(context)
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.progress_begin(0, 1000)
        wm.modal_handler_add(self)
        self._status(context, run.status_text())
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        if event.type == "ESC" and event.value == "PRESS":
            run.cancel()
            self._end_ui(context)
            self.report({"WARNING"}, "Capture cancelled; nothing was changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if run.poll() == CaptureJob.RUNNING:
            context.window_manager.progress_update(int(1000 * run.job.progress.overall))
            self._status(context, run.status_text())
            return {"RUNNING_MODAL"}
        self._end_ui(context)
        return self._finish(context)

    def _finish(self, context) -> set[str]:
        run, self._run = self._run, None
        try:
            result = run.finish(context)
        except (WorkerError, CaptureImportError) as exc:
            self.report({"ERROR"}, f"Capture failed: {exc} (log: {run.log_path})")
            return {"CANCELLED"}
        return self.done(context, result)

    def cancel(self, context):
        # Blender calls this when the operator is cancelled from outside (window closed, file loaded).
        if self._run is not None:
            self._run.cancel()
            self._run = None
        self._end_ui(context)

    def _status(self, context, text: str | None) -> None:
        workspace = getattr(context, "workspace", None)
        if workspace is not None:
            workspace.status_text_set(text)
        if context.area is not None:
            context.area.header_text_set(text)

    def _end_ui(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
            wm.progress_end()
        self._status(context, None)


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


def active_clip(context) -> bpy.types.MovieClip | None:
    return getattr(context, "edit_movieclip", None) or context.scene.active_clip


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
    hands: EnumProperty(
        name="Hands", items=(("1", "One", "At most one hand"), ("2", "Two", "Up to two hands")), default="2"
    )
    camera: EnumProperty(
        name="Lens",
        items=(
            ("AUTO", "From the Footage", "Focal length estimated from the hands' size and shape over the clip"),
            ("CLIP", "Clip Camera", "Focal length and sensor width of the Movie Clip's tracking camera"),
            ("FOV", "Field of View", "A horizontal field of view you know"),
            ("PREFS", "Preferences", "The field of view set in HandCap's preferences"),
        ),
        default="AUTO",
    )
    fov: FloatProperty(name="Field of View", default=55.0, min=1.0, max=179.0, description="Horizontal, degrees")
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
        frames = source_range(footage, self.range_mode, scene, self.frame_first, self.frame_last)
        request = CaptureRequest(footage.source, frames=frames, stride=self.stride, hands=int(self.hands))
        if self.camera == "FOV":
            request.fov_deg = self.fov
        elif self.camera == "CLIP":
            if clip is None:
                raise CaptureInputError("'Clip Camera' needs the Active Movie Clip as footage")
            cam = clip.tracking.camera
            request.focal_mm, request.sensor_mm = cam.focal_length, cam.sensor_width
        elif self.camera == "PREFS":
            request.fov_deg = get_prefs(context).default_fov
        # AUTO: no camera option, so the capture estimates the focal length (its info says how well)
        apply_preferences(context, request)
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
        layout.prop(self, "with_mesh")
        layout.prop(self, "set_scene_timing")
        layout.prop(self, "smooth")


CLASSES = (HANDCAP_OT_capture_clip,)
