"""The chunk plan, chunk files and the merge of chunks (inference/chunks.py), on their own."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from handcap.inference.chunks import (
    ChunkError,
    ChunkResult,
    ChunkSpec,
    chunk_from_bytes,
    chunk_to_bytes,
    merge_chunks,
    plan_chunks,
)
from handcap.inference.landmarker import FrameResult, HandObservation

from .conftest import REPO

# Two fits of the same landmarks (even in one process) may end a rounding step apart: MKL picks its kernels by
# memory alignment (measured: 0.83 um at most; see inference/handmodel/model.py, ``owned``).
RUN_TOL_MM = 0.01


def test_plan_covers_the_clip_with_the_overlap_between_neighbours():
    plan = plan_chunks(range(90), 60, 15)
    assert [(c.start, c.stop) for c in plan] == [(0, 60), (45, 90)]
    assert [(c.start, c.stop) for c in plan_chunks(range(210), 60, 15)] == [
        (0, 60),
        (45, 105),
        (90, 150),
        (135, 195),
        (180, 210),
    ]
    assert [(c.start, c.stop) for c in plan_chunks(range(100), 300, 30)] == [(0, 100)]
    # stride 2 from frame 10: chunks are in captured frames, ranges in source frames
    plan = plan_chunks(range(10, 50, 2), 8, 2)
    assert [(c.start, c.stop) for c in plan] == [(10, 25), (22, 37), (34, 49)]
    assert all(c.count == len(plan) for c in plan) and [c.index for c in plan] == [0, 1, 2]


@pytest.mark.parametrize(
    ("frames", "overlap", "why"), [(1, 0, "chunk length"), (60, 31, "overlap"), (60, 0, "overlap")]
)
def test_bad_plans_are_refused(frames, overlap, why):
    with pytest.raises(ChunkError, match=why):
        plan_chunks(range(100), frames, overlap)


def _hand(track, f, x0, p_right):
    rng = np.random.default_rng(1000 * track + f)
    kp = np.array([x0 + 3.0 * f, 400.0]) + rng.normal(0, 30, (21, 2))
    world = rng.normal(0, 0.03, (21, 3))
    side = "right" if p_right >= 0.5 else "left"
    roi = np.array([kp[:, 0].mean(), kp[:, 1].mean(), 220.0, 0.1])
    return HandObservation(track, kp, rng.normal(0, 5, 21), world, 0.95, side, max(p_right, 1 - p_right), roi, p_right)


def _clip(n=90):
    """Two hands far apart over n frames; the right one is lost in frames 50-52 and comes back as track 2."""
    out = []
    for f in range(n):
        hands = [_hand(1, f, 900.0, 0.1)]
        if not 50 <= f < 53:
            hands.insert(0, _hand(0 if f < 50 else 2, f, 200.0, 0.85))
        out.append(FrameResult(f, (1280, 720), hands))
    return out


def _chunks(results, plan, renumber=True):
    """The clip's results cut into the plan's chunks, track ids renumbered per chunk as a fresh tracker would."""
    out = []
    for c in plan:
        rs = copy.deepcopy([r for r in results if c.start <= r.frame_index < c.stop])
        if renumber:
            ids = sorted({h.track_id for r in rs for h in r.hands}, reverse=True)  # another order than the clip's
            for r in rs:
                for h in r.hands:
                    h.track_id = ids.index(h.track_id)
        out.append(ChunkResult("clip.mp4", 30.0, (1280, 720), c, plan, {"source": "clip.mp4"}, rs))
    return out


def _by_side(results):
    return {(r.frame_index, h.side): h for r in results for h in r.hands}


def test_chunk_files_round_trip_bit_for_bit_and_bad_ones_are_refused():
    plan = plan_chunks(range(90), 30, 10)
    chunk = _chunks(_clip(), plan)[1]
    back = chunk_from_bytes(chunk_to_bytes(chunk))
    assert (back.source, back.fps, back.image_size, back.chunk, back.plan) == (
        "clip.mp4",
        30.0,
        (1280, 720),
        plan[1],
        plan,
    )
    assert [r.frame_index for r in back.frames] == list(range(20, 50))
    for a, b in zip(chunk.frames, back.frames, strict=True):
        assert [h.track_id for h in a.hands] == [h.track_id for h in b.hands]
        for ha, hb in zip(a.hands, b.hands, strict=True):
            for name in ("kp2d", "kp_z", "world", "roi", "presence", "p_right"):
                np.testing.assert_array_equal(getattr(ha, name), getattr(hb, name))
    with pytest.raises(ChunkError, match="not a HandCap chunk file"):
        chunk_from_bytes(b"PK\x03\x04 truncated", "x.npz")


def test_merge_of_identical_evidence_is_the_clip_itself_with_one_identity_per_hand():
    clip = _clip()
    plan = plan_chunks(range(90), 30, 10)
    merged = merge_chunks(list(reversed(_chunks(clip, plan))))  # any order
    assert [r.frame_index for r in merged] == list(range(90))
    ref = _by_side(clip)
    got = _by_side(merged)
    assert sorted(got) == sorted(ref)
    for key, h in ref.items():
        np.testing.assert_array_equal(got[key].kp2d, h.kp2d)
        np.testing.assert_array_equal(got[key].world, h.world)
    # each physical hand keeps one clip track across every seam; the re-found right hand is a new segment
    left = {got[(f, "left")].track_id for f in range(90)}
    right_before = {got[(f, "right")].track_id for f in range(50)}
    right_after = {got[(f, "right")].track_id for f in range(53, 90)}
    assert len(left) == len(right_before) == len(right_after) == 1
    assert len(left | right_before | right_after) == 3


def test_overlap_blends_from_the_earlier_chunk_to_the_later_one():
    clip = _clip()
    plan = plan_chunks(range(90), 30, 10)
    chunks = _chunks(clip, plan)
    for r in chunks[1].frames:  # the later chunk sees every hand 2 px further right
        for h in r.hands:
            h.kp2d = h.kp2d + [2.0, 0.0]
    got = _by_side(merge_chunks(chunks))
    ref = _by_side(clip)
    shift = [float(got[(f, "left")].kp2d[0, 0] - ref[(f, "left")].kp2d[0, 0]) for f in range(18, 52)]
    # frames 20-29 are shared by chunks 0 and 1: weights 1/11 .. 10/11 of the later chunk; 40-49 by chunks 1, 2
    np.testing.assert_allclose(shift[:2], 0.0, atol=1e-9)
    np.testing.assert_allclose(shift[2:12], 2.0 * np.arange(1, 11) / 11, atol=1e-9)
    np.testing.assert_allclose(shift[12:22], 2.0, atol=1e-9)
    np.testing.assert_allclose(shift[22:32], 2.0 * (1 - np.arange(1, 11) / 11), atol=1e-9)


def test_missing_duplicate_or_foreign_chunks_are_refused():
    plan = plan_chunks(range(90), 30, 10)
    chunks = _chunks(_clip(), plan)
    with pytest.raises(ChunkError, match=r"chunk\(s\) 3 of 4 missing"):
        merge_chunks([chunks[0], chunks[1], chunks[3]])
    with pytest.raises(ChunkError, match="given twice"):
        merge_chunks([*chunks, chunks[2]])
    other = copy.deepcopy(chunks[2])
    other.source = "another.mp4"
    with pytest.raises(ChunkError, match="different clips"):
        merge_chunks([chunks[0], chunks[1], other, chunks[3]])
    with pytest.raises(ChunkError, match="not in its own plan"):
        stray = copy.deepcopy(chunks[3])
        stray.chunk = ChunkSpec(3, 4, 61, 90)
        merge_chunks([chunks[0], chunks[1], chunks[2], stray])


@pytest.mark.slow
def test_merged_capture_of_the_sample_clip_matches_the_whole_clip_capture():
    """Real landmarks of the sample clip. Cut into chunks, they merge into exactly the whole clip's capture.
    Captured chunk by chunk, each chunk going on from its predecessor's tracker state after its last frame
    (read back from the predecessor's chunk file), the merged capture is the whole clip's: its landmarks and
    estimated camera bit for bit, its fit to a rounding step (``RUN_TOL_MM``); chunks whose trackers start
    afresh keep the hands' identities."""
    pytest.importorskip("torch")
    from handcap.inference.capture_job import CaptureOptions, capture_from_landmarks
    from handcap.inference.chunks import capture_chunk, merged_capture
    from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
    from handcap.inference.seams import seam_deviation
    from handcap.inference.sources import open_source

    video = str(REPO / "assets" / "sample" / "two_hands.mp4")
    options = CaptureOptions(source=video, device="cpu")  # the focal length estimated from the hands
    landmarker = HandLandmarker(LandmarkerOptions(max_hands=2, device="cpu"))
    src = open_source(video)
    full = landmarker.process_source(src)
    whole = capture_from_landmarks(copy.deepcopy(full), video, src.fps, src.size, options).capture
    plan = plan_chunks(src.indices, 40, 10)  # 3 chunks: two seams
    cut = []
    for c in _chunks(full, plan):
        cut.append(ChunkResult(video, src.fps, tuple(src.size), c.chunk, plan, options.to_json(), c.frames))
    same = seam_deviation(whole, merged_capture([chunk_from_bytes(chunk_to_bytes(c)) for c in cut]).capture, plan)
    assert same.identity_changes == 0 and same.frames == 180
    assert max(same.off_seam_mm + same.at_seam_mm) <= RUN_TOL_MM, same
    chained, previous = [], None
    for c in plan:
        previous = chunk_from_bytes(chunk_to_bytes(capture_chunk(options, c, plan, landmarker, previous=previous)))
        chained.append(previous)
    assert [c.follows for c in chained] == [False, True, True]
    # a chained chunk computes only the frames after its predecessor's range
    assert [c.frames[0].frame_index for c in chained] == [0, plan[0].stop, plan[1].stop]
    assert chained[-1].handoff is None and all(c.handoff is not None for c in chained[:-1])
    merged = merged_capture(chained).capture
    dev = seam_deviation(whole, merged, plan)
    assert dev.identity_changes == 0 and max(dev.off_seam_mm + dev.at_seam_mm) <= RUN_TOL_MM, dev
    assert merged.intrinsics == whole.intrinsics
    for side in whole.hands:
        np.testing.assert_array_equal(merged.hands[side].kp2d, whole.hands[side].kp2d)  # the landmarks: bit for bit
        np.testing.assert_allclose(merged.hands[side].beta, whole.hands[side].beta, rtol=0, atol=1e-6)
    with pytest.raises(ChunkError, match="not the predecessor"):
        capture_chunk(options, plan[2], plan, landmarker, previous=chained[0])
    fresh = [capture_chunk(options, c, plan, landmarker=landmarker) for c in plan]
    dev = seam_deviation(whole, merged_capture(fresh).capture, plan)
    assert dev.identity_changes == 0 and dev.frames == 180


def test_tracker_state_round_trips_exactly_and_a_foreign_one_is_refused():
    import dataclasses
    import itertools

    from handcap.inference.chunk_tracker import TrackerStateError, tracker_from_arrays, tracker_to_arrays
    from handcap.inference.tracking import Track, TrackerState

    rng = np.random.default_rng(3)
    state = TrackerState(2, ids=itertools.count(7))
    for tid, ev in ((5, 0.1 + 1e-13), (2, -4.25)):  # insertion order 5, 2: the tracker iterates in this order
        kp = rng.normal(300, 50, (21, 2)).astype(np.float32)
        state.tracks[tid] = Track(tid, rng.normal(0, 1, 4), kp, 40 + tid, ev, misses=tid % 2, contested=3)
    meta, arrays = tracker_to_arrays(state)
    assert next(state.ids) == 7  # reading the counter left the state as it was
    back = tracker_from_arrays(meta, arrays)
    assert list(back.tracks) == [5, 2] and next(back.ids) == 7
    for tid, t in state.tracks.items():
        b = back.tracks[tid]
        for f in dataclasses.fields(Track):
            x, y = getattr(t, f.name), getattr(b, f.name)
            assert type(x) is type(y), f.name
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), f.name
            else:
                assert x == y, f.name
    with pytest.raises(TrackerStateError, match="another HandCap version"):
        tracker_from_arrays({**meta, "track_fields": {**meta["track_fields"], "extra": "int"}}, arrays)
    with pytest.raises(TrackerStateError, match="another HandCap version"):
        tracker_from_arrays({**meta, "state": {**meta["state"], "unknown_field": 1}}, arrays)
