"""Guessing a hand-bone mapping from bone names alone, for rigs no preset describes (no bpy).

Names are split into words (``mixamorig:LeftHandIndex1`` -> mixamorig left hand index 1); a bone's side
comes from left/right words (l, r, left, right ...), its finger from finger words (thumb, index,
middle, ring, pinky and synonyms, or MakeHuman's ``finger1`` .. ``finger5``), its segment from its last
number or a phalanx word (proximal, intermediate, distal); helper bones (MCH, ORG, IK, tweak, twist,
end bones ...) are ignored, a rig's ``DEF-`` copies lose to its plain controls, and the hierarchy
orders un-numbered segments and picks the hand bone that holds the fingers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .keypoints import FINGERS
from .retarget_map import SIDES, BoneMapping, BonePair, pair_order, source_bone

_SIDE_WORDS = {"l": "left", "left": "left", "lft": "left", "r": "right", "right": "right", "rt": "right"}
_FINGER_WORDS = {
    "thumb": "thumb",
    "pollex": "thumb",
    "index": "index",
    "pointer": "index",
    "forefinger": "index",
    "middle": "middle",
    "mid": "middle",
    "ring": "ring",
    "pinky": "pinky",
    "pinkie": "pinky",
    "little": "pinky",
    "small": "pinky",
}
_PHALANX_ORDER = {"metacarpal": 0, "meta": 0, "proximal": 1, "prox": 1, "intermediate": 2, "medial": 2, "distal": 3}
#: Helper / mechanism / end bones that an animator never keys.
_NOISE = {"mch", "org", "wgt", "vis", "drv", "master", "tweak", "pole", "target", "end", "nub", "tip", "null"}
_NOISE |= {"twist", "roll", "helper", "socket", "ik", "parent", "share", "jnt_end", "bend"}
_METACARPAL = {"metacarpal", "meta", "carpal", "palm"}


def tokens(name: str) -> list[str]:
    """Lower-case words and numbers of a bone name: ``mixamorig:LeftHandIndex1`` -> mixamorig left hand index 1."""
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Za-z])(\d)", r"\1 \2", name)
    name = re.sub(r"(\d)([A-Za-z])", r"\1 \2", name)
    return [t for t in re.split(r"[\s._:\-|/]+", name.lower()) if t]


@dataclass
class _BoneWords:
    name: str
    side: str | None
    finger: str | None
    order: float | None  # segment number / phalanx rank, None when the name has none
    hand: bool
    noise: int  # helper words; 0 for a plain control / deform bone
    metacarpal: bool
    deform_prefix: bool


def _analyse(name: str) -> _BoneWords:
    toks = tokens(name)
    side = None
    for t in toks:
        if t in _SIDE_WORDS:
            side = _SIDE_WORDS[t]
    finger, order = None, None
    for i, t in enumerate(toks):
        if t in _FINGER_WORDS and finger is None:
            finger = _FINGER_WORDS[t]
        elif t == "finger" and i + 1 < len(toks) and toks[i + 1].isdigit() and finger is None:
            # MakeHuman style "finger2-1": fingers numbered 1 (thumb) .. 5 (little), then the segment
            n = int(toks[i + 1])
            if 1 <= n <= 5:
                finger = FINGERS[n - 1]
                toks = toks[: i + 1] + toks[i + 2 :]
                break
    nums = [int(t) for t in toks if t.isdigit()]
    words = [_PHALANX_ORDER[t] for t in toks if t in _PHALANX_ORDER]
    if nums:
        order = float(nums[-1])
    elif words:
        order = float(words[-1])
    noise = sum(t in _NOISE for t in toks)
    return _BoneWords(
        name=name,
        side=side,
        finger=finger,
        order=order,
        hand=finger is None and any(t in ("hand", "wrist") for t in toks),
        noise=noise,
        metacarpal=any(t in _METACARPAL for t in toks),
        deform_prefix=bool(toks) and toks[0] in ("def", "deform"),
    )


def _depth(name: str, parents: Mapping[str, str | None]) -> int:
    d, seen = 0, set()
    while parents.get(name) and name not in seen:
        seen.add(name)
        name = parents[name]
        d += 1
    return d


def _ancestors(name: str, parents: Mapping[str, str | None]) -> list[str]:
    out, seen = [], set()
    while parents.get(name) and name not in seen:
        seen.add(name)
        name = parents[name]
        out.append(name)
    return out


def _guess_chain(cands: list[_BoneWords], finger: str, parents: Mapping[str, str | None]) -> list[str]:
    if finger != "thumb":
        # HandCap's finger bones start at the knuckle; a rig's metacarpals have no HandCap counterpart.
        cands = [c for c in cands if not c.metacarpal]
    if not cands:
        return []
    # One bone per segment: among same-order duplicates (DEF-x and x) prefer the control (no prefix).
    best: dict[object, _BoneWords] = {}
    for c in cands:
        key = c.order if c.order is not None else c.name
        cur = best.get(key)
        if cur is None or (c.deform_prefix, len(c.name)) < (cur.deform_prefix, len(cur.name)):
            best[key] = c
    chain = list(best.values())
    if all(c.order is not None for c in chain):
        chain.sort(key=lambda c: (c.order, c.name))
    else:
        chain.sort(key=lambda c: (_depth(c.name, parents), c.name))
    return [c.name for c in chain[:3]]


def guess_mapping(
    target_bones: Sequence[str] | Mapping[str, str | None], sides: Sequence[str] = SIDES
) -> tuple[BoneMapping, list[str]]:
    """Map by bone-name patterns alone; returns (mapping, HandCap bones left unmapped).

    ``target_bones`` is a list of names, or name -> parent name (None for roots); the hierarchy
    orders un-numbered finger segments and picks the hand bone that holds the fingers.
    """
    parents: Mapping[str, str | None] = target_bones if isinstance(target_bones, Mapping) else {}
    words = [_analyse(n) for n in target_bones]
    pairs: list[BonePair] = []
    missing: list[str] = []
    for side in sides:
        mine = [w for w in words if w.side == side and w.noise == 0]
        fingers_found: list[str] = []
        for finger in FINGERS:
            chain = _guess_chain([w for w in mine if w.finger == finger], finger, parents)
            for k in range(3):
                key = f"{finger}.{k + 1:02d}"
                if k < len(chain):
                    pairs.append(BonePair(side, key, chain[k]))
                    fingers_found.append(chain[k])
                else:
                    missing.append(source_bone(key, side))
        hands = [w for w in mine if w.hand]
        hand = None
        if hands:
            # The hand holding the fingers: the nearest hand-named ancestor of a finger's first bone.
            names = {w.name for w in hands}
            for first in fingers_found:
                hand = next((a for a in _ancestors(first, parents) if a in names), None)
                if hand:
                    break
            if hand is None:
                hand = min(hands, key=lambda w: (w.deform_prefix, len(tokens(w.name)), len(w.name))).name
        if hand is None:
            missing.insert(0, source_bone("hand", side))
        else:
            pairs.append(BonePair(side, "hand", hand))
    mapping = BoneMapping(sorted(pairs, key=pair_order))
    # Names can collide (a bone matched for two keys); keep the first use only.
    used: set[str] = set()
    kept = []
    for p in mapping.pairs:
        if p.target in used:
            missing.append(p.source)
            continue
        used.add(p.target)
        kept.append(p)
    mapping.pairs = kept
    return mapping, missing
