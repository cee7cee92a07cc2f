"""Which Python runs inference, what it lacks, and how to make HandCap's private one (no bpy here).

Order of choice (``choose_interpreter``): the "Inference Python" preference when set; else Blender's own
Python when every inference requirement is installed there; else the private virtual environment that
``setup_steps`` creates under the extension's user folder. HandCap never installs anything into
Blender's own site-packages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Requirements of the inference worker: import name -> pip requirement.
REQUIREMENTS = {
    "torch": "torch==2.13.0",
    "numpy": "numpy<2",
    "cv2": "opencv-python-headless",
    "scipy": "scipy",
    "tqdm": "tqdm",
}
#: pip index of PyTorch's CPU-only builds (small download; the PyPI build for Linux bundles CUDA).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class InterpreterError(RuntimeError):
    """No usable Python interpreter for the worker (the message says how to get one)."""


def venv_python(venv_dir: str | os.PathLike) -> Path:
    """The interpreter inside a virtual environment folder (``bin/python`` or ``Scripts\\python.exe``)."""
    venv_dir = Path(venv_dir)
    return venv_dir / "Scripts" / "python.exe" if os.name == "nt" else venv_dir / "bin" / "python"


def quote_command(argv: list[str]) -> str:
    """A command line the user can paste into their shell."""
    return subprocess.list2cmdline(argv) if os.name == "nt" else shlex.join(argv)


def pip_install_command(python: str | os.PathLike, requirements: list[str] | None = None) -> str:
    reqs = list(REQUIREMENTS.values()) if requirements is None else requirements
    return quote_command([str(python), "-m", "pip", "install", *reqs])


def requirements_importable_here() -> bool:
    """Every requirement is installed in THIS interpreter (Blender's, when called from Blender).

    Looks up the modules without importing them, so Blender does not load torch into its own process.
    """
    return all(importlib.util.find_spec(name) is not None for name in REQUIREMENTS)


@dataclass
class Interpreter:
    """The Python that runs the worker.

    Attributes:
        path: the interpreter executable.
        origin: "preferences" (the user's choice), "blender" (Blender's own, requirements installed there)
            or "venv" (HandCap's private environment).
    """

    path: Path
    origin: str


def choose_interpreter(
    pref_path: str, blender_python: str, venv_dir: str | os.PathLike | None, blender_has_requirements: bool
) -> Interpreter:
    """Pick the worker's interpreter (see the module docstring for the order).

    Raises:
        InterpreterError: the chosen interpreter does not exist; the message names the fix.
    """
    if pref_path.strip():
        path = Path(os.path.expanduser(pref_path.strip()))
        if not path.is_file():
            raise InterpreterError(
                f"the Inference Python set in HandCap's preferences does not exist: {path}. "
                "Clear the field to use HandCap's private environment, or point it at a python executable"
            )
        return Interpreter(path, "preferences")
    if blender_has_requirements:
        return Interpreter(Path(blender_python), "blender")
    if venv_dir is not None and venv_python(venv_dir).is_file():
        return Interpreter(venv_python(venv_dir), "venv")
    where = f" ({venv_dir})" if venv_dir is not None else ""
    raise InterpreterError(
        "no inference environment: torch is not installed in Blender's Python and HandCap's private "
        f"environment{where} does not exist yet. Click 'Set Up Inference Environment' in "
        "Preferences > Add-ons > HandCap, or set 'Inference Python' to an interpreter that has "
        + " ".join(REQUIREMENTS.values())
    )


def clean_env(pythonpath: str | None = None) -> dict[str, str]:
    """The environment for a child Python: Blender's PYTHONHOME/PYTHONPATH must not leak into another
    interpreter, user site-packages stay out, output is unbuffered so progress arrives as it happens."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONNOUSERSITE"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


_PROBE = """
import importlib, json, sys
out = {"python": sys.version.split()[0], "modules": {}, "errors": {}}
for name in %r:
    try:
        mod = importlib.import_module(name)
        out["modules"][name] = str(getattr(mod, "__version__", "?"))
    except Exception as exc:  # report every kind of import failure, not just ImportError
        out["errors"][name] = f"{type(exc).__name__}: {exc}"
if "torch" in out["modules"]:
    import torch
    out["cuda"] = bool(torch.cuda.is_available())
print("HANDCAP_PROBE " + json.dumps(out))
"""


@dataclass
class ProbeResult:
    """What an interpreter can import.

    Attributes:
        python: interpreter path probed.
        version: its Python version ("3.11.9"), "" when it did not run.
        modules: import name -> version string of every requirement that imported.
        errors: import name -> error text of every requirement that failed to import.
        cuda: torch sees a CUDA device (None when torch is missing).
        failure: why the interpreter itself could not be run, else "".
    """

    python: str
    version: str = ""
    modules: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    cuda: bool | None = None
    failure: str = ""

    @property
    def missing(self) -> list[str]:
        """pip requirements of the modules that did not import."""
        if self.failure:
            return list(REQUIREMENTS.values())
        return [req for name, req in REQUIREMENTS.items() if name not in self.modules]

    @property
    def ok(self) -> bool:
        return not self.failure and not self.missing


def probe_interpreter(python: str | os.PathLike, timeout: float = 120.0) -> ProbeResult:
    """Run ``python`` once to see which requirements import (a few seconds: it imports torch)."""
    python = str(python)
    if not Path(python).is_file():
        return ProbeResult(python, failure=f"{python} does not exist")
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE % (tuple(REQUIREMENTS),)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(python, failure=f"{python} did not answer within {timeout:.0f} s")
    except OSError as exc:
        return ProbeResult(python, failure=f"{python} cannot be run ({exc})")
    line = next((s for s in proc.stdout.splitlines() if s.startswith("HANDCAP_PROBE ")), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return ProbeResult(python, failure=f"{python} exited with code {proc.returncode}: {tail}")
    data = json.loads(line[len("HANDCAP_PROBE ") :])
    return ProbeResult(python, data["python"], data["modules"], data["errors"], data.get("cuda"))


@dataclass
class EnvironmentReport:
    """Result of checking the inference environment.

    Attributes:
        interpreter: the interpreter captures would use, or None when there is none.
        probe: what it can import (None when there is no interpreter).
        problem: one sentence on what is wrong ("" when everything is in place).
        fix: the exact command or action that fixes it ("" when nothing to fix).
    """

    interpreter: Interpreter | None
    probe: ProbeResult | None
    problem: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def lines(self) -> list[str]:
        """Human-readable lines for a report or a panel."""
        out = []
        if self.interpreter is not None:
            out.append(f"Inference Python ({self.interpreter.origin}): {self.interpreter.path}")
        if self.probe is not None and not self.probe.failure:
            mods = ", ".join(f"{k} {v}" for k, v in self.probe.modules.items())
            out.append(f"Python {self.probe.version}; found: {mods or 'none'}")
            if self.probe.cuda is not None:
                out.append("CUDA available" if self.probe.cuda else "CUDA not available (CPU inference)")
        if self.problem:
            out.append("Problem: " + self.problem)
        if self.fix:
            out.append("Fix: " + self.fix)
        return out


def check_environment(
    pref_path: str, blender_python: str, venv_dir: str | os.PathLike, blender_has_requirements: bool
) -> EnvironmentReport:
    """Find the interpreter captures would use, probe it, and say what is missing and how to fix it."""
    setup_cmd = " && ".join(
        quote_command(step.argv) for step in setup_steps(blender_python, venv_dir) if "--upgrade" not in step.argv
    )
    try:
        interp = choose_interpreter(pref_path, blender_python, venv_dir, blender_has_requirements)
    except InterpreterError as exc:
        if pref_path.strip():
            fix = "clear 'Inference Python' in HandCap's preferences or point it at an existing python executable"
        else:
            fix = f"click 'Set Up Inference Environment' (or run: {setup_cmd})"
        return EnvironmentReport(None, None, str(exc), fix)
    probe = probe_interpreter(interp.path)
    if probe.failure:
        return EnvironmentReport(interp, probe, probe.failure, f"choose another interpreter, or run: {setup_cmd}")
    if probe.missing:
        problem = f"{interp.path} lacks " + ", ".join(probe.missing)
        broken = [f"{k} ({v})" for k, v in probe.errors.items()]
        if broken:
            problem += "; import errors: " + "; ".join(broken)
        # Fixing Blender's own Python would mean installing into its site-packages: never suggest that.
        if interp.origin == "blender":
            fix = f"click 'Set Up Inference Environment' (or run: {setup_cmd})"
        else:
            fix = pip_install_command(interp.path, probe.missing)
        return EnvironmentReport(interp, probe, problem, fix)
    return EnvironmentReport(interp, probe)


@dataclass
class SetupStep:
    """One command of the private environment's setup.

    Attributes:
        label: what the step does, for the status bar.
        argv: the command.
    """

    label: str
    argv: list[str]


def setup_steps(
    base_python: str | os.PathLike, venv_dir: str | os.PathLike, build: str = "cpu", torch_index_url: str = ""
) -> list[SetupStep]:
    """Commands that create (or complete) the private environment and install the requirements into it.

    Args:
        base_python: interpreter that creates the environment (Blender's own Python).
        venv_dir: environment folder.
        build: "cpu" (PyTorch's CPU-only build) or "cuda" (PyPI's build, which bundles CUDA on Linux).
        torch_index_url: pip index for torch overriding the above (e.g. a CUDA index on Windows).
    """
    if build not in ("cpu", "cuda"):
        raise ValueError(f"build must be 'cpu' or 'cuda', got {build!r}")
    py = str(venv_python(venv_dir))
    steps = []
    if not Path(py).is_file():
        steps.append(SetupStep("create the environment", [str(base_python), "-m", "venv", str(venv_dir)]))
    steps.append(SetupStep("update pip", [py, "-m", "pip", "install", "--upgrade", "pip"]))
    torch_cmd = [py, "-m", "pip", "install", REQUIREMENTS["torch"]]
    index = torch_index_url.strip() or (TORCH_CPU_INDEX if build == "cpu" and sys.platform != "darwin" else "")
    if index:
        torch_cmd += ["--index-url", index]
    steps.append(SetupStep(f"install torch ({build})", torch_cmd))
    others = [req for name, req in REQUIREMENTS.items() if name != "torch"]
    steps.append(SetupStep("install numpy, OpenCV, SciPy, tqdm", [py, "-m", "pip", "install", *others]))
    return steps
