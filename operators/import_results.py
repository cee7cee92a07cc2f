"""File > Import > Hand results: another tool's results (HaMeR, WiLoR, MediaPipe, FreeMoCap) -> hands.

Thin: the properties fill :class:`ImportResultsOptions`, and :func:`import_results` does the work. The
conversion runs as ``python -m handcap import-results`` in the worker process (``operators/worker.py``),
because keypoint files are fitted with torch, which Blender's own Python may lack; the capture it writes
is then imported with ``builders.importer.import_capture`` and given the default smoothing, like a
capture of Capture Hands. The worker is waited for (MANO files take about a second, keypoint fits a few
seconds per hundred frames); if it fails, its one-line error is reported and nothing is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..builders.importer import CaptureImportError, ImportOptions, ImportResult, import_capture
from ..builders.smooth import smooth_new_hands
from ..core.request import MAX_HANDS
from .settings import get_prefs
from .worker import CaptureJob, WorkerError

LAYOUT_ITEMS = (
    ("auto", "Detect", "From the file's extension and keys"),
    ("handcap", "HandCap MANO Layout", "MANO parameters in HandCap's documented layout"),
    ("hamer", "HaMeR", "A dump of HaMeR's demo outputs (left hands mirrored)"),
    ("wilor", "WiLoR", "A dump of WiLoR / WiLoR-mini outputs (left hands mirrored)"),
    ("mediapipe", "MediaPipe Landmarks", "21 landmarks per hand (JSON or CSV), fitted by HandCap"),
    ("freemocap", "FreeMoCap Hands", "FreeMoCap's mediapipe_*_hand_3d_xyz .csv / .npy, fitted by HandCap"),
)


class ImportResultsError(ValueError):
    """The results file could not be converted or imported (message for the user)."""


@dataclass
class ResultsRequest:
    """The worker's ``import-results`` command line (duck-types ``CaptureRequest`` for ``CaptureJob``)."""

    path: str
    layout: str = "auto"
    model: str = "builtin"
    mano_dir: str | None = None
    image_size: tuple[int, int] | None = None
    fps: float | None = None
    left_mirrored: bool | None = None
    mirrored: bool = False
    hands: int = 2

    def argv(self, output, progress_json: bool = True) -> list[str]:
        args = ["import-results", str(self.path), "-o", str(output), "--layout", self.layout, "--model", self.model]
        args += ["--hands", str(self.hands)]
        if self.mano_dir:
            args += ["--mano-dir", str(self.mano_dir)]
        if self.image_size:
            args += ["--image-size", f"{int(self.image_size[0])}x{int(self.image_size[1])}"]
        if self.fps:
            args += ["--fps", repr(float(self.fps))]
        if self.left_mirrored is not None:
            args.append("--left-mirrored" if self.left_mirrored else "--no-left-mirrored")
        if self.mirrored:
            args.append("--mirrored")
        return args


@dataclass
class ImportResultsOptions:
    """request: what the worker converts; import_options: how the capture becomes hands; smooth: give the
    new hands the default smoothing (raw keys kept); timeout_s: longest wait for the worker."""

    request: ResultsRequest
    import_options: ImportOptions = field(default_factory=ImportOptions)
    smooth: bool = True
    timeout_s: float = 600.0


def import_results(context, options: ImportResultsOptions, interpreter=None) -> tuple[ImportResult, list[str]]:
    """Convert the file in the worker, import the capture; returns the import result and warnings."""
    from .capture import resolve_interpreter

    if not os.path.isfile(options.request.path):
        raise ImportResultsError(f"{options.request.path}: no such file")
    job = CaptureJob(options.request, interpreter or resolve_interpreter(context))
    try:
        job.start()
        state = job.wait(timeout=options.timeout_s)
        if state != CaptureJob.FINISHED:
            raise ImportResultsError(job.error or f"the conversion ended as {state.lower()}")
        try:
            result = import_capture(context, str(job.output), options.import_options)
        except CaptureImportError as exc:
            raise ImportResultsError(str(exc)) from None
    except WorkerError as exc:
        raise ImportResultsError(str(exc)) from None
    finally:
        job.cleanup()
    warnings = list(result.warnings) + [m.split("note: ", 1)[1] for m in job.messages if "note: " in m]
    if options.smooth:
        warnings += [
            f"{name}: not smoothed ({why})"
            for name, why in smooth_new_hands(result.armatures, result.keyed_frames).items()
        ]
    return result, warnings


class HANDCAP_OT_import_results(bpy.types.Operator, ImportHelper):
    """Import hand results of another tool (HaMeR, WiLoR, MediaPipe, FreeMoCap) as rigged, keyframed hands"""

    bl_idname = "handcap.import_results"
    bl_label = "Import Hand Results"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz;*.json;*.csv;*.npy", options={"HIDDEN"})

    layout_kind: EnumProperty(name="Layout", items=LAYOUT_ITEMS, default="auto")
    left_mirrored: EnumProperty(
        name="Left Hands",
        items=(
            ("AUTO", "Layout Default", "Mirrored for HaMeR and WiLoR, as given otherwise"),
            ("MIRRORED", "Mirrored Right Hand", "Left hands are given as the mirrored right hand"),
            ("OWN", "Left Model", "Left hands are given in the left model's own convention"),
        ),
        default="AUTO",
    )
    image_width: IntProperty(
        name="Image Width", description="Where the file does not say (0: from the file)", default=0, min=0
    )
    image_height: IntProperty(name="Image Height", default=0, min=0)
    fps: FloatProperty(
        name="Frame Rate", description="Where the file does not say (0: from the file)", default=0.0, min=0.0
    )
    mirrored: BoolProperty(
        name="Mirrored Footage", default=False, description="Keypoint files: the footage is a mirrored selfie view"
    )
    hands: IntProperty(
        name="Hands", description="Most hand tracks to keep (more for several people)", default=2, min=1, max=MAX_HANDS
    )
    smooth: BoolProperty(name="Smooth", description="Default smoothing of the new hands (raw keys kept)", default=True)
    use_scene_start: BoolProperty(
        name="Start at Scene Start", default=True, description="Put source frame 0 on the scene's start frame"
    )

    def results_options(self, context) -> ImportResultsOptions:
        prefs = get_prefs(context)
        mano = bpy.path.abspath(prefs.mano_dir) if prefs.mano_dir else None
        size = (self.image_width, self.image_height) if self.image_width and self.image_height else None
        request = ResultsRequest(
            path=self.filepath,
            layout=self.layout_kind,
            model=prefs.hand_model,
            mano_dir=mano or None,
            image_size=size,
            fps=self.fps or None,
            left_mirrored={"AUTO": None, "MIRRORED": True, "OWN": False}[self.left_mirrored],
            mirrored=self.mirrored,
            hands=self.hands,
        )
        return ImportResultsOptions(
            request=request,
            import_options=ImportOptions(frame_offset=None if self.use_scene_start else 0),
            smooth=self.smooth,
        )

    def execute(self, context):
        if not self.filepath:
            self.report({"ERROR"}, "No results file chosen")
            return {"CANCELLED"}
        try:
            result, warnings = import_results(context, self.results_options(context))
        except ImportResultsError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for w in warnings:
            self.report({"WARNING"}, w)
        hands = ", ".join(f"{side} ({result.keyed_frames[side]} frames)" for side in result.armatures)
        self.report({"INFO"}, f"Imported {hands} into '{result.collection}'")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(HANDCAP_OT_import_results.bl_idname, text="Hand Results (HaMeR, WiLoR, MediaPipe, FreeMoCap)")


CLASSES = (HANDCAP_OT_import_results,)
