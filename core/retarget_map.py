"""Bone mappings for retargeting HandCap hands onto other rigs (no bpy, no torch).

A mapping pairs each HandCap joint bone (``hand.R``, ``thumb.01.R`` ... ``pinky.03.R``, see
``naming``) with a bone of the target rig. Presets describe a rig family once for both sides
with placeholders, e.g. Mixamo's ``"index.01": "mixamorig:{side}HandIndex1"`` with
``{side}`` = ``Left`` / ``Right``. They are JSON files (``assets/retarget_presets/*.json``
ship with HandCap; users save their own). Two JSON forms exist:

* pattern form: ``"sides": {"right": {"side": "Right"}, ...}`` + ``"bones": {key: pattern}``;
* explicit form: ``"pairs": [{"side": "right", "key": "index.01", "target": "..."}, ...]``
  (what ``save_preset`` writes for a hand-edited mapping).

``retarget_suggest.suggest_mapping`` picks the preset that fits a rig best, else guesses from bone names
(``retarget_guess``: side words, finger words, segment numbers, the hierarchy) for any armature.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .keypoints import FINGERS
from .naming import suffix

FORMAT_NAME = "handcap.retarget_preset"
FORMAT_VERSION = 1
PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "retarget_presets"
SIDES = ("right", "left")

#: Side-less keys of HandCap's 16 joint bones: the hand, then 3 segments per finger (thumb first).
SOURCE_KEYS = ("hand",) + tuple(f"{finger}.{k:02d}" for finger in FINGERS for k in (1, 2, 3))


class MappingError(ValueError):
    """A mapping or preset is invalid, or does not fit the rigs it is used with (message says how)."""


def source_bone(key: str, side: str) -> str:
    """HandCap bone name of ``key`` (e.g. "index.02") on ``side``; the same names ``naming`` gives."""
    if key not in SOURCE_KEYS:
        raise MappingError(f"unknown source key {key!r}; expected one of {', '.join(SOURCE_KEYS)}")
    return f"{key}.{suffix(side)}"


@dataclass
class BonePair:
    """One source bone driving one target bone.

    Attributes:
        side: "right" or "left" (the captured hand).
        key: side-less source key (``SOURCE_KEYS``), e.g. "index.01".
        target: the target rig's bone name.
    """

    side: str
    key: str
    target: str

    @property
    def source(self) -> str:
        return source_bone(self.key, self.side)


@dataclass
class BoneMapping:
    """Ordered source -> target bone pairs (at most one pair per source bone and per target bone).

    Attributes:
        pairs: the pairs, hand before fingers, right side before left.
        preset: id of the preset it came from ("" when guessed from names or edited by hand).
    """

    pairs: list[BonePair] = field(default_factory=list)
    preset: str = ""

    def __len__(self) -> int:
        return len(self.pairs)

    def as_dict(self) -> dict[str, str]:
        """Source bone name -> target bone name."""
        return {p.source: p.target for p in self.pairs}

    def sides(self) -> list[str]:
        return [s for s in SIDES if any(p.side == s for p in self.pairs)]

    def check(self) -> None:
        """Raise MappingError on unknown sides/keys, empty names or bones used twice."""
        if not self.pairs:
            raise MappingError("the bone mapping is empty")
        seen_src: set[str] = set()
        seen_tgt: dict[str, str] = {}
        for p in self.pairs:
            if p.side not in SIDES:
                raise MappingError(f"side must be 'right' or 'left', got {p.side!r}")
            src = source_bone(p.key, p.side)
            if not p.target:
                raise MappingError(f"{src}: no target bone given")
            if src in seen_src:
                raise MappingError(f"{src} is mapped twice")
            if p.target in seen_tgt:
                raise MappingError(f"target bone {p.target!r} is driven by both {seen_tgt[p.target]} and {src}")
            seen_src.add(src)
            seen_tgt[p.target] = src

    def missing_targets(self, target_bones: Iterable[str]) -> list[str]:
        names = set(target_bones)
        return [p.target for p in self.pairs if p.target not in names]

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str] | Iterable[tuple[str, str]], preset: str = "") -> BoneMapping:
        """From HandCap bone name -> target name (e.g. ``{"index.01.R": "f_index.01.R"}``)."""
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        out = []
        for src, tgt in items:
            key, side = split_source_bone(src)
            out.append(BonePair(side, key, str(tgt)))
        mapping = cls(sorted(out, key=pair_order), preset)
        mapping.check()
        return mapping


def split_source_bone(name: str) -> tuple[str, str]:
    """HandCap bone name -> (key, side); MappingError for anything else."""
    stem, dot, suf = name.rpartition(".")
    side = {"R": "right", "L": "left"}.get(suf)
    if not dot or side is None or stem not in SOURCE_KEYS:
        raise MappingError(f"{name!r} is not a HandCap joint bone (hand.R, thumb.01.R ... pinky.03.L)")
    return stem, side


def pair_order(p: BonePair) -> tuple[int, int]:
    """Sort key: right before left, then ``SOURCE_KEYS`` order (hand, thumb ... pinky)."""
    return SIDES.index(p.side) if p.side in SIDES else 2, SOURCE_KEYS.index(p.key) if p.key in SOURCE_KEYS else 99


# --------------------------------------------------------------------------- presets


@dataclass
class RetargetPreset:
    """A rig family's bone names.

    Attributes:
        id: short identifier (the file stem for files).
        name: label for the UI.
        description: one sentence for tooltips.
        pairs: side -> source key -> target bone name (patterns already expanded).
        path: the file it was read from ("" for an in-memory preset).
    """

    id: str
    name: str
    description: str
    pairs: dict[str, dict[str, str]]
    path: str = ""

    def mapping(self, sides: Sequence[str] = SIDES) -> BoneMapping:
        out = [BonePair(s, k, t) for s in sides for k, t in self.pairs.get(s, {}).items()]
        return BoneMapping(sorted(out, key=pair_order), preset=self.id)

    def resolve(self, target_bones: Iterable[str], sides: Sequence[str] = SIDES) -> tuple[BoneMapping, int]:
        """The preset's mapping onto a real rig, and how many of its bones were not found.

        A preset name matches a bone exactly, else ignoring a namespace prefix (``mixamorig1:`` vs
        ``mixamorig:``, FBX exports add such prefixes), else ignoring case.
        """
        names = list(target_bones)
        exact = set(names)
        by_bare: dict[str, str] = {}
        by_lower: dict[str, str] = {}
        for n in names:
            by_bare.setdefault(_bare(n), n)
            by_lower.setdefault(_bare(n).lower(), n)
        found, missing = [], 0
        for p in self.mapping(sides).pairs:
            bare = _bare(p.target)
            hit = p.target if p.target in exact else by_bare.get(bare) or by_lower.get(bare.lower())
            if hit is None:
                missing += 1
            else:
                found.append(BonePair(p.side, p.key, hit))
        return BoneMapping(found, preset=self.id), missing

    def to_json(self) -> dict:
        """Explicit-form JSON (what ``save_preset`` writes)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "pairs": [{"side": p.side, "key": p.key, "target": p.target} for p in self.mapping().pairs],
        }


def _bare(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def preset_from_json(data: dict, path: str = "", default_id: str = "") -> RetargetPreset:
    """Validate a preset's JSON object (either form) and expand its patterns."""
    where = path or "preset"
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise MappingError(f"{where}: not a HandCap retarget preset (format must be {FORMAT_NAME!r})")
    if data.get("version") != FORMAT_VERSION:
        raise MappingError(f"{where}: preset version {data.get('version')!r} is not supported ({FORMAT_VERSION})")
    pairs: dict[str, dict[str, str]] = {s: {} for s in SIDES}
    if "pairs" in data:
        for item in data["pairs"]:
            try:
                side, key, target = item["side"], item["key"], item["target"]
            except (KeyError, TypeError):
                raise MappingError(f"{where}: each pair needs 'side', 'key' and 'target'") from None
            if side not in SIDES or key not in SOURCE_KEYS or not isinstance(target, str) or not target:
                raise MappingError(f"{where}: bad pair {item!r}")
            pairs[side][key] = target
    elif "bones" in data and "sides" in data:
        for side, values in data["sides"].items():
            if side not in SIDES or not isinstance(values, dict):
                raise MappingError(f"{where}: 'sides' must map 'right'/'left' to placeholder values")
            for key, pattern in data["bones"].items():
                if key not in SOURCE_KEYS:
                    raise MappingError(f"{where}: unknown bone key {key!r}; expected one of {', '.join(SOURCE_KEYS)}")
                try:
                    pairs[side][key] = str(pattern).format(**values)
                except (KeyError, IndexError, ValueError) as exc:
                    raise MappingError(f"{where}: pattern {pattern!r} uses an undefined placeholder ({exc})") from None
    else:
        raise MappingError(f"{where}: a preset needs 'pairs', or 'bones' with 'sides'")
    if not any(pairs.values()):
        raise MappingError(f"{where}: the preset maps no bones")
    preset = RetargetPreset(
        id=str(data.get("id") or default_id),
        name=str(data.get("name") or data.get("id") or default_id),
        description=str(data.get("description", "")),
        pairs={s: p for s, p in pairs.items() if p},
        path=path,
    )
    preset.mapping().check()
    return preset


def load_preset(path: str | os.PathLike) -> RetargetPreset:
    """Read a preset file; MappingError says what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"{path}: no such preset file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingError(f"{path}: not a readable JSON preset ({exc})") from None
    return preset_from_json(data, str(path), default_id=path.stem)


def presets_in(folder: str | os.PathLike) -> dict[str, RetargetPreset]:
    """Every ``*.json`` preset in ``folder`` by id (unreadable files are skipped; a missing folder is empty)."""
    folder = Path(folder)
    out: dict[str, RetargetPreset] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            preset = load_preset(path)
        except MappingError:
            continue  # a broken user file must not hide the others; load_preset names the problem on demand
        out[preset.id] = preset
    return out


def builtin_presets() -> dict[str, RetargetPreset]:
    """Presets shipped in ``assets/retarget_presets`` (Rigify, Rigify metarig, Mixamo, Unreal, HandCap)."""
    return presets_in(PRESET_DIR)


def save_preset(path: str | os.PathLike, preset: RetargetPreset) -> Path:
    """Write ``preset`` (explicit form) atomically: a temp file in the same folder, then a rename."""
    preset.mapping().check()
    path = Path(path)
    if not path.parent.is_dir():
        raise MappingError(f"{path.parent}: folder does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(preset.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise MappingError(f"{path}: cannot write the preset ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def preset_from_mapping(mapping: BoneMapping, preset_id: str, name: str = "", description: str = "") -> RetargetPreset:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", preset_id or ""):
        raise MappingError(f"preset id {preset_id!r} must be letters, digits, '_', '-' or '.'")
    mapping.check()
    pairs: dict[str, dict[str, str]] = {}
    for p in mapping.pairs:
        pairs.setdefault(p.side, {})[p.key] = p.target
    return RetargetPreset(preset_id, name or preset_id, description, pairs)
