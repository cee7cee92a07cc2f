"""The inference worker: ``python -m handcap capture ...`` in a child process (no bpy here).

Blender never runs inference in its own process: torch may be missing there, a crash must not take the
user's session down, and the UI must stay responsive. This module starts the worker with a chosen
interpreter, reads its output on background threads, turns it into progress (machine-readable JSON
lines on stdout when the CLI offers ``--progress-json``, else tqdm's bars on stderr), and cancels it.
No network ports: everything goes through pipes and files.

The worker imports the package as ``handcap`` even when the extension folder has another name
(Blender installs it as ``.../extensions/user_default/handcap`` today, but a developer's checkout or a
future repository layout may differ): a private folder holding a ``handcap`` link to the package is put
first on the worker's ``PYTHONPATH``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..core.request import CaptureRequest
from .interpreter import Interpreter, clean_env

PACKAGE_DIR = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """The worker could not start or failed; the message is meant for the user."""


# --------------------------------------------------------------------------- process plumbing


def import_shim(package_dir: str | os.PathLike = PACKAGE_DIR) -> Path:
    """A folder whose ``handcap`` entry is ``package_dir``; put it first on PYTHONPATH.

    A symlink where the system allows one, a directory junction on Windows without symlink rights,
    else a copy of the package's Python sources and assets.
    """
    package_dir = Path(package_dir).resolve()
    digest = hashlib.sha1(str(package_dir).encode("utf-8")).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"handcap-shim-{digest}"
    link = root / "handcap"
    try:
        if link.resolve() == package_dir and (link / "__init__.py").is_file():
            return root
    except OSError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"handcap.{os.getpid()}.tmp"
    _remove_path(tmp)
    try:
        os.symlink(package_dir, tmp, target_is_directory=True)
    except OSError:
        if os.name == "nt":
            import _winapi  # Windows only

            _winapi.CreateJunction(str(package_dir), str(tmp))
        else:
            shutil.copytree(package_dir, tmp, ignore=shutil.ignore_patterns(".*", "__pycache__", "tests", "tools"))
    _remove_path(link)
    os.replace(tmp, link)
    return root


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        try:
            os.rmdir(path)  # an empty dir or a Windows junction (removes the link, not the target)
        except OSError:
            shutil.rmtree(path)


class BackgroundProcess:
    """A child process whose output is collected by reader threads; nothing here ever blocks.

    Output is split on both ``\\n`` and ``\\r`` (tqdm redraws its bar with ``\\r``). Every piece lands
    in a queue drained by :meth:`read`, and, when ``log_path`` is given, in that log file.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None, log_path=None):
        self.argv = [str(a) for a in argv]
        self.env = env
        self.cwd = cwd
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._log = None
        self._log_lock = threading.Lock()

    def start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._log.write("$ " + subprocess.list2cmdline(self.argv) + "\n")
            self._log.flush()
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                creationflags=flags,
                start_new_session=os.name != "nt",  # Ctrl+C in Blender's terminal must not hit the worker
            )
        except OSError as exc:
            self.close()
            raise WorkerError(f"cannot start {self.argv[0]}: {exc}") from None
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(target=self._pump, args=(name, stream), daemon=True, name=f"handcap-{name}")
            t.start()
            self._threads.append(t)

    def _pump(self, name: str, stream) -> None:
        pending = b""
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            pending += chunk
            parts = re.split(rb"[\r\n]", pending)
            pending = parts.pop()
            for part in parts:
                self._emit(name, part)
        if pending:
            self._emit(name, pending)
        stream.close()

    def _emit(self, name: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip()
        if not text:
            return
        if name == "stderr":
            self.stderr_tail.append(text)
        with self._log_lock:
            if self._log is not None and not self._log.closed:
                self._log.write(("" if name == "stdout" else "! ") + text + "\n")
                self._log.flush()
        self._queue.put((name, text))

    def read(self) -> list[tuple[str, str]]:
        """Drain the (stream, text) pieces that arrived since the last call."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def poll(self) -> int | None:
        """Exit code once the process has ended AND its output has been read completely, else None."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        for t in self._threads:
            t.join(timeout=2.0)
        return code

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def terminate(self, grace: float = 3.0) -> None:
        """Stop the process: a polite terminate, then kill after ``grace`` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)
        self.close()

    def close(self) -> None:
        for t in self._threads:
            t.join(timeout=2.0)
        with self._log_lock:
            if self._log is not None:
                self._log.close()
                self._log = None


# --------------------------------------------------------------------------- progress

_TQDM = re.compile(r"(?:(?P<desc>[^|]*?):\s*)?\s*\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\b")


#: The capture worker's stages in order: name -> (unit, share of the whole run's time). Landmarks dominate
#: (tens of milliseconds per frame); the fit takes a few steps at the end.
STAGES = {"landmarks": ("frames", 0.9), "fit": ("steps", 0.1)}


@dataclass
class Progress:
    """Progress of the current stage of a worker.

    Attributes:
        stage: stage name as the worker reports it ("landmarks", "fit", ...), "" before the first report.
        done / total: units finished in this stage and its size (0 when unknown).
        elapsed_s: seconds since the worker started.
        eta_s: estimated seconds left in this stage (None until the rate is known).
    """

    stage: str = ""
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        """Share of this stage that is done, 0..1."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def overall(self) -> float:
        """Share of the whole run that is done, 0..1 (stage weights from ``STAGES``)."""
        if self.stage not in STAGES:
            return self.fraction
        before = 0.0
        for name, (_, weight) in STAGES.items():
            if name == self.stage:
                return min(1.0, before + weight * self.fraction)
            before += weight
        return self.fraction

    def describe(self) -> str:
        """One line for a status bar: ``HandCap landmarks: 40/90 frames, 12 s left``."""
        text = f"HandCap {self.stage or 'starting'}"
        if self.total:
            unit = STAGES.get(self.stage, ("",))[0]
            text += f": {self.done}/{self.total} {unit}".rstrip()
        if self.eta_s is not None:
            text += f", {format_seconds(self.eta_s)} left"
        return text


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def parse_progress(stream: str, text: str) -> tuple[str, int, int] | None:
    """(stage, done, total) from one output line, or None.

    stdout: a JSON object with "done" and "total" (and optionally "stage"), the ``--progress-json`` form.
    stderr: a tqdm bar such as ``landmarks:  45%|####5     | 45/100 [00:10<00:12,  4.5it/s]``.
    """
    if stream == "stdout" and text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(data, dict) and isinstance(data.get("done"), int) and isinstance(data.get("total"), int):
            return str(data.get("stage", "")), data["done"], data["total"]
        return None
    if stream == "stderr":
        m = _TQDM.search(text)
        if m:
            return (m.group("desc") or "").strip(), int(m.group("n")), int(m.group("total"))
    return None


class ProgressTracker:
    """Turns (stage, done, total) reports into :class:`Progress` with a per-stage ETA."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._t0 = clock()
        self._stage_t0 = self._t0
        self._stage_done0 = 0
        self.progress = Progress()

    def update(self, stage: str, done: int, total: int) -> Progress:
        now = self._clock()
        p = self.progress
        if stage != p.stage or total != p.total or done < p.done:
            self._stage_t0, self._stage_done0 = now, done
        rate_done = done - self._stage_done0
        eta = None
        if rate_done > 0 and total > 0:
            eta = (now - self._stage_t0) / rate_done * max(0, total - done)
        self.progress = Progress(stage, done, total, now - self._t0, eta)
        return self.progress

    def tick(self) -> Progress:
        self.progress.elapsed_s = self._clock() - self._t0
        return self.progress


# --------------------------------------------------------------------------- capture job


def cli_capabilities(interpreter: Interpreter, package_dir: str | os.PathLike = PACKAGE_DIR) -> dict:
    """What the worker's ``python -m handcap`` offers, as it says itself (``--capabilities``: its version, the
    capture options' flags, whether it writes ``--progress-json``). Raises WorkerError when it cannot say.

    Asked once per interpreter and package (a few tenths of a second: the CLI imports no torch for this)."""
    pairs = _capabilities(str(interpreter.path), str(Path(package_dir).resolve()))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in pairs}


@functools.lru_cache(maxsize=8)
def _capabilities(python: str, package_dir: str) -> tuple:
    argv = [python, "-m", "handcap", "--capabilities"]
    try:
        proc = subprocess.run(
            argv, env=clean_env(str(import_shim(package_dir))), capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkerError(f"cannot ask {python} what HandCap offers: {exc}") from None
    line = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WorkerError(f"{python} -m handcap --capabilities failed (exit code {proc.returncode}): {tail}") from None
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in data.items()))


def request_argv(request, output, interpreter: Interpreter) -> list[str]:
    """The worker's command line for ``request`` (``.argv(output, progress_json)``: a ``core.request``
    CaptureRequest or another worker command), with JSON progress when the CLI offers it. A capture option
    this CLI lacks is a WorkerError (an older HandCap in the chosen environment), not a silent drop."""
    caps = cli_capabilities(interpreter)
    argv = request.argv(output, progress_json=bool(caps.get("progress_json")))
    if isinstance(request, CaptureRequest):
        offered = set(caps.get("capture_options", ()))
        missing = [a for a in request.to_argv() if a.startswith("--") and a not in offered]
        if missing:
            raise WorkerError(
                f"the inference environment's HandCap {caps.get('version', '?')} has no {', '.join(missing)}: "
                "update it (Check / Set Up in HandCap's preferences)"
            )
    return argv


class CaptureJob:
    """One capture run in the background: start, :meth:`poll` from a timer, :meth:`cancel` any time.

    The capture file is written into a private temporary folder; :attr:`output` exists only after a
    successful run, and :meth:`cleanup` removes the folder (call it once the file has been read).
    """

    RUNNING, FINISHED, FAILED, CANCELLED = "RUNNING", "FINISHED", "FAILED", "CANCELLED"

    def __init__(self, request, interpreter: Interpreter, log_path=None):
        self.request = request
        self.interpreter = interpreter
        self.workdir = Path(tempfile.mkdtemp(prefix="handcap-capture-"))
        self.output = self.workdir / "capture.npz"
        self.tracker = ProgressTracker()
        self.state = self.RUNNING
        self.error = ""
        self.messages: list[str] = []  # stdout lines that are not progress (the CLI's summary)
        try:
            argv = [str(interpreter.path), "-m", "handcap", *request_argv(request, self.output, interpreter)]
        except WorkerError:
            self.cleanup()
            raise
        self.process = BackgroundProcess(
            argv, env=clean_env(str(import_shim())), cwd=str(self.workdir), log_path=log_path
        )

    def start(self) -> CaptureJob:
        try:
            self.process.start()
        except WorkerError:
            self.cleanup()
            raise
        return self

    @property
    def progress(self) -> Progress:
        return self.tracker.progress

    def poll(self) -> str:
        """Read new output, update progress; returns the state (RUNNING until the worker has ended)."""
        if self.state != self.RUNNING:
            return self.state
        for stream, text in self.process.read():
            parsed = parse_progress(stream, text)
            if parsed is not None:
                self.tracker.update(*parsed)
            elif stream == "stdout":
                self.messages.append(text)
        self.tracker.tick()
        code = self.process.poll()
        if code is None:
            return self.state
        for stream, text in self.process.read():
            if stream == "stdout" and parse_progress(stream, text) is None:
                self.messages.append(text)
        self.process.close()
        if code == 0 and self.output.is_file():
            self.state = self.FINISHED
        else:
            self.state = self.FAILED
            self.error = self._failure_message(code)
        return self.state

    def _failure_message(self, code: int) -> str:
        tail = [s for s in self.process.stderr_tail if parse_progress("stderr", s) is None]
        # The CLI prints user-facing errors as "handcap capture: error: ..." (exit code 2).
        for line in reversed(tail):
            if ": error: " in line:
                return line.split(": error: ", 1)[1]
        if code == 0:
            return "the worker ended without writing a capture file"
        if code < 0 or code in (137, 139, 134):
            how = f"was killed (signal {-code})" if code < 0 else f"crashed (exit code {code})"
            last = f": {tail[-1]}" if tail else ""
            return f"the inference worker {how}{last}"
        last = tail[-1] if tail else "no error output"
        return f"the inference worker failed (exit code {code}): {last}"

    def cancel(self) -> None:
        """Stop the worker and remove its temporary files (idempotent)."""
        if self.state == self.RUNNING:
            self.process.terminate()
            self.state = self.CANCELLED
        self.cleanup()

    def wait(self, poll_s: float = 0.1, timeout: float | None = None) -> str:
        """Block until the worker ends (command-line and background-mode use)."""
        t0 = time.monotonic()
        while self.poll() == self.RUNNING:
            if timeout is not None and time.monotonic() - t0 > timeout:
                self.cancel()
                raise WorkerError(f"the inference worker did not finish within {timeout:.0f} s")
            time.sleep(poll_s)
        return self.state

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def blender_interpreter() -> str:
    """Blender's own Python executable (``sys.executable`` is it since Blender 2.91)."""
    return sys.executable
