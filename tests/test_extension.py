"""The extension as Blender sees it: manifest, zip, install, registration, preferences."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile

import pytest

from .conftest import EXT_MODULE, REPO, blender_ext_tool


def test_manifest_passes_blenders_own_validation():
    proc = subprocess.run(
        [sys.executable, str(blender_ext_tool()), "validate", str(REPO)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert manifest["id"] == "handcap"
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["blender_version_min"] == "4.2.23"  # the oldest release tools/release_matrix.py tests
    assert manifest["permissions"]["files"]


def test_zip_leaves_out_development_files_and_validates(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    for excluded in ("tests/", "tools/", "benchmarks/", ".venv/", ".cache/", "docs/", ".git/"):
        assert not any(n.startswith(excluded) for n in names), excluded
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # The archive itself must pass the same validation Blender applies on install.
    proc = subprocess.run(
        [sys.executable, str(blender_ext_tool()), "validate", str(extension_zip)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _registered_classes(hc):
    classes = []
    for module_name in ("preferences", "operators", "panels"):
        classes.extend(hc.mod(module_name).CLASSES)
    return classes


def test_every_class_registers_and_unregisters_twice(hc):
    import addon_utils

    bpy = hc.bpy
    classes = _registered_classes(hc)
    assert classes, "no classes registered"
    for _ in range(2):
        addon_utils.disable(EXT_MODULE, default_set=True)
        assert EXT_MODULE not in bpy.context.preferences.addons
        for cls in classes:
            assert not getattr(cls, "is_registered", False), f"{cls.__name__} still registered after disable"
        addon_utils.enable(EXT_MODULE, default_set=True)
        assert EXT_MODULE in bpy.context.preferences.addons
        classes = _registered_classes(hc)  # enabling re-imports nothing, but stay honest
        for cls in classes:
            assert cls.is_registered, f"{cls.__name__} not registered after enable"


def test_operator_ids_follow_the_naming_rule(hc):
    for cls in hc.mod("operators").CLASSES:
        prefix, _, rest = cls.bl_idname.partition(".")
        assert prefix == "handcap" and "_" in rest, cls.bl_idname


def test_preferences_are_reachable_under_the_package_name(hc):
    prefs = hc.prefs
    assert type(prefs).bl_idname == EXT_MODULE
    assert prefs.device in {"auto", "cpu", "cuda"}
    assert prefs.hand_model == "builtin"
    prefs.default_fov = 60.0
    assert hc.prefs.default_fov == pytest.approx(60.0)


def test_inference_layer_never_imports_bpy():
    code = (
        "import sys; import handcap, handcap.core.capture, handcap.cli; "
        "import pkgutil, importlib, handcap.inference as inf\n"
        "for m in pkgutil.walk_packages(inf.__path__, 'handcap.inference.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'bpy' not in sys.modules, 'bpy imported'\n"
        "print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_cli_help_lists_subcommands():
    proc = subprocess.run([sys.executable, "-m", "handcap", "--help"], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    for sub in ("capture", "evaluate", "benchmark", "convert", "report"):
        assert sub in proc.stdout
