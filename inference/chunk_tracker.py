"""The landmark tracker's state handed from one farm chunk to the next, as plain arrays (no pickle).

Why: the tracker proposes each frame's crops from the previous frame's landmarks, and that loop does not
forget where it started: a chunk whose tracker starts afresh (or from a warm-up of earlier frames) keeps
landmarks pixels away from the whole clip's to its end (docs/farm.md has the measurement). A chunk that goes
on from the exact state its predecessor had before the chunk's first frame computes the same landmarks as a
capture of the whole clip, bit for bit, on any machine with the same networks.

``tracker_to_arrays`` reads a ``tracking.TrackerState`` into (JSON meta, {name: array}) and
``tracker_from_arrays`` rebuilds it; every field of the state and of its tracks is carried generically, so a
field added to them travels without a change here (arrays keep their dtype, scalars their Python type).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

#: Prefix of the state's arrays in a chunk file.
PREFIX = "tracker."


class TrackerStateError(ValueError):
    """A stored tracker state that cannot be rebuilt (the message says why)."""


def tracker_to_arrays(state) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of ``state``. Reads the next track id from its counter and gives the state an equal
    fresh counter (an ``itertools.count`` cannot be read otherwise), so the state goes on unchanged."""
    next_id = next(state.ids)
    state.ids = itertools.count(next_id)
    scalars = {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name not in ("ids", "tracks")}
    tracks = list(state.tracks.values())  # insertion order: the tracker iterates its tracks in this order
    names = [f.name for f in dataclasses.fields(type(tracks[0]))] if tracks else []
    arrays, kinds = {}, {}
    for name in names:
        values = [getattr(t, name) for t in tracks]
        is_array = isinstance(values[0], np.ndarray | np.generic)  # numpy scalars keep their dtype too
        arrays[PREFIX + name] = np.stack(values) if is_array else np.array(values)
        kinds[name] = "array" if is_array else type(values[0]).__name__
    meta = {"state": scalars, "next_id": int(next_id), "keys": [int(k) for k in state.tracks], "track_fields": kinds}
    return meta, arrays


def tracker_from_arrays(meta: dict, arrays: dict[str, np.ndarray]):
    """The ``TrackerState`` that ``tracker_to_arrays`` read (TrackerStateError when it does not fit this
    version's tracker)."""
    from .tracking import Track, TrackerState

    track_names = {f.name for f in dataclasses.fields(Track)}
    kinds = meta["track_fields"]
    if kinds and set(kinds) != track_names:
        raise TrackerStateError(f"tracker state of another HandCap version (track fields {sorted(kinds)})")
    try:
        state = TrackerState(**meta["state"], ids=itertools.count(int(meta["next_id"])))
    except TypeError as exc:
        raise TrackerStateError(f"tracker state of another HandCap version ({exc})") from None
    cast = {"int": int, "float": float, "bool": bool, "NoneType": lambda v: None}
    for row, key in enumerate(meta["keys"]):
        values = {}
        for name, kind in kinds.items():
            column = arrays.get(PREFIX + name)
            if column is None or len(column) != len(meta["keys"]):
                raise TrackerStateError(f"tracker state entry {name} is missing or has the wrong length")
            if kind == "array":
                values[name] = column[row].copy()
            elif kind in cast:
                values[name] = cast[kind](column[row].item())
            else:
                raise TrackerStateError(f"tracker state field {name} has an unknown kind {kind!r}")
        state.tracks[int(key)] = Track(**values)
    return state
