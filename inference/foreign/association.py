"""Hand records of another tool -> hand tracks: which record of a frame continues which hand (numpy only).

HaMeR, WiLoR and MediaPipe write each frame's hands as an unordered list with a side each; several people
give several right hands in one frame. A capture holds any number of tracks ("right", "right_2", ...,
``core.capture.track_key``), so the records are linked over time here:

* a record that gives a track id (``track_id``, or ``person_id``: ``layouts.ALIASES``) is linked by it;
* otherwise per side, frame by frame, each record goes to the nearest live track of its side (distance of
  the hands' image centres over their mean size in pixels, under ``GATE_SIZES`` times the square root of
  the frames since that track was last seen, at most ``MAX_GAP_FRAMES``); pairs are taken nearest first, so
  two hands that pass near each other keep their tracks while they are apart in the image;
* a record nearly on top of one already taken in its frame (centres within ``DUPLICATE_SIZES`` of the hand's
  size, same side) is a second detection of that hand: the higher score is kept;
* short tracks (fewer than ``MIN_TRACK_FRAMES`` records in a clip of at least ``MIN_CLIP_FRAMES`` frames) are
  passing false detections and dropped, unless they are the only track of their side;
* the tracks of each side are ranked by how many frames they hold, and ``keep`` of all (the first of each
  side first, then the second, ...) are kept, so a file of one right and one left hand reads as before.
Every drop is reported in the warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.capture import track_key

GATE_SIZES = 1.5
MAX_GAP_FRAMES = 15
DUPLICATE_SIZES = 0.3
MIN_TRACK_FRAMES = 3
MIN_CLIP_FRAMES = 10
ID_KEYS = ("track_id",)  # the canonical name of the layouts' aliases


@dataclass
class HandRecord:
    """One hand in one frame of a results file, for linking.

    frame: source frame index; side: "right" or "left"; centre: (2,) image position of the hand, pixels;
    size: the hand's size in the image, pixels (> 0); score: confidence in [0, 1]; track_id: the file's own
    id of the hand (None: linked by position).
    """

    frame: int
    side: str
    centre: np.ndarray
    size: float
    score: float
    track_id: object = None


def record_track_id(rec: dict):
    """The file's own id of a hand record (``ID_KEYS``: one whole number or text), or None; ValueError for
    anything else."""
    for key in ID_KEYS:
        if key in rec and rec[key] is not None:
            value = np.asarray(rec[key]).reshape(-1)
            item = value[0].item() if value.size == 1 else None
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise ValueError(f"'{key}' must be one whole number or text, got {rec[key]!r:.60}")
            return item
    return None


def link_records(records: list[HandRecord], keep: int) -> tuple[list[str | None], list[str]]:
    """Track key of each record (None: dropped) and the warnings (see the module's text); at most ``keep``
    tracks are kept."""
    warnings: list[str] = []
    alive = drop_duplicates(records, warnings)
    tracks: list[dict] = []  # side, records (indices)
    for side in ("right", "left"):
        idx = [i for i, r in enumerate(records) if r.side == side and alive[i]]
        if not idx:
            continue
        by_id = all(records[i].track_id is not None for i in idx)
        groups = _by_id(records, idx) if by_id else _by_position(records, idx)
        for members in groups:
            kept = _one_per_frame(records, members, warnings, side)
            tracks.append({"side": side, "records": kept})
    span = max(r.frame for r in records) - min(r.frame for r in records) + 1
    ranked: list[dict] = []
    for side in ("right", "left"):
        own = sorted(
            (t for t in tracks if t["side"] == side),
            key=lambda t: (-len(t["records"]), min(records[i].frame for i in t["records"])),
        )
        if span >= MIN_CLIP_FRAMES and len(own) > 1:
            short = [t for t in own[1:] if len(t["records"]) < MIN_TRACK_FRAMES]
            if short:
                frames = sorted(records[i].frame for t in short for i in t["records"])
                warnings.append(
                    f"{len(short)} passing {side} hand(s) seen in fewer than {MIN_TRACK_FRAMES} frames dropped "
                    f"(frames {', '.join(map(str, frames[:8]))}{', ...' if len(frames) > 8 else ''})"
                )
            own = [t for t in own if t not in short]
        for rank, t in enumerate(own):
            t["rank"] = rank
            ranked.append(t)
    ranked.sort(key=lambda t: (t["rank"], -len(t["records"])))
    if len(ranked) > keep:
        extra = ", ".join(f"a {t['side']} hand in {len(t['records'])} frames" for t in ranked[keep:])
        warnings.append(
            f"{len(ranked)} hand tracks in the file; kept {keep} (the most seen of each side first), dropped "
            f"{len(ranked) - keep} ({extra}); ask for more hands to keep them"
        )
        ranked = ranked[:keep]
    keys: list[str | None] = [None] * len(records)
    for side in ("right", "left"):
        own = sorted((t for t in ranked if t["side"] == side), key=lambda t: t["rank"])
        for n, t in enumerate(own):
            for i in t["records"]:
                keys[i] = track_key(side, n)
    return keys, warnings


def _by_id(records, idx) -> list[list[int]]:
    groups: dict = {}
    for i in idx:
        groups.setdefault(records[i].track_id, []).append(i)
    return list(groups.values())


def _by_position(records, idx) -> list[list[int]]:
    """Frame-by-frame nearest-first linking of one side's records (see the module's text)."""
    live: list[dict] = []  # last frame, centre, size, members
    done: list[dict] = []
    frames = sorted({records[i].frame for i in idx})
    for frame in frames:
        now = sorted((i for i in idx if records[i].frame == frame), key=lambda i: -records[i].score)
        still = []
        for t in live:
            (done if frame - t["frame"] > MAX_GAP_FRAMES else still).append(t)
        live = still
        pairs = []
        for ti, t in enumerate(live):
            gate = GATE_SIZES * np.sqrt(frame - t["frame"])
            for i in now:
                r = records[i]
                d = float(np.linalg.norm(r.centre - t["centre"])) / (0.5 * (r.size + t["size"]))
                if d <= gate:
                    pairs.append((d, ti, i))
        taken_t, taken_r = set(), set()
        for _, ti, i in sorted(pairs):
            if ti in taken_t or i in taken_r:
                continue
            taken_t.add(ti)
            taken_r.add(i)
            t = live[ti]
            t.update(frame=frame, centre=records[i].centre, size=records[i].size)
            t["members"].append(i)
        for i in now:
            if i not in taken_r:
                r = records[i]
                live.append({"frame": frame, "centre": r.centre, "size": r.size, "members": [i]})
    return [t["members"] for t in done + live]


def _one_per_frame(records, members, warnings, side) -> list[int]:
    """A track's records with one per frame (two in a frame: a second detection; the higher score stays)."""
    best: dict[int, int] = {}
    for i in members:
        f = records[i].frame
        if f in best:
            warnings.append(f"frame {f}: two {side} hands of one track; kept the one with the higher score")
            if records[best[f]].score >= records[i].score:
                continue
        best[f] = i
    return sorted(best.values(), key=lambda i: records[i].frame)


def drop_duplicates(records: list[HandRecord], warnings: list[str]) -> list[bool]:
    """Which records to keep: of two same-side records nearly on top of each other in one frame (a hand
    detected twice), the lower score is dropped."""
    keep = [True] * len(records)
    order = sorted(range(len(records)), key=lambda i: (records[i].frame, -records[i].score))
    for a, i in enumerate(order):
        if not keep[i]:
            continue
        ri = records[i]
        for j in order[a + 1 :]:
            rj = records[j]
            if rj.frame != ri.frame:
                break
            if keep[j] and rj.side == ri.side:
                d = float(np.linalg.norm(ri.centre - rj.centre)) / (0.5 * (ri.size + rj.size))
                if d < DUPLICATE_SIZES:
                    keep[j] = False
                    warnings.append(f"frame {rj.frame}: the {rj.side} hand twice; kept the one with the higher score")
    return keep
