"""A capture run in Blender: the worker from request to result, and the modal operator base that drives it.

``CaptureRun`` starts ``python -m handcap capture`` (``operators/worker.py``), follows it and hands a finished
capture file to the importer (or another ``apply``); ``WorkerOperator`` runs it from a timer without blocking
the UI (Esc cancels), or to completion in background mode. Used by Capture Hands and Pose from Photo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import bpy

from ..builders import capture_store
from ..builders.importer import CaptureImportError, ImportOptions, import_capture
from ..core import naming
from ..core.request import CaptureRequest
from . import interpreter as interp
from .settings import user_path
from .worker import CaptureJob, WorkerError, format_seconds


class CaptureInputError(ValueError):
    """The footage, frame range or settings cannot be captured (message says why); nothing was started."""


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
