"""Headless batch conversion, the one core function behind ``python -m handcap convert``,
``blender -b -c handcap convert`` and ``blender -b -P tools/blender_batch.py -- convert``.

For every input (files, folders, glob patterns): videos and photos are captured by the caller's
``capture_fn`` (in-process inference from plain Python, a worker process from Blender), ``.npz``
captures are imported directly; then the hands are optionally retargeted onto a rig from a .blend
and written as .blend / .fbx / .bvh / .glb into the output folder. One failing input is reported and
the others still run. Progress lines carry an ETA; a summary ends the run.

Outputs are never half-written: .blend files are saved to a temporary name and renamed, exports go
through ``builders.export`` (same rule). Problems with the run as a whole (no inputs, output folder
not writable, rig file or rig object missing) raise ``BatchError`` before any input is touched.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..core import retarget_map as rm
from ..core import rig_props as rp
from ..core.media import OUTPUT_FORMATS
from ..core.retarget_suggest import suggest_mapping
from . import capture_store
from .camera import CameraAlignError, MatchOptions, match_camera
from .capture_store import STORE_DIR
from .export import ExportOptions, check_writable_folder, export_armatures
from .importer import ImportOptions, import_capture
from .retarget import RetargetOptions, retarget
from .smooth import smooth_new_hands

CAPTURE_EXT = ".npz"

#: (input file, capture file to write) -> None; raises ValueError / RuntimeError / OSError with a message.
CaptureFn = Callable[[Path, Path], None]


class BatchError(ValueError):
    """The batch cannot start (bad options, nothing to do, unwritable output folder, rig missing)."""


@dataclass
class BatchOptions:
    """A batch run.

    Attributes:
        inputs: files, folders (their media and capture files, not recursive) and glob patterns.
        outdir: output folder (created if needed).
        format: "blend", "fbx", "bvh" (one file per hand, or the rig) or "glb".
        retarget_blend: .blend holding the rig to retarget onto ("" = export HandCap's own hands).
        rig_object: name of the rig object in ``retarget_blend`` ("" = its only armature).
        mapping: preset id or preset file for the bone mapping ("" = suggest from the rig's bone names).
        wrist_location: "NONE", "RELATIVE" or "WORLD" (see ``RetargetOptions``).
        with_mesh: build the hand meshes (ignored when retargeting: the rig's own meshes are used).
        keep_captures: also write each video's capture file (``<name>.npz``) into ``outdir``.
        overwrite: replace existing output files (default: refuse before any input is converted).
        smooth: give every hand seen in 3 frames or more the default smoothing before retargeting and export
            (the fit leaves all temporal smoothing to it; the raw keys stay on the armature, see ``smooth.py``).
        media_exts: file extensions (lower case, with dot) taken as videos / photos.
    """

    inputs: list[str]
    outdir: str
    format: str = "blend"
    retarget_blend: str = ""
    rig_object: str = ""
    mapping: str = ""
    wrist_location: str = "NONE"
    with_mesh: bool = True
    keep_captures: bool = False
    overwrite: bool = False
    smooth: bool = True
    media_exts: frozenset[str] = frozenset()


@dataclass
class InputResult:
    """One input's outcome: ``outputs`` (absolute paths) on success, else ``error`` (one line)."""

    input: str
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class BatchReport:
    """All inputs' outcomes, in input order, plus inputs that matched nothing (``unmatched``)."""

    results: list[InputResult] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[InputResult]:
        return [r for r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        """0 when every input converted, 1 when anything failed or an input pattern matched nothing."""
        return 1 if self.failed or self.unmatched else 0


def expand_inputs(patterns: Iterable[str], media_exts: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Inputs as files (in the given order, duplicates dropped) and the patterns that matched nothing.

    A folder contributes its media and ``.npz`` files (sorted, not recursive); a pattern with ``*``,
    ``?`` or ``[`` is globbed (``**`` recursive); anything else is taken as a file even if it does not
    exist, so that its error is reported with the other results."""
    wanted = {e.lower() for e in media_exts} | {CAPTURE_EXT}
    files: list[Path] = []
    unmatched: list[str] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in wanted)
        elif any(c in pattern for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
        else:
            found = [path]
        if not found:
            unmatched.append(pattern)
        files += found
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, unmatched


def output_stems(files: list[Path]) -> list[str]:
    """Output name per input: its stem, with ``_2``, ``_3`` ... when two inputs share one."""
    count: dict[str, int] = {}
    out = []
    for f in files:
        stem = f.stem or "capture"
        count[stem] = count.get(stem, 0) + 1
        out.append(stem if count[stem] == 1 else f"{stem}_{count[stem]}")
    return out


def check_options(options: BatchOptions) -> None:
    """Raise BatchError for options that make the whole run pointless (before any input is touched)."""
    if options.format not in OUTPUT_FORMATS:
        raise BatchError(f"unknown output format {options.format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if not options.inputs:
        raise BatchError("no inputs given")
    from .export import ExportError

    try:
        check_writable_folder(options.outdir)
    except ExportError as exc:
        raise BatchError(str(exc)) from None
    if options.rig_object and not options.retarget_blend:
        raise BatchError("--rig-object needs --retarget RIG.blend")
    if options.retarget_blend:
        path = Path(options.retarget_blend)
        if not path.is_file():
            raise BatchError(f"{path}: no such rig file")
        try:
            with bpy.data.libraries.load(str(path)) as (data_from, _):
                names = list(data_from.objects)
        except OSError as exc:
            raise BatchError(f"{path}: not a readable .blend file ({_one_line(exc)})") from None
        if options.rig_object and options.rig_object not in names:
            raise BatchError(f"{path}: has no object named {options.rig_object!r} (objects: {', '.join(names[:10])})")
    if options.mapping and options.mapping not in rm.builtin_presets():
        try:
            rm.load_preset(options.mapping)
        except rm.MappingError as exc:
            raise BatchError(
                f"--mapping {options.mapping!r} is neither a built-in preset "
                f"({', '.join(sorted(rm.builtin_presets()))}) nor a readable preset file: {exc}"
            ) from None


def run_batch(options: BatchOptions, capture_fn: CaptureFn | None, log: Callable[[str], None] = print) -> BatchReport:
    """Convert every input; never raises for a single input's failure (see ``BatchReport``).

    Args:
        options: see ``BatchOptions``.
        capture_fn: turns a video / photo into a capture file; None = only ``.npz`` inputs can be converted.
        log: receives progress and summary lines.

    Raises:
        BatchError: from ``check_options``.
    """
    check_options(options)
    files, unmatched = expand_inputs(options.inputs, options.media_exts)
    report = BatchReport(unmatched=unmatched)
    for pattern in unmatched:
        log(f"warning: {pattern}: matched no file")
    if not files:
        raise BatchError(f"no input files found in {', '.join(options.inputs)}")
    outdir = Path(options.outdir)
    stems = output_stems(files)
    _check_outputs(files, stems, outdir, options)
    t_start = time.monotonic()
    for i, (path, stem) in enumerate(zip(files, stems, strict=True)):
        prefix = f"[{i + 1}/{len(files)}] {path.name}"
        log(f"{prefix}: converting")
        t0 = time.monotonic()
        result = InputResult(input=str(path))
        try:
            result.outputs = convert_one(path, stem, outdir, options, capture_fn, log)
        except (ValueError, OSError, RuntimeError) as exc:  # the messages of HandCap's errors are for users
            result.error = _one_line(exc)
        except Exception as exc:  # noqa: BLE001 - a bug on one input must not stop the others; reported as failure
            result.error = f"unexpected {type(exc).__name__}: {_one_line(exc)}"
            log(traceback.format_exc().rstrip())
        result.seconds = time.monotonic() - t0
        report.results.append(result)
        done = i + 1
        eta = (time.monotonic() - t_start) / done * (len(files) - done)
        status = "ok -> " + ", ".join(Path(o).name for o in result.outputs) if result.ok else "FAILED: " + result.error
        log(f"{prefix}: {status} ({result.seconds:.1f} s, ETA {_fmt(eta)})")
    ok = len(report.results) - len(report.failed)
    log(f"converted {ok} of {len(report.results)} inputs into {outdir} in {_fmt(time.monotonic() - t_start)}")
    for r in report.failed:
        log(f"  failed: {r.input}: {r.error}")
    return report


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def convert_one(
    path: Path,
    stem: str,
    outdir: Path,
    options: BatchOptions,
    capture_fn: CaptureFn | None,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Convert one input; returns the files written. Raises ValueError (or OSError / RuntimeError) on failure."""
    ext = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if ext != CAPTURE_EXT and ext not in options.media_exts:
        raise ValueError(
            f"not a video, photo or HandCap capture (.npz): {ext or 'no extension'} is not a known file type"
        )
    with tempfile.TemporaryDirectory(prefix="handcap-batch-") as work:
        capture_path = path
        if ext != CAPTURE_EXT:
            if capture_fn is None:
                raise ValueError("capturing videos and photos is not available here (only .npz captures)")
            capture_path = Path(work) / f"{stem}.npz"
            capture_fn(path, capture_path)
            if not capture_path.is_file():
                raise RuntimeError("the capture step wrote no capture file")
        _fresh_scene(options)
        if options.format == "blend":
            # the .blend's hands keep their capture beside it (//handcap/), for the overlay readouts
            kept = outdir / STORE_DIR / f"{stem}.npz"
            capture_store.copy_atomic(capture_path, kept)
            capture_path = kept
        try:
            return _convert_capture(capture_path, path, stem, outdir, options, log)
        except BaseException:
            if options.format == "blend":
                Path(capture_path).unlink(missing_ok=True)  # no orphan capture for a .blend never written
            raise


def _convert_capture(
    capture_path: Path, path: Path, stem: str, outdir: Path, options: BatchOptions, log: Callable[[str], None]
) -> list[str]:
    """Import, smooth, match the camera, retarget and write one capture's outputs (the files written)."""
    ext = path.suffix.lower()
    outputs: list[str] = []
    context = bpy.context
    imported = import_capture(
        context, str(capture_path), ImportOptions(with_mesh=options.with_mesh, set_scene_timing=True)
    )
    _match_camera(context, imported, log)
    hands = [bpy.data.objects[imported.armatures[s]] for s in ("right", "left") if s in imported.armatures]
    if options.smooth:
        failed = smooth_new_hands(imported.armatures, imported.keyed_frames)
        if failed:
            raise ValueError("smoothing failed: " + "; ".join(f"{n}: {why}" for n, why in failed.items()))
    targets = hands
    if options.retarget_blend:
        rig = _rig(options)
        mapping = _mapping(rig, options.mapping)
        done = retarget(context, hands, rig, mapping, RetargetOptions(wrist_location=options.wrist_location))
        for warning in done.warnings:
            log(f"  warning: {warning}")
        mapped = {p.source for p in mapping.pairs}
        for hand in hands:
            bones = [b.name for b in hand.data.bones if ".tip." not in b.name]
            unmapped = [b for b in bones if b not in mapped]
            if unmapped:
                log(
                    f"  warning: {len(unmapped)} of {len(bones)} bones of {hand.name} have no bone on "
                    f"{rig.name!r}, their motion is not retargeted: "
                    + ", ".join(unmapped[:6])
                    + (" ..." if len(unmapped) > 6 else "")
                )
        targets = [rig]
    if options.keep_captures and ext != CAPTURE_EXT:
        kept = outdir / f"{stem}.npz"
        capture_store.copy_atomic(capture_path, kept)
        outputs.append(str(kept.resolve()))
    if options.format == "blend":
        capture_store.on_save_pre(str(outdir / f"{stem}.blend"))  # paths relative to the .blend
        outputs.insert(0, _save_blend(outdir / f"{stem}.blend"))
    else:
        result = export_armatures(context, targets, outdir / f"{stem}.{options.format}", ExportOptions(options.format))
        outputs[:0] = result.files
    return outputs


def planned_outputs(files: list[Path], stems: list[str], outdir: Path, options: BatchOptions) -> list[Path]:
    """The files the run will write (bvh names carry the hand, so every possible one is listed)."""
    out = []
    for path, stem in zip(files, stems, strict=True):
        if options.format == "bvh":
            out += [outdir / f"{stem}{suffix}.bvh" for suffix in ("", ".R", ".L")]
        else:
            out.append(outdir / f"{stem}.{options.format}")
        if options.format == "blend":
            out.append(outdir / STORE_DIR / f"{stem}.npz")
        if options.keep_captures and path.suffix.lower() != CAPTURE_EXT:
            out.append(outdir / f"{stem}.npz")
    return out


def _check_outputs(files: list[Path], stems: list[str], outdir: Path, options: BatchOptions) -> None:
    """Refuse, before any work, to write over an input, or over existing files without ``overwrite``."""
    planned = planned_outputs(files, stems, outdir, options)
    inputs = {f.resolve() for f in files}
    clash = [p for p in planned if p.resolve() in inputs]
    if clash:
        raise BatchError(f"{clash[0]} is an input and would be overwritten: choose another output folder")
    existing = [p for p in planned if p.exists()]
    if existing and not options.overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise BatchError(f"{existing[0]}{more} already exist(s) in {outdir}: pass --overwrite to replace them")


def _match_camera(context, imported, log: Callable[[str], None]) -> None:
    """The file gets the footage's camera, resolution, fps, frame range and background, as the operator's."""
    try:
        result = match_camera(context, bpy.data.objects[imported.camera_space], MatchOptions())
    except CameraAlignError as exc:
        log(f"  note: no matched camera: {exc}")
        return
    for warning in result.warnings:
        log(f"  note: {warning}")


def _fresh_scene(options: BatchOptions) -> None:
    """A clean file for every input: the rig file when retargeting, else an empty scene."""
    if options.retarget_blend:
        bpy.ops.wm.open_mainfile(filepath=str(Path(options.retarget_blend).resolve()), load_ui=False)
    else:
        bpy.ops.wm.read_homefile(use_empty=True)


def _rig(options: BatchOptions) -> bpy.types.Object:
    if options.rig_object:
        rig = bpy.data.objects.get(options.rig_object)
        if rig is None or rig.type != "ARMATURE":
            raise ValueError(f"{options.retarget_blend}: {options.rig_object!r} is not an armature object")
        return rig
    rigs = [o for o in bpy.data.objects if o.type == "ARMATURE" and not rp.SIDE.on(o)]
    if len(rigs) != 1:
        names = ", ".join(o.name for o in rigs) or "none"
        raise ValueError(f"{options.retarget_blend}: name the rig with --rig-object (armatures: {names})")
    return rigs[0]


def _mapping(rig: bpy.types.Object, mapping: str) -> rm.BoneMapping:
    bones = {b.name: b.parent.name if b.parent else None for b in rig.data.bones}
    if not mapping:
        return suggest_mapping(bones).mapping
    presets = rm.builtin_presets()
    preset = presets[mapping] if mapping in presets else rm.load_preset(mapping)
    resolved, missing = preset.resolve(bones)
    if not resolved.pairs:
        raise rm.MappingError(f"preset {preset.id!r} matches no bone of {rig.name!r}")
    return resolved


def _save_blend(path: Path) -> str:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.blend")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, compress=True)
        if not tmp.is_file():
            raise OSError(f"Blender wrote no file at {tmp}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path.resolve())
