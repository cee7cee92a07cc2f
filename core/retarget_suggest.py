"""The best bone mapping for a rig: a preset that covers it, else a guess from its bone names.

Kept apart from ``retarget_map`` (the mapping types and presets) and ``retarget_guess`` (the name patterns),
which both build on the types, so that neither needs the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .retarget_guess import guess_mapping
from .retarget_map import SIDES, SOURCE_KEYS, BoneMapping, MappingError, RetargetPreset, builtin_presets, source_bone

#: Coverage a preset needs before ``suggest_mapping`` prefers it over name guessing.
PRESET_MIN_COVERAGE = 0.75


@dataclass
class Suggestion:
    """A proposed mapping for a rig.

    Attributes:
        mapping: the pairs found.
        source: "preset:<id>" or "names" (guessed from bone names).
        missing: HandCap bone names that found no target bone.
    """

    mapping: BoneMapping
    source: str
    missing: list[str]

    @property
    def coverage(self) -> float:
        total = len(self.mapping) + len(self.missing)
        return len(self.mapping) / total if total else 0.0


def suggest_mapping(
    target_bones: Sequence[str] | Mapping[str, str | None],
    sides: Sequence[str] = SIDES,
    presets: Mapping[str, RetargetPreset] | None = None,
) -> Suggestion:
    """The best mapping for a rig: the preset covering the most bones (at least ``PRESET_MIN_COVERAGE``
    of one hand's 16), else a name-pattern guess. Raises MappingError when the rig has no hand or finger bones."""
    names = list(target_bones)
    presets = builtin_presets() if presets is None else presets
    best: tuple[int, str] | None = None
    best_mapping = None
    for pid, preset in sorted(presets.items()):
        mapping, _ = preset.resolve(names, sides)
        if best is None or len(mapping) > best[0]:
            best, best_mapping = (len(mapping), pid), mapping
    # A one-handed rig (or one side asked for) is judged on its best side.
    per_side = max((sum(p.side == s for p in best_mapping.pairs) for s in sides), default=0) if best_mapping else 0
    if best is not None and per_side >= PRESET_MIN_COVERAGE * len(SOURCE_KEYS):
        have = set(best_mapping.as_dict())
        missing = [source_bone(k, s) for s in sides for k in SOURCE_KEYS if source_bone(k, s) not in have]
        return Suggestion(best_mapping, f"preset:{best[1]}", missing)
    mapping, missing = guess_mapping(target_bones, sides)
    if not mapping.pairs:
        raise MappingError(
            "found no hand or finger bones by name (looked for hand/wrist and thumb/index/middle/ring/pinky "
            "bones with a left/right marker); map the bones by hand or pick a preset"
        )
    return Suggestion(mapping, "names", missing)
