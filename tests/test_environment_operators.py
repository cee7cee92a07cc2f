"""The inference environment from Blender: the import shim that lets the worker import the installed extension
under any folder name, the choice of interpreter, the environment check and its fix, and the private
environment's set-up (never pip into Blender's own site-packages).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.blender


def test_import_shim_imports_package_from_a_folder_not_named_handcap(hc, tmp_path):
    worker = hc.mod("operators.worker")
    interp = hc.mod("operators.interpreter")
    # The installed extension lives in .../user_default/handcap; simulate another folder name too.
    other = tmp_path / "HandCap-main"
    other.symlink_to(Path(worker.PACKAGE_DIR), target_is_directory=True)
    for package_dir in (worker.PACKAGE_DIR, other):
        root = worker.import_shim(package_dir)
        proc = subprocess.run(
            [sys.executable, "-c", "import handcap.core.capture as c; print(c.__file__)"],
            env=interp.clean_env(str(root)),
            capture_output=True,
            text=True,
            cwd=str(tmp_path),
        )
        assert proc.returncode == 0, proc.stderr
        assert Path(proc.stdout.strip()).resolve() == (Path(package_dir) / "core" / "capture.py").resolve()


def test_interpreter_choice_order_and_missing_interpreter(hc, tmp_path):
    interp = hc.mod("operators.interpreter")
    venv = tmp_path / "venv"
    with pytest.raises(interp.InterpreterError, match="does not exist: /nonexistent/python"):
        interp.choose_interpreter("/nonexistent/python", sys.executable, venv, True)
    assert interp.choose_interpreter(sys.executable, "/blender/python", venv, True).origin == "preferences"
    assert interp.choose_interpreter("", sys.executable, venv, True).origin == "blender"
    with pytest.raises(interp.InterpreterError, match="Set Up Inference Environment"):
        interp.choose_interpreter("", sys.executable, venv, False)
    py = interp.venv_python(venv)
    py.parent.mkdir(parents=True)
    py.write_text("")
    chosen = interp.choose_interpreter("", sys.executable, venv, False)
    assert (chosen.origin, chosen.path) == ("venv", py)


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory) -> Path:
    """A real Python without any of the inference packages."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


def test_environment_check_names_what_is_missing_and_the_fix(hc, bare_venv):
    interp = hc.mod("operators.interpreter")
    py = interp.venv_python(bare_venv)
    report = interp.check_environment(str(py), sys.executable, bare_venv.parent / "unused", False)
    assert not report.ok
    for req in ("torch==2.13.0", "opencv-python-headless", "scipy", "tqdm"):
        assert req in report.problem and req in report.fix
    assert report.fix.startswith(f"{py} -m pip install")
    # The same through the operator, with the preference pointing at that Python.
    bpy = hc.bpy
    hc.prefs.python_path = str(py)
    try:
        with pytest.raises(RuntimeError, match=r"lacks torch==2\.13\.0.*Fix: .* -m pip install"):
            bpy.ops.handcap.check_environment()
    finally:
        hc.prefs.python_path = ""


def test_environment_check_passes_here_and_never_suggests_blenders_site_packages(hc, tmp_path):
    interp = hc.mod("operators.interpreter")
    ok = interp.check_environment("", sys.executable, tmp_path / "venv", True)
    assert ok.ok and ok.interpreter.origin == "blender" and ok.probe.modules["torch"].startswith("2.13.0")
    assert hc.bpy.ops.handcap.check_environment() == {"FINISHED"}
    # Blender's Python lacking the packages: the fix is the private environment, never pip into Blender.
    missing = interp.check_environment("", sys.executable, tmp_path / "venv", False)
    assert not missing.ok and "Set Up Inference Environment" in missing.fix
    assert f"{sys.executable} -m venv {tmp_path / 'venv'}" in missing.fix


def test_setup_environment_refuses_without_online_access(hc):
    bpy = hc.bpy
    assert not bpy.app.online_access, "this test expects Blender's default: online access off"
    venv = Path(hc.mod("operators.settings").venv_dir())
    existed = venv.exists()
    with pytest.raises(RuntimeError, match=r"Online access is disabled.*-m venv .*torch==2\.13\.0"):
        bpy.ops.handcap.setup_environment(build="cpu")
    assert venv.exists() == existed


def test_setup_steps_install_cpu_torch_into_the_private_environment_only(hc, tmp_path):
    interp = hc.mod("operators.interpreter")
    steps = interp.setup_steps("/blender/python", tmp_path / "venv", "cpu")
    assert steps[0].argv == ["/blender/python", "-m", "venv", str(tmp_path / "venv")]
    py = str(interp.venv_python(tmp_path / "venv"))
    assert all(s.argv[0] == py for s in steps[1:]), "pip must run in the private environment"
    torch_step = next(s for s in steps if "torch==2.13.0" in s.argv)
    assert torch_step.argv[-2:] == ["--index-url", interp.TORCH_CPU_INDEX]
    cuda = interp.setup_steps("/blender/python", tmp_path / "venv", "cuda")
    assert "--index-url" not in next(s for s in cuda if "torch==2.13.0" in s.argv).argv
    with pytest.raises(ValueError, match="build must be"):
        interp.setup_steps("/blender/python", tmp_path / "venv", "rocm")
