"""Tracks of any number of hands (inference/tracks.py): the named steps, keys per side, re-identification
of a hand that comes back with a new id, and the --hands limit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from handcap.inference.tracks import (
    Observation,
    assign_hands,
    build_tracks,
    collect_observations,
    segment_conflicts,
)


def _obs(track_id, p_right, x, presence=0.9):
    kp2d = np.stack([np.linspace(100, 160, 21) + x, np.linspace(300, 360, 21)], -1)
    return SimpleNamespace(
        track_id=track_id,
        kp2d=kp2d,
        world=np.random.default_rng(track_id).normal(0, 0.03, (21, 3)),
        presence=presence,
        side="right" if p_right >= 0.5 else "left",
        side_score=max(p_right, 1 - p_right),
        p_right=p_right,
    )


def _frames(per_frame):
    return [SimpleNamespace(frame_index=i, image_size=(1280, 720), hands=h) for i, h in enumerate(per_frame)]


def crowd(frames=12):
    """Two people: right hands at x 0 and x 600, a left hand at x 300. The right hand at x 600 is lost in
    frames 5-6 and comes back with a new id (7); the one at x 0 is seen less surely (summed presence 7.2 vs 9.0)."""
    per_frame = []
    for f in range(frames):
        hands = [_obs(0, 0.9, 0, 0.6), _obs(1, 0.1, 300)]
        if f < 5:
            hands.append(_obs(2, 0.95, 600))
        elif f > 6:
            hands.append(_obs(7, 0.95, 603))
        per_frame.append(hands)
    return _frames(per_frame)


def test_steps_collect_conflicts_and_assign():
    results = crowd()
    segments, nan_obs = collect_observations(results)
    assert nan_obs == 0 and sorted(segments) == [0, 1, 2, 7]
    assert isinstance(segments[0][3], Observation) and len(segments[2]) == 5 and len(segments[7]) == 5
    conflicts = segment_conflicts(segments)
    assert conflicts[2] == {0, 1} and 7 not in conflicts[2]
    groups = assign_hands(segments, conflicts, max_hands=4)
    # segment 7 joins segment 2 (same side, never seen together, wrist 3 px from where 2 was last)
    assert sorted((side, sorted(t)) for side, t in groups) == [("left", [1]), ("right", [0]), ("right", [2, 7])]


def test_any_number_of_hands_with_keys_per_side():
    ts = build_tracks(crowd(), max_hands=4)
    assert [h.key for h in ts.hands] == ["right", "right_2", "left"]
    assert [h.side for h in ts.hands] == ["right", "right", "left"]
    strong, weak = ts.hands[0], ts.hands[1]
    assert strong.track_ids == [2, 7] and weak.track_ids == [0]  # the surer right hand is "right"
    assert strong.valid.tolist() == [True] * 5 + [False] * 2 + [True] * 5 and weak.valid.all()
    assert np.allclose(strong.kp2d[8, :, 0].min(), 703) and np.allclose(weak.kp2d[8, :, 0].min(), 100)
    assert "right hand missing in frames 5-6 (2 frame(s)): interpolated, marked invalid" in ts.warnings
    # --hands 2 keeps the two strongest; up to 2 hands, segments are two-coloured as before
    two = build_tracks(crowd(), max_hands=2)
    assert len(two.hands) <= 2 and [h.key for h in two.hands] == [h.side for h in two.hands]
    with pytest.raises(ValueError, match="max_hands"):
        build_tracks(crowd(), max_hands=0)


def test_dropped_hands_are_named():
    ts = build_tracks(crowd(), max_hands=3)
    assert len(ts.hands) == 3 and not any("dropped" in w for w in ts.warnings)
    one = build_tracks(_frames([[_obs(0, 0.9, 0), _obs(1, 0.1, 300, 0.5)]] * 3), max_hands=1)
    assert [h.key for h in one.hands] == ["right"]
    assert any(w.startswith("--hands 1: kept the right hand, dropped the left hand") for w in one.warnings)
