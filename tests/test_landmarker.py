"""HandLandmarker end to end on the shipped weights: real photos and video from ../shared/data (skipped when
absent), generated images without hands, huge images, bad inputs, tracking identities and chunked lanes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
from handcap.inference.nets import ASSET_PATH
from handcap.inference.roi import MASK_GREY, mask_hands
from handcap.inference.sources import SourceError, open_source, read_image

from .conftest import shared_path

pytestmark = pytest.mark.skipif(not ASSET_PATH.is_file(), reason=f"needs the converted weights {ASSET_PATH}")


@pytest.fixture(scope="module")
def nets():
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return HandLandmarker(LandmarkerOptions(device="cpu")).nets


def make(nets, **kw) -> HandLandmarker:
    return HandLandmarker(LandmarkerOptions(device="cpu", **kw), nets=nets)


def test_images_without_hands_give_empty_results(nets):
    h, w = 480, 640
    blank = np.zeros((h, w, 3), np.uint8)
    gradient = np.dstack(np.broadcast_arrays(*np.mgrid[0:h, 0:w] * 255 // [[[h]], [[w]]], 128)).astype(np.uint8)
    huge = cv2.resize(gradient, (8000, 6000), interpolation=cv2.INTER_LINEAR)
    results = make(nets).process_images([blank, gradient, huge])
    assert [r.hands for r in results] == [[], [], []]
    assert [r.image_size for r in results] == [(w, h), (w, h), (8000, 6000)]


def test_huge_image_results_in_original_pixels(nets):
    small = read_image(shared_path("photos", "two_hands_woman.jpg"))
    scale = 6000 / small.shape[0]
    big = np.full((6000, 8000, 3), 255, np.uint8)
    up = cv2.resize(small, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    big[:, : up.shape[1]] = up[:6000, :8000]
    lm = make(nets)
    ref, res = lm.process_image(small), lm.process_image(big)
    assert len(ref.hands) == 2 and len(res.hands) == 2 and res.image_size == (8000, 6000)
    for a in ref.hands:
        b = min(res.hands, key=lambda h: np.linalg.norm(h.kp2d[0] / scale - a.kp2d[0]))
        err = np.linalg.norm(b.kp2d / scale - a.kp2d, axis=1).mean()
        assert err < 0.05 * a.roi[2], f"{err:.1f} px at the small image's scale"
        assert b.side == a.side


def _cmu(name):
    meta = json.loads(shared_path("cmu_handlabels_2d", "hands.json").read_text())
    entry = next(e for e in meta["images"] if e["file"].endswith(name))
    return read_image(shared_path("cmu_handlabels_2d", entry["file"])), entry["hands"][0]


def test_true_side_for_camera_footage_and_mirrored_option(nets):
    plain, mirrored = make(nets), make(nets, mirrored_input=True)
    for name in ("_000154_l.jpg", "_000154_r.jpg", "_000158_r.jpg"):
        rgb, gt = _cmu(name)
        kp = np.asarray(gt["kp2d"])
        flipped_kp = np.stack([rgb.shape[1] - kp[:, 0], kp[:, 1]], axis=1)
        for lm, image, truth in ((plain, rgb, kp), (mirrored, rgb[:, ::-1], flipped_kp)):  # camera, selfie view
            hands = lm.process_image(image).hands
            hand = min(hands, key=lambda h: np.linalg.norm(h.kp2d - truth, axis=1).mean())
            assert np.linalg.norm(hand.kp2d - truth, axis=1).mean() < 15
            assert hand.side == gt["side"] and hand.side_score > 0.8


def test_accuracy_and_camera_aligned_world_on_ge2019(nets):
    meta = json.loads(shared_path("ge2019_dev", "hands.json").read_text())
    entries = meta["images"][:12]
    rgbs = [read_image(shared_path("ge2019_dev", e["file"])) for e in entries]
    lm = make(nets, max_hands=1)
    results = lm.process_images(rgbs)
    errs = []
    for e, r in zip(entries, results, strict=True):
        assert len(r.hands) == 1
        errs.append(np.linalg.norm(r.hands[0].kp2d - np.asarray(e["hands"][0]["kp2d"]), axis=1).mean())
    assert np.mean(errs) < 8.0, errs
    # Rotating the photo by 90 degrees rotates the 2D landmarks with it, and the world landmarks (camera-
    # aligned, x right, y down) about the camera axis by the same angle.
    for rgb, r in zip(rgbs[:4], results[:4], strict=True):
        rot = np.ascontiguousarray(np.rot90(rgb, k=-1))  # clockwise on screen
        [h] = lm.process_image(rot).hands
        h0 = r.hands[0]
        expect2d = np.stack([rgb.shape[0] - 1 - h0.kp2d[:, 1], h0.kp2d[:, 0]], axis=1)
        assert np.linalg.norm(h.kp2d - expect2d, axis=1).mean() < 6.0
        w0 = h0.world - h0.world.mean(0)
        expect3d = np.stack([-w0[:, 1], w0[:, 0], w0[:, 2]], axis=1)
        assert np.linalg.norm((h.world - h.world.mean(0)) - expect3d, axis=1).mean() < 0.008  # metres


def test_mask_hands_paints_out_grown_hulls_only():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 200, 3), np.uint8)
    kp = rng.uniform((40, 30), (80, 70), (1, 21, 2))  # inside the box x 40..80, y 30..70 ...
    kp[0, :4] = [(40, 30), (80, 30), (80, 70), (40, 70)]  # ... spanning all of it
    out = mask_hands(image, kp, grow=0.25)  # grown by 10 px
    assert out.shape == image.shape and out is not image
    assert (out[50, 60] == MASK_GREY).all()  # inside the hull
    assert (out[30, 33] == MASK_GREY).all()  # within 10 px of the hull's corner (40, 30)
    assert (out[5:15, :] == image[5:15, :]).all() and (out[:, 100:] == image[:, 100:]).all()  # far away: untouched
    assert (mask_hands(image, np.zeros((0, 21, 2))) == image).all()


def _synthetic_hand(x: float) -> np.ndarray:
    """(21, 2) upright open hand, wrist at (x, 400), fingers up (image pixels)."""
    kp = np.zeros((21, 2))
    kp[1:5] = [(-20 - 10 * k, -15 - 12 * k) for k in range(4)]  # thumb
    for f, dx in enumerate((-30, -10, 10, 28)):
        kp[5 + 4 * f : 9 + 4 * f] = [(dx, -60 - 20 * k) for k in range(4)]
    return kp + (x, 400)


def test_tracker_anchors_an_entangled_hand_and_drops_slid_views():
    from handcap.inference.roi import landmark_rois
    from handcap.inference.tracking import Candidate, TrackerState

    right, left = _synthetic_hand(300), _synthetic_hand(380)  # ROIs overlap (IoU ~ 0.3), wrists 80 px apart
    st = TrackerState(max_hands=2)

    def step(f, kps, p_right, palms=()):
        """One frame: tracked hand t shows landmarks kps[t] with P(right) p_right[t]; palms are new hands."""
        tracked = st.candidates([])
        cands = tracked + [Candidate(landmark_rois(kp[None])[0], None, 0.9) for kp, _ in palms]
        kp = np.stack([kps[c.track_id] for c in tracked] + [kp for kp, _ in palms])
        pr = np.array([p_right[c.track_id] for c in tracked] + [p for _, p in palms])
        return {a.track_id: a for a in st.update(f, cands, kp, np.ones(len(cands)), pr, 0.5)}, cands

    step(0, {}, {}, palms=[(right, 0.95), (left, 0.05)])
    for f in range(1, 6):  # tracked until both sides are settled
        acc, _ = step(f, {0: right, 1: left}, {0: 0.95, 1: 0.05})
    assert sorted(acc) == [0, 1] and st.tracks[0].side == "right" and st.tracks[1].side == "left"
    clean_roi = st.tracks[0].roi.copy()
    assert not len(st.masked_search())
    # Entangled: the right hand's view claims "left" next to the settled left hand but stays on its own hand.
    acc, _ = step(6, {0: right + (4, 3), 1: left}, {0: 0.05, 1: 0.05})
    assert sorted(acc) == [0, 1] and acc[0].p_right == 0.05  # kept, with its honest handedness
    assert np.array_equal(st.tracks[0].roi, clean_roi) and st.tracks[0].contested == 1  # anchored
    np.testing.assert_array_equal(st.masked_search(), [left])  # painted out to look for the right palm
    # A view that slid onto the left hand is dropped, yet the hand is looked for again on its anchor ROI.
    acc, _ = step(7, {0: left + (30, 0), 1: left}, {0: 0.05, 1: 0.05})
    assert sorted(acc) == [1]
    acc, cands = step(8, {0: right, 1: left}, {0: 0.9, 1: 0.05})
    assert sorted(acc) == [0, 1] and np.array_equal(next(c.roi for c in cands if c.track_id == 0), clean_roi)
    assert st.tracks[0].contested == 0 and not len(st.masked_search())  # its side agrees again: released


def test_bad_inputs_and_options(nets, tmp_path):
    lm = make(nets)
    (tmp_path / "clip.mp4").write_text("not a video")
    with pytest.raises(SourceError, match="clip.mp4"):
        lm.process_source(tmp_path / "clip.mp4")
    with pytest.raises(SourceError, match="zero size"):
        lm.process_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="max_hands"):
        LandmarkerOptions(max_hands=0).validate()
    with pytest.raises(ValueError, match="refine"):
        LandmarkerOptions(refine="sometimes").validate()


@pytest.fixture(scope="module")
def two_hands_clip():
    return shared_path("videos", "two_hands_counting_720p.mp4")


@pytest.fixture(scope="module")
def tracked_clip(nets, two_hands_clip):
    """The whole clip tracked once (lanes=1 on CPU): (results, progress calls), shared by the tests below."""
    calls = []
    results = make(nets).process_source(two_hands_clip, progress=lambda d, t: calls.append((d, t)))
    return results, calls


def _tracks(results) -> dict[int, dict[int, object]]:
    tracks: dict[int, dict[int, object]] = {}
    for r in results:
        assert len({h.track_id for h in r.hands}) == len(r.hands)
        for h in r.hands:
            tracks.setdefault(h.track_id, {})[r.frame_index] = h
    return tracks


@pytest.mark.slow
def test_video_tracking_keeps_identities(tracked_clip):
    results, calls = tracked_clip
    assert len(results) == 210 and calls[-1] == (210, 210)
    assert [r.frame_index for r in results] == list(range(210))
    two = np.mean([len(r.hands) == 2 for r in results])
    assert two >= 0.95, f"two hands in only {100 * two:.1f} % of frames"
    tracks = _tracks(results)
    assert len(tracks) == 2, f"hands split into tracks {sorted(tracks)}"
    sides = {}
    for tid, obs in tracks.items():
        [side] = {h.side for h in obs.values()}
        sides[side] = tid
        other = next(o for t, o in tracks.items() if t != tid)
        for f, h in obs.items():
            # A frame whose own handedness disagrees with the track is only accepted while the two hands are
            # entangled (next to each other, the landmark model's handedness follows the hand filling the
            # crop); its wrist must then lie on this hand: nearer this track's wrist of its last recent frame
            # than the other track's wrist in that frame.
            if h.side_score <= 0.5:
                g = other.get(f)
                assert g is not None and np.linalg.norm(h.kp2d[0] - g.kp2d[0]) < h.roi[2], f"{tid} alone at {f}"
                last = max((k for k in range(f - 4, f) if k in obs and k in other), default=None)
                assert last is not None, f"track {tid} disagrees at {f} right after a gap"
                d_own = np.linalg.norm(h.kp2d[0] - obs[last].kp2d[0])
                assert d_own < np.linalg.norm(h.kp2d[0] - other[last].kp2d[0]), f"track {tid} at {f}"
            if f - 1 in obs:  # the wrist moves continuously
                assert np.linalg.norm(h.kp2d[0] - obs[f - 1].kp2d[0]) < 0.2 * h.roi[2], f"track {tid} jumps at {f}"
        assert sum(h.side_score <= 0.5 for h in obs.values()) <= 15, f"track {tid}: too many disagreeing frames"
    assert set(sides) == {"left", "right"}
    # Facing the camera, the person's left hand is on the image's right.
    mean_x = {s: np.mean([h.kp2d[0, 0] for h in tracks[t].values()]) for s, t in sides.items()}
    assert mean_x["left"] > mean_x["right"]


@pytest.mark.slow
def test_video_tracking_keeps_intertwined_hands(tracked_clip):
    """Issue #3: in frames 180-187 the hands are intertwined (the right hand lies across the left one); both
    stay visible and must both be reported, each on its own hand, without swapping or doubling up."""
    results, _ = tracked_clip
    few = [r.frame_index for r in results if len(r.hands) < 2]
    assert len(few) <= 4, f"fewer than two hands in frames {few}"
    tracks = _tracks(results)
    by_side = {next(iter(obs.values())).side: obs for obs in tracks.values()}
    assert sorted(by_side) == ["left", "right"]
    for r in results:
        if len(r.hands) < 2:
            continue
        a, b = r.hands
        size = min(a.roi[2], b.roi[2])
        # Two tracks never show the same physical hand: wrists and whole hands stay well apart.
        assert np.linalg.norm(a.kp2d[0] - b.kp2d[0]) > 0.2 * size, f"duplicate hand at {r.frame_index}"
        assert np.linalg.norm(a.kp2d - b.kp2d, axis=1).mean() > 0.12 * size, f"duplicate hand at {r.frame_index}"
        # No identity swap: the person faces the camera and her hands never cross in this clip, so the left
        # hand's wrist lies right of the right hand's in every frame (by >= 125 px at the closest, frame 185).
        left, right = by_side["left"][r.frame_index], by_side["right"][r.frame_index]
        assert left.kp2d[0, 0] - right.kp2d[0, 0] > 60, f"sides swapped at {r.frame_index}"


@pytest.mark.slow
def test_entangled_frames_are_down_weighted_in_the_tracks(tracked_clip):
    """Where the right hand's crop reads as a left hand while the left hand is seen (intertwined, frames
    180-186), its landmarks are doubtful: the tracks mark those frames and lower their confidence below
    DOUBTFUL_CONFIDENCE, so smoothing replaces them and the overlay readout reports them apart."""
    from handcap.core.capture import DOUBTFUL_CONFIDENCE
    from handcap.inference.fitting.tracks import build_tracks

    results, _ = tracked_clip
    ts = build_tracks(results)
    hands = {h.side: h for h in ts.hands}
    contested = np.flatnonzero(hands["right"].contested)
    assert contested.size and contested.min() >= 178 and contested.max() <= 188, contested
    assert (hands["right"].frame_conf[contested] < DOUBTFUL_CONFIDENCE).all()
    assert not hands["left"].contested.any()
    sure = hands["right"].valid & ~hands["right"].contested
    assert (hands["right"].frame_conf[sure] >= DOUBTFUL_CONFIDENCE).all()
    assert any("right hand:" in w and "read as the left hand" in w for w in ts.warnings)


@pytest.mark.slow
def test_lanes_stitch_into_the_same_tracks(nets, two_hands_clip, tracked_clip):
    frames = np.stack([f for _, f in open_source(two_hands_clip, frames=range(0, 72))])
    # One lane over these 72 frames: the module's one-lane tracking of the whole clip, first 72 frames. One lane
    # tracks frame by frame from the start (nothing later changes an earlier frame's hands; checked equal, sides
    # and track ids included, to a separate one-lane run of the 72 frames), so it is that run without redoing it.
    one = tracked_clip[0][:72]
    assert [r.frame_index for r in one] == list(range(72))
    two = make(nets, lanes=2).process_source(frames)
    assert [r.frame_index for r in two] == list(range(72))
    side_of = lambda res: {h.track_id: h.side for r in res for h in r.hands}  # noqa: E731
    assert len(side_of(two)) == 2 and sorted(side_of(two).values()) == ["left", "right"]
    diffs = []
    for a, b in zip(one, two, strict=True):
        assert len(a.hands) == len(b.hands)
        for ha in a.hands:
            hb = next(h for h in b.hands if h.side == ha.side)
            diffs.append(np.linalg.norm(ha.kp2d - hb.kp2d, axis=1).mean())
    assert np.mean(diffs) < 3.0 and np.max(diffs) < 25.0


def test_image_sequence_source_is_tracked(nets, tmp_path):
    src = open_source(shared_path("videos", "two_hands_counting_720p.mp4"), frames=range(30, 36))
    for i, f in src:
        cv2.imwrite(str(tmp_path / f"frame_{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    results = list(make(nets).iter_source(str(tmp_path / "frame_%04d.png")))
    assert [r.frame_index for r in results] == list(range(6))
    assert all(len(r.hands) == 2 for r in results)
    assert {h.track_id for r in results for h in r.hands} == {0, 1}
