"""What a farm run has finished, kept in ``OUTDIR/.handcap-farm/`` so that a rerun does only what is missing.

Each clip has a key: a hash of the input file (resolved path, size, modification time), its capture options,
its chunk plan and the chunk file format, so a changed clip, option or HandCap chunk format starts afresh. A
finished chunk is written atomically into the clip's folder first and recorded in ``manifest.json`` (also
written atomically) with its SHA-256 after; on reading, a chunk counts as finished only if its file is there
with that digest. So a run killed at any moment leaves nothing that a rerun would take for finished work when
it is not.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..inference.chunks import CHUNK_VERSION, write_bytes_atomic

FOLDER = ".handcap-farm"
VERSION = 1


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clip_key(path: Path, capture_options: dict, plan: list) -> str:
    """The clip's identity for resuming: input file, capture options, chunk plan, chunk file format (chunks
    of another format, e.g. without the tracker hand-over, are computed again rather than refused)."""
    st = path.stat()
    blob = json.dumps(
        {
            "path": str(path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "options": capture_options,
            "plan": plan,
            "chunk_version": CHUNK_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class Manifest:
    """``OUTDIR/.handcap-farm/manifest.json``: per clip key, its finished chunks and outputs."""

    def __init__(self, outdir: str | os.PathLike):
        self.root = Path(outdir) / FOLDER
        self.path = self.root / "manifest.json"
        self.data = {"version": VERSION, "clips": {}}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError):
                data = None  # unreadable: start afresh (the chunk files are checked by digest anyway)
            if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("clips"), dict):
                self.data = data

    def _clip(self, key: str, stem: str) -> dict:
        return self.data["clips"].setdefault(key, {"stem": stem, "chunks": {}, "outputs": {}})

    def clip_dir(self, key: str, stem: str) -> Path:
        return self.root / f"{stem}-{key}"

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode("utf-8"))

    def finished_chunk(self, key: str, stem: str, index: int) -> bytes | None:
        """The chunk's bytes if a run finished it (file present, digest as recorded), else None."""
        entry = self.data["clips"].get(key, {}).get("chunks", {}).get(str(index))
        if not entry:
            return None
        path = self.clip_dir(key, stem) / entry["file"]
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return data if digest(data) == entry["sha256"] else None

    def record_chunk(self, key: str, stem: str, index: int, data: bytes) -> None:
        folder = self.clip_dir(key, stem)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"chunk_{index:04d}.npz"
        write_bytes_atomic(folder / name, data)
        self._clip(key, stem)["chunks"][str(index)] = {"file": name, "sha256": digest(data)}
        self._save()

    def finished_outputs(self, key: str, stem: str, convert_key: str, outdir: Path) -> list[str] | None:
        """The clip's output files if a run wrote them with these conversion options and they are unchanged."""
        entry = self.data["clips"].get(key, {}).get("outputs", {})
        if entry.get("convert") != convert_key or not entry.get("files"):
            return None
        for name, sha in entry["files"].items():
            try:
                if digest((outdir / name).read_bytes()) != sha:
                    return None
            except OSError:
                return None
        return sorted(entry["files"])

    def record_outputs(self, key: str, stem: str, convert_key: str, files: dict[str, bytes]) -> None:
        self._clip(key, stem)["outputs"] = {"convert": convert_key, "files": {n: digest(b) for n, b in files.items()}}
        self._save()
