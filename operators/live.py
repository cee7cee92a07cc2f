"""HandCap > Live: a camera's hands drive the rig in the viewport; Record writes what was seen.

``handcap.live_preview`` starts ``python -m handcap.inference.live SOURCE`` in a worker process (the
inference never runs in Blender) and follows it from a timer: every tick reads the worker's JSON lines
(``core.live_record.LiveFrame``), poses each hand's armature with the newest frame and, while the
*Record* toggle is on, keeps the frames. A hand's armature is built (with the importer, from a one-frame
capture) once its shape is calibrated; its action is then removed so the live pose is not overridden.
Turning Record off, stopping (Esc or the Stop button) or the stream's end writes the recording as a
capture file (same format and timing as an offline capture: the camera's frame indices and rate).

Background mode (``blender -b``) has no event loop: tests drive :meth:`LiveRun.tick` directly.
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..builders import convention, rig
from ..builders.importer import ImportOptions, import_capture
from ..core import handmodel, naming
from ..core.capture import write_capture
from ..core.capture_checks import key_side
from ..core.live_record import LiveFrame, record_capture
from ..core.request import MAX_HANDS
from .interpreter import clean_env
from .worker import BackgroundProcess, WorkerError, import_shim

WM_RUNNING = "handcap_live_running"
WM_RECORD = "handcap_live_record"
WM_LAST_FILE = "handcap_live_last_file"


class LiveRun:
    """One live session: the worker, the rigs it drives and the recording.

    Attributes:
        frames_seen / frames_applied: worker messages read and poses applied to the rigs.
        recording: frames kept while recording; written by :meth:`write_recording`.
        latency_ms: per applied frame, worker frame read -> pose applied here (same machine clock).
        apply_ms: per applied frame, the time posing the rigs took here.
    """

    def __init__(self, argv: list[str], out_dir: Path, model: str = "builtin"):
        self.process = BackgroundProcess(argv, env=clean_env(str(import_shim())))
        self.out_dir = Path(out_dir)
        self.model = model
        self.rigs: dict[str, str] = {}
        self.rest_frames: dict[str, np.ndarray] = {}
        self.recording: list[LiveFrame] = []
        self.frames_seen = 0
        self.frames_applied = 0
        self.latency_ms: list[float] = []
        self.apply_ms: list[float] = []
        self.error = ""
        self.source = argv[argv.index("handcap.inference.live") + 1] if "handcap.inference.live" in argv else "live"

    def start(self) -> None:
        self.process.start()

    def tick(self, context, record: bool) -> bool:
        """Read the worker's new frames, apply the newest; returns False once the worker has ended."""
        latest = None
        for stream, text in self.process.read():
            if stream != "stdout":
                continue
            frame = LiveFrame.from_json(text)
            if frame is None:
                continue
            self.frames_seen += 1
            latest = frame
            if record:
                self.recording.append(frame)
        if latest is not None:
            self.apply(context, latest)
        code = self.process.poll()
        if code is not None and code != 0 and not self.error:
            tail = list(self.process.stderr_tail)
            self.error = next(
                (s.split(": error: ", 1)[1] for s in reversed(tail) if ": error: " in s),
                tail[-1] if tail else f"the live worker failed (exit code {code})",
            )
        return code is None

    def apply(self, context, frame: LiveFrame) -> None:
        t0 = time.monotonic()
        for key, hand in frame.hands.items():  # track keys: "right", "left", "right_2", ...
            if key not in self.rigs:
                if not hand.calibrated:
                    continue  # wait for the shape: the skeleton is built once
                self._build(context, key, frame)
            obj = bpy.data.objects.get(self.rigs[key])
            if obj is None:
                continue
            quats, loc = convention.pose_to_bone_basis(hand.theta[None], hand.transl[None], self.rest_frames[key])
            names = naming.joint_bones(key_side(key))
            for j, name in enumerate(names):
                pb = obj.pose.bones[name]
                pb.rotation_mode = "QUATERNION"
                pb.rotation_quaternion = quats[0, j]
            obj.pose.bones[names[0]].location = loc[0]
        self.frames_applied += 1
        now = time.monotonic()
        self.apply_ms.append(1000.0 * (now - t0))
        self.latency_ms.append(1000.0 * (now - frame.t_read))

    def _build(self, context, key: str, frame: LiveFrame) -> None:
        cap = record_capture(
            [
                LiveFrame(
                    frame.frame,
                    frame.t_read,
                    frame.t_done,
                    {key: frame.hands[key]},
                    frame.fps,
                    frame.image_size,
                    frame.intrinsics,
                )
            ],
            f"live_{self.source}",
            _rest_joints,
        )
        side = key_side(key)
        result = import_capture(context, cap, ImportOptions(sides=(side,)))
        obj = bpy.data.objects[result.armatures[key]]
        obj.animation_data_clear()  # the live pose must not be overridden by the one-frame action
        bones = obj.data.bones
        rest = np.array([np.array(bones[n].matrix_local) for n in naming.joint_bones(side)])
        self.rest_frames[key] = rig.rest_frames(rest)
        self.rigs[key] = obj.name

    def write_recording(self) -> Path | None:
        """The recorded frames as a capture file (None when nothing was recorded); clears the recording."""
        if not self.recording:
            return None
        cap = record_capture(self.recording, f"live_{self.source}", _rest_joints)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / time.strftime("live_%Y%m%d_%H%M%S.npz")
        write_capture(path, cap)
        self.recording = []
        return path

    def stop(self) -> None:
        self.process.terminate()
        self.process.close()


def _rest_joints(side: str, beta: np.ndarray) -> np.ndarray:
    return handmodel.rest_joints(handmodel.load_builtin(side), beta)


def live_argv(python: str, source: str, virtual: bool, hands: int) -> list[str]:
    argv = [python, "-m", "handcap.inference.live", source, "--hands", str(hands)]
    return argv + (["--virtual"] if virtual else [])


class HANDCAP_OT_live_preview(bpy.types.Operator):
    """Drive the hand rigs live from a camera (or a video played in real time); Esc stops"""

    bl_idname = "handcap.live_preview"
    bl_label = "Live Preview"

    source_kind: EnumProperty(
        name="Source",
        items=(
            ("CAMERA", "Camera", "A camera by device index"),
            ("VIDEO", "Video (Real Time)", "A video file played at its own frame rate, as a camera would deliver it"),
        ),
        default="CAMERA",
    )
    device: IntProperty(name="Camera Index", default=0, min=0)
    filepath: StringProperty(name="Video", subtype="FILE_PATH", default="")
    hands: IntProperty(
        name="Hands", description="Most hands to follow (more than 2: several people)", default=2, min=1, max=MAX_HANDS
    )
    _run = None  # the LiveRun while modal (plain attribute, not a property)
    _timer = None

    def invoke(self, context, event):
        from .capture import resolve_interpreter, user_path

        if getattr(context.window_manager, WM_RUNNING, False):
            self.report({"ERROR"}, "Live preview is already running")
            return {"CANCELLED"}
        source = str(self.device) if self.source_kind == "CAMERA" else bpy.path.abspath(self.filepath)
        if self.source_kind == "VIDEO" and not Path(source).is_file():
            self.report({"ERROR"}, f"{source or 'no video'}: no such file")
            return {"CANCELLED"}
        try:
            python = str(resolve_interpreter(context).path)
            self._run = LiveRun(live_argv(python, source, self.source_kind == "VIDEO", self.hands), user_path("live"))
            self._run.start()
        except (WorkerError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        setattr(context.window_manager, WM_RUNNING, True)
        self._timer = context.window_manager.event_timer_add(1 / 60, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        wm = context.window_manager
        if event.type == "ESC" or not getattr(wm, WM_RUNNING):
            return self._finish(context, "Live preview stopped")
        if event.type == "TIMER":
            record = getattr(wm, WM_RECORD)
            alive = self._run.tick(context, record)
            if not record and self._run.recording:
                self._save(context)
            if not alive:
                return self._finish(context, self._run.error or "Live stream ended", error=bool(self._run.error))
        return {"PASS_THROUGH"}

    def _save(self, context) -> None:
        path = self._run.write_recording()
        if path is not None:
            setattr(context.window_manager, WM_LAST_FILE, str(path))
            self.report({"INFO"}, f"Recorded live capture: {path}")

    def _finish(self, context, message: str, error: bool = False):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        self._run.stop()
        self._save(context)
        setattr(wm, WM_RUNNING, False)
        setattr(wm, WM_RECORD, False)
        self.report({"ERROR" if error else "INFO"}, message)
        return {"CANCELLED"} if error else {"FINISHED"}


class HANDCAP_OT_stop_live(bpy.types.Operator):
    """Stop the live preview (what was recorded is written)"""

    bl_idname = "handcap.stop_live"
    bl_label = "Stop Live Preview"

    def execute(self, context):
        setattr(context.window_manager, WM_RUNNING, False)
        return {"FINISHED"}


def register_props() -> None:
    wm = bpy.types.WindowManager
    setattr(wm, WM_RUNNING, BoolProperty(name="Live Running", default=False, options={"SKIP_SAVE"}))
    setattr(
        wm,
        WM_RECORD,
        BoolProperty(
            name="Record",
            description="Keep what the live preview sees; turning it off writes a capture file",
            default=False,
        ),
    )
    setattr(wm, WM_LAST_FILE, StringProperty(name="Last Recording", subtype="FILE_PATH", default=""))


def unregister_props() -> None:
    for name in (WM_LAST_FILE, WM_RECORD, WM_RUNNING):
        if hasattr(bpy.types.WindowManager, name):
            delattr(bpy.types.WindowManager, name)


CLASSES = (HANDCAP_OT_live_preview, HANDCAP_OT_stop_live)
