"""Shared fixtures.

Blender tests run the REAL extension inside bpy 5.0.1: the session builds the
extension zip with Blender's own ``blender_ext.py build`` (which applies the
manifest's exclude patterns and validates it), installs it with
``bpy.ops.extensions.package_install_files`` into a throw-away user folder and
enables it, exactly as a user's Blender does. Tests then reach the installed
copy's modules through the ``hc`` fixture (``hc.mod("builders.importer")``).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXT_MODULE = "bl_ext.user_default.handcap"

# Blender reads this before bpy is imported: keep its user folders out of ~/.config.
_USER_DIR = tempfile.mkdtemp(prefix="handcap-blender-user-")
os.environ.setdefault("BLENDER_USER_RESOURCES", _USER_DIR)


def pytest_sessionfinish(session, exitstatus):
    session.config._handcap_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """bpy before 5.0 as a module can fail in its C++ exit handlers. 4.2 segfaults (SpaceType destructors
    reach for the finished Python interpreter) once Python has wrapped some of its types, as the glTF
    exporter does. 4.5 hangs: when something keeps the bpy module alive through interpreter teardown (Rigify's
    generator does), Blender's exit never stops its audio device's delayed-close thread, and the static
    destructor of the sound state then waits forever on the condition variable that thread waits on (5.0
    joins the thread first). After pytest has reported, leave with pytest's own exit status and skip them."""
    bpy = sys.modules.get("bpy")
    if bpy is not None and bpy.app.version < (5, 0, 0) and hasattr(config, "_handcap_exitstatus"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config._handcap_exitstatus)


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared real-data folder beside the repo; absent on a fresh clone)")
    return path


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


def blender_ext_tool() -> Path:
    """Blender's own extension command line (stdlib-only script shipped inside bpy)."""
    bpy_spec = importlib.util.find_spec("bpy")
    if bpy_spec is None:
        pytest.skip("bpy 5.0.1 is not installed (pip install bpy==5.0.1 on Python 3.11)")
    root = Path(bpy_spec.origin).parent
    tool = next(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"), None)
    assert tool is not None, f"blender_ext.py not found under {root}"
    return tool


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    import subprocess

    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(blender_ext_tool()), "build", "--source-dir", str(REPO), "--output-dir", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (zip_path,) = out.glob("handcap-*.zip")
    return zip_path


def installed(dotted: str):
    """A module of the installed extension (``installed("builders.compat")``), for helpers without ``hc``."""
    return importlib.import_module(f"{EXT_MODULE}.{dotted}")


class InstalledExtension:
    """Access to the installed extension's modules (``bl_ext.user_default.handcap``)."""

    def __init__(self, bpy):
        self.bpy = bpy
        self.name = EXT_MODULE
        self.package = sys.modules[EXT_MODULE]

    def mod(self, dotted: str):
        return importlib.import_module(f"{EXT_MODULE}.{dotted}")

    @property
    def prefs(self):
        return self.bpy.context.preferences.addons[EXT_MODULE].preferences


@pytest.fixture(scope="session")
def blender(extension_zip):
    """bpy with HandCap installed from its zip and enabled (once per test session)."""
    bpy = pytest.importorskip("bpy", reason="bpy 5.0.1 is not installed (pip install bpy==5.0.1 on Python 3.11)")
    if EXT_MODULE not in bpy.context.preferences.addons:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(extension_zip), repo="user_default", enable_on_install=True
        )
        assert result == {"FINISHED"}, result
    assert EXT_MODULE in bpy.context.preferences.addons, "HandCap did not enable after install"
    yield InstalledExtension(bpy)
    # bpy 4.2 / 4.5 as a module crash / hang at exit while Python classes are still registered (5.0 does not).
    import addon_utils

    addon_utils.disable(EXT_MODULE, default_set=True)


@pytest.fixture
def hc(blender):
    """The installed extension, with an empty scene for each test."""
    bpy = blender.bpy
    collect_then(bpy.ops.wm.read_homefile, use_empty=True)
    assert EXT_MODULE in bpy.context.preferences.addons
    return blender


def collect_then(op, **kwargs):
    """Run ``op`` (one that frees the open file's data: read_homefile, open_mainfile) after collecting Python's
    garbage: bpy 4.2 segfaults when a cycle holding wrappers of data freed meanwhile is collected later (seen
    inside its glTF exporter)."""
    gc.collect()
    return op(**kwargs)
