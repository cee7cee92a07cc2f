"""Results of other hand-capture tools -> HandCap captures (never bpy; torch only for keypoint fits).

``read_results(path, options)`` reads one file and returns a :class:`ForeignImport` with the capture:

* MANO parameters (HaMeR, WiLoR, HandCap's own documented layout; ``.npz`` or ``.json``): converted
  exactly, numpy only (``mano_results``);
* 21 keypoints (MediaPipe ``.json`` / ``.csv``, FreeMoCap ``.csv`` / ``.npy``): fitted with HandCap's
  own fit (``keypoint_fit``).

Layouts, keys and conventions: docs/foreign-results.md. Every problem is a ``ForeignResultsError``.
"""

from __future__ import annotations

from pathlib import Path

from .common import LAYOUTS, ForeignImport, ForeignOptions, ForeignResultsError

EXTENSIONS = (".npz", ".json", ".csv", ".npy")


def read_results(path, options: ForeignOptions | None = None) -> ForeignImport:
    """Read a results file of another tool into a capture (not written; see ``write_capture``)."""
    from .common import load_json, load_npz
    from .keypoint_results import is_mediapipe_json, read_keypoints
    from .layouts import records_from_json, records_from_npz
    from .mano_results import mano_capture

    options = options or ForeignOptions()
    options.validate()
    path = Path(path)
    if not path.is_file():
        raise ForeignResultsError(f"{path}: no such file")
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ForeignResultsError(f"{path}: unknown container {ext or '(none)'}; HandCap reads {', '.join(EXTENSIONS)}")
    forced = options.layout
    kind = LAYOUTS[forced][0] if forced != "auto" else None
    if ext in (".csv", ".npy") or kind == "keypoints":
        if kind == "mano":
            raise ForeignResultsError(f"{path}: the {forced} layout is MANO parameters in .npz or .json, not {ext}")
        return _fit(path, read_keypoints(path, options), options)
    if ext == ".json":
        obj = load_json(path)
        if kind is None and is_mediapipe_json(obj):
            return _fit(path, read_keypoints(path, options, obj), options)
        layout, records, top = records_from_json(obj, path, forced)
    else:
        layout, records, top = records_from_npz(load_npz(path), path, forced)
    return mano_capture(path, layout, records, top, options)


def _fit(path: Path, kp, options: ForeignOptions) -> ForeignImport:
    from .keypoint_fit import fit_keypoints

    return fit_keypoints(path, kp, options)


__all__ = ["EXTENSIONS", "LAYOUTS", "ForeignImport", "ForeignOptions", "ForeignResultsError", "read_results"]
