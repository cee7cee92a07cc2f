"""The inference environment: check what is missing, or set up HandCap's private Python environment.

``handcap.check_environment`` probes the interpreter captures would use (in a thread: importing torch
takes seconds) and reports what is missing with the exact command that fixes it.
``handcap.setup_environment`` creates a virtual environment under the extension's user folder
(``bpy.utils.extension_path_user(<extension>, path="venv")``) and pip-installs the inference requirements
into it, step by step in the background with a log file; only when Blender's online access allows it.
Nothing is ever installed into Blender's own Python.
"""

from __future__ import annotations

import sys
import threading
import time

import bpy
from bpy.props import EnumProperty, StringProperty

from . import interpreter as interp
from .settings import get_prefs, user_path, venv_dir
from .worker import BackgroundProcess, WorkerError

#: Latest results, shown in the preferences and the sidebar (module state: one Blender session).
STATE = {"report": None, "checking": False, "setup": ""}


def check_now(context) -> interp.EnvironmentReport:
    """Probe the environment (blocks for a few seconds) and remember the report."""
    prefs = get_prefs(context)
    report = interp.check_environment(
        prefs.python_path, sys.executable, venv_dir(), interp.requirements_importable_here()
    )
    STATE["report"] = report
    return report


def draw_environment(layout) -> None:
    """The environment's status and its Check / Set Up buttons (the sidebar panel and the preferences)."""
    box = layout.box()
    for line in status_lines():
        box.label(text=line)
    row = box.row(align=True)
    row.operator("handcap.check_environment", text="Check", icon="CHECKMARK")
    row.operator("handcap.setup_environment", text="Set Up", icon="IMPORT")


def status_lines() -> list[str]:
    """What the UI shows about the environment."""
    if STATE["setup"]:
        return [STATE["setup"]]
    if STATE["checking"]:
        return ["Checking the inference environment..."]
    report = STATE["report"]
    if report is None:
        return ["Inference environment not checked yet"]
    return (["Inference environment ready"] if report.ok else []) + report.lines()


class HANDCAP_OT_check_environment(bpy.types.Operator):
    """Check that the inference Python and its packages (torch, OpenCV, ...) are in place"""

    bl_idname = "handcap.check_environment"
    bl_label = "Check Inference Environment"

    _thread = None
    _timer = None
    _result = None

    def execute(self, context):
        if bpy.app.background or context.window is None:
            return self._report(check_now(context))
        STATE["checking"] = True
        box = {}
        prefs = get_prefs(context)
        args = (prefs.python_path, sys.executable, venv_dir(), interp.requirements_importable_here())

        def work():
            box["report"] = interp.check_environment(*args)

        self._result = box
        self._thread = threading.Thread(target=work, daemon=True, name="handcap-check-env")
        self._thread.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        STATE["checking"] = False
        STATE["report"] = self._result["report"]
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return self._report(STATE["report"])

    def _report(self, report: interp.EnvironmentReport):
        if report.ok:
            self.report({"INFO"}, " | ".join(report.lines()))
            return {"FINISHED"}
        self.report({"ERROR"}, f"Inference environment: {report.problem}. Fix: {report.fix}")
        return {"CANCELLED"}


class HANDCAP_OT_setup_environment(bpy.types.Operator):
    """Create HandCap's private Python environment and install PyTorch, OpenCV, SciPy, NumPy and tqdm into it
    (downloads about 200 MB for the CPU build, several GB for CUDA)"""

    bl_idname = "handcap.setup_environment"
    bl_label = "Set Up Inference Environment"

    build: EnumProperty(
        name="PyTorch Build",
        items=(
            ("cpu", "CPU", "Smaller download; works everywhere"),
            ("cuda", "CUDA", "NVIDIA GPUs (PyPI's build on Linux; set the index URL on Windows)"),
        ),
        default="cpu",
    )
    torch_index_url: StringProperty(
        name="PyTorch Index URL",
        description="pip index to take torch from (empty: PyTorch's CPU index for CPU, PyPI for CUDA)",
        default="",
    )

    _steps = None
    _log = None
    _index = 0
    _proc = None
    _timer = None

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        if not bpy.app.online_access:
            steps = interp.setup_steps(sys.executable, venv_dir(), self.build, self.torch_index_url)
            commands = " && ".join(interp.quote_command(s.argv) for s in steps)
            self.report(
                {"ERROR"},
                "Online access is disabled (Preferences > System > Network > Allow Online Access); nothing was "
                f"downloaded. Allow it and try again, or run: {commands}",
            )
            return {"CANCELLED"}
        target = user_path("venv", create=True)
        self._steps = interp.setup_steps(sys.executable, target, self.build, self.torch_index_url)
        self._log = user_path("logs", create=True) / "setup_environment.log"
        self._log.write_text(f"HandCap environment setup into {target}\n", encoding="utf-8")
        self._index = 0
        if bpy.app.background or context.window is None:
            while self._index < len(self._steps):
                if not self._start_step():
                    return {"CANCELLED"}
                while self._proc.poll() is None:
                    time.sleep(0.2)
                if not self._step_done():
                    return {"CANCELLED"}
            return self._success()
        if not self._start_step():
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.5, window=context.window)
        wm.progress_begin(0, len(self._steps))
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start_step(self) -> bool:
        step = self._steps[self._index]
        STATE["setup"] = f"Setting up ({self._index + 1}/{len(self._steps)}): {step.label}..."
        self._proc = BackgroundProcess(step.argv, env=interp.clean_env(), log_path=self._log)
        try:
            self._proc.start()
        except WorkerError as exc:
            return self._fail(str(exc))
        return True

    def _step_done(self) -> bool:
        code = self._proc.poll()
        self._proc.close()
        if code != 0:
            tail = self._proc.stderr_tail[-1] if self._proc.stderr_tail else "no error output"
            return self._fail(f"'{self._steps[self._index].label}' failed (exit code {code}): {tail}")
        self._index += 1
        return True

    def _fail(self, message: str) -> bool:
        STATE["setup"] = ""
        self.report({"ERROR"}, f"Environment setup failed: {message} (log: {self._log})")
        return False

    def _success(self):
        STATE["setup"] = ""
        self.report({"INFO"}, f"Inference environment ready in {venv_dir()} (log: {self._log})")
        return {"FINISHED"}

    def modal(self, context, event):
        wm = context.window_manager
        if event.type == "ESC" and event.value == "PRESS":
            self._proc.terminate()
            self._end(context)
            STATE["setup"] = ""
            self.report({"WARNING"}, f"Setup cancelled; run it again to finish (log: {self._log})")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._proc.read()  # lines go to the log; the queue must not grow unbounded
        if self._proc.poll() is None:
            self._status(context, STATE["setup"] + " (Esc cancels)")
            return {"RUNNING_MODAL"}
        if not self._step_done() or (self._index < len(self._steps) and not self._start_step()):
            self._end(context)
            return {"CANCELLED"}
        wm.progress_update(self._index)
        if self._index < len(self._steps):
            return {"RUNNING_MODAL"}
        self._end(context)
        return self._success()

    def _status(self, context, text):
        if getattr(context, "workspace", None) is not None:
            context.workspace.status_text_set(text)

    def _end(self, context):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        self._status(context, None)

    def draw(self, context):
        layout = self.layout
        layout.label(text=f"Into: {venv_dir()}")
        layout.prop(self, "build", expand=True)
        layout.prop(self, "torch_index_url")


CLASSES = (HANDCAP_OT_check_environment, HANDCAP_OT_setup_environment)
