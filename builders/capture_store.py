"""Capture files that outlive the capture: where a hand's capture and footage are kept, and found again.

*Capture Hands* runs in a worker whose output folder is temporary, and *Measure Overlay*, *Render Overlay*
and re-imports need the capture afterwards. So the capture is copied to a lasting place before it is
imported:

* the .blend is saved: ``//handcap/<name>.npz`` beside it (recorded relative, Blender's ``//``);
* not saved yet: the extension's user folder (``captures/``), recorded absolute; the first save of the
  .blend moves it to ``//handcap/`` (``on_save_pre`` copies, ``on_save_post`` removes the old copy), and a
  *Save As* into another folder takes the captures along.

Each hand armature records both the relative and the absolute path of its capture, and the camera-space
Empty and the armatures record the footage both absolute and relative to the .blend; ``resolve_capture``
and ``footage_path`` try each, so a project folder that moves with its .blend still finds everything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import bpy

from ..core import rig_props as rp

STORE_DIR = "handcap"  # beside the .blend
# the property names (meanings in core.rig_props)
CAPTURE_PATH, CAPTURE_ABS, MOVED_FROM = rp.CAPTURE_PATH.key, rp.CAPTURE_ABS.key, rp.MOVED_FROM.key
SOURCE, SOURCE_REL = rp.SOURCE.key, rp.SOURCE_REL.key
# Written into the user-folder store: only captures in a folder marked so are ever deleted (after a move),
# never a capture the user imported from a folder of their own.
STORE_MARKER = ".handcap-capture-store"


class CaptureStoreError(OSError):
    """A capture could not be kept or found again (the message names the file and the reason)."""


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy to a temporary name beside ``dest``, then rename: ``dest`` is never half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes())
    except OSError:
        return False


def _free_name(folder: Path, stem: str, src: Path) -> Path:
    """``folder/stem.npz``, or ``stem_2.npz`` ... when another capture already has the name."""
    n = 1
    while True:
        dest = folder / (f"{stem}.npz" if n == 1 else f"{stem}_{n}.npz")
        if not dest.exists() or _same_file(src, dest):
            return dest
        n += 1


def _blend_relative(path: Path, blend_dir: Path) -> str:
    """Blender's ``//`` form of ``path`` relative to ``blend_dir`` ("" when there is none, e.g. another drive)."""
    try:
        return "//" + Path(os.path.relpath(path, blend_dir)).as_posix()
    except ValueError:
        return ""


def keep_capture(src: str | Path, stem: str, user_store: Path, folder: Path | None = None) -> tuple[str, bool]:
    """Copy the capture ``src`` to its lasting place (``folder``, default: beside the saved .blend, else
    ``user_store``); returns (absolute path of the copy, whether a new file was written).

    Raises CaptureStoreError when it cannot be written (nothing half-written stays behind)."""
    src = Path(src)
    blend = bpy.data.filepath
    in_user_store = folder is None and not blend
    if folder is None:
        folder = Path(blend).parent / STORE_DIR if blend else Path(user_store)
    dest = _free_name(Path(folder), stem, src)
    created = not dest.exists()
    try:
        if created:
            copy_atomic(src, dest)
        if in_user_store:
            (Path(folder) / STORE_MARKER).touch()
    except OSError as exc:
        raise CaptureStoreError(f"cannot keep the capture in {folder}: {exc.strerror or exc}") from None
    return str(dest.resolve()), created


def record_paths(obj, capture_file: str, source: str) -> None:
    """Write the capture's and the footage's paths on ``obj`` (absolute, and relative once the .blend is saved)."""
    capture_file = str(Path(capture_file).resolve()) if capture_file else ""
    blend = bpy.data.filepath
    if capture_file:
        rel = _blend_relative(Path(capture_file), Path(blend).parent) if blend else ""
        obj[CAPTURE_PATH] = rel or capture_file
        obj[CAPTURE_ABS] = capture_file
    if source:
        obj[SOURCE] = source
        obj[SOURCE_REL] = _blend_relative(Path(source), Path(blend).parent) if blend and _is_file_path(source) else ""


def _is_file_path(source: str) -> bool:
    return os.path.isabs(source) and "%" not in source


def resolve_capture(obj) -> str:
    """The existing capture file of ``obj`` (a HandCap armature). Raises CaptureStoreError when none is found."""
    candidates = _capture_candidates(obj)
    for path in candidates:
        if os.path.isfile(path):
            return path
    if not candidates:
        raise CaptureStoreError(f"{obj.name}: no capture file recorded")
    raise CaptureStoreError(f"{obj.name}: its capture file is gone (looked at {', '.join(dict.fromkeys(candidates))})")


def _capture_candidates(obj) -> list[str]:
    out = []
    recorded = str(obj.get(CAPTURE_PATH, ""))
    if recorded:
        out.append(bpy.path.abspath(recorded))
    absolute = str(obj.get(CAPTURE_ABS, ""))
    if absolute:
        out.append(absolute)
    if bpy.data.filepath and (recorded or absolute):
        # a .blend moved together with its handcap/ folder
        out.append(str(Path(bpy.data.filepath).parent / STORE_DIR / Path(recorded or absolute).name))
    return out


def footage_path(obj) -> str:
    """The existing footage file recorded on ``obj`` (camera-space Empty or armature), else ""."""
    for key in (SOURCE, SOURCE_REL):
        value = str(obj.get(key, ""))
        if value and os.path.isfile(bpy.path.abspath(value)):
            return bpy.path.abspath(value)
    return ""


def _recorded_objects():
    return [o for o in bpy.data.objects if CAPTURE_PATH in o or SOURCE in o]


@bpy.app.handlers.persistent
def on_save_pre(filepath, *_args) -> None:
    """Before a save to ``filepath``: captures not yet beside it are copied to ``<its folder>/handcap/`` and
    every recorded path is rewritten relative to it (so the saved file finds them, wherever it is opened)."""
    if not filepath:
        return
    blend_dir = Path(filepath).parent
    copied: dict[str, str] = {}
    for obj in _recorded_objects():
        if CAPTURE_PATH in obj:
            try:
                current = resolve_capture(obj)
            except CaptureStoreError:
                current = ""  # nothing to carry along; the readouts say so when asked
            if current:
                src = Path(current)
                if src.parent.resolve() != (blend_dir / STORE_DIR).resolve():
                    if current not in copied:
                        dest = _free_name(blend_dir / STORE_DIR, src.stem, src)
                        try:
                            if not dest.exists():
                                copy_atomic(src, dest)
                            copied[current] = str(dest.resolve())
                        except OSError as exc:
                            print(f"HandCap: could not copy {src} beside {filepath}: {exc}")
                            continue
                    if not bpy.data.filepath and (src.parent / STORE_MARKER).is_file():
                        obj[MOVED_FROM] = current  # first save: the user-folder copy goes once it succeeded
                    current = copied[current]
                obj[CAPTURE_PATH] = _blend_relative(Path(current), blend_dir) or current
                obj[CAPTURE_ABS] = current
        source = str(obj.get(SOURCE, ""))
        if source and _is_file_path(source):
            obj[SOURCE_REL] = _blend_relative(Path(source), blend_dir)


@bpy.app.handlers.persistent
def on_save_post(filepath, *_args) -> None:
    """After a successful save: remove the user-folder copies that the first save moved beside the .blend."""
    for obj in bpy.data.objects:
        old = obj.get(MOVED_FROM)
        if old is None:
            continue
        del obj[MOVED_FROM]
        if bpy.data.filepath and str(old) != str(obj.get(CAPTURE_ABS, "")):
            Path(str(old)).unlink(missing_ok=True)


def register_handlers() -> None:
    if on_save_pre not in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.append(on_save_pre)
    if on_save_post not in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.append(on_save_post)


def unregister_handlers() -> None:
    for handlers, fn in ((bpy.app.handlers.save_pre, on_save_pre), (bpy.app.handlers.save_post, on_save_post)):
        while fn in handlers:
            handlers.remove(fn)
