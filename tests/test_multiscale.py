"""Multi-scale tiled palm detection (inference/multiscale.py): view geometry, merging across views, the
filter of hands only tiles found, and real photos and video crops from ../shared/data (skipped when
absent): hands found that the full view misses, close-range crops, crops without hands."""

from __future__ import annotations

import numpy as np
import pytest

from handcap.inference import landmarker as landmarker_module
from handcap.inference.detection_sets import close_range_crop, no_hand_crops
from handcap.inference.evaluation import GtHand, evaluate_set, landmarker_predictor, load_annotated_set, match_hands
from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
from handcap.inference.multiscale import (
    FULL_VIEW_ONLY,
    DetectionOptions,
    doubtful_tile_hands,
    landmark_search_rois,
    merge_views,
    plan_views,
    search_grid,
    search_palms,
    view_matrix,
)
from handcap.inference.nets import ASSET_PATH
from handcap.inference.palm import letterbox_matrix
from handcap.inference.sources import open_source, read_image

from .conftest import shared_path


def test_views_cover_the_frame_within_the_budget():
    w, h = 1200, 800
    opts = DetectionOptions()
    views = plan_views(w, h, opts, tiled=True)
    assert np.allclose(view_matrix(views[0]), letterbox_matrix(w, h))  # the full view is the letterbox
    assert views[1] == (-600.0, -800.0, 2400.0)  # coarse: a square twice the long side, centred
    tiles = views[2:]
    for frac in opts.tile_fractions:
        level = [v for v in tiles if np.isclose(v[2], frac * w)]
        assert level, f"no tiles of {frac} of the long side"
        xs, ys = np.meshgrid(np.arange(0, w, 7), np.arange(0, h, 7))
        inside = np.zeros(xs.shape, bool)
        for x0, y0, s in level:
            assert x0 >= -1e-9 and y0 >= -1e-9 and x0 + s <= w + 1e-9 and y0 + s <= h + 1e-9
            inside |= (xs >= x0) & (xs < x0 + s) & (ys >= y0) & (ys < y0 + s)
        assert inside.all()
        # neighbours share at least ``overlap`` of a side
        x_starts = sorted({v[0] for v in level})
        assert max(np.diff(x_starts)) <= (1 - opts.overlap) * frac * w + 1e-6
    assert len(views) <= opts.max_views
    # a tight budget leaves out whole fine levels, never part of one; tiny images get no tiles
    small = plan_views(w, h, DetectionOptions(max_views=20), tiled=True)
    assert {round(v[2]) for v in small[2:]} == {400} and len(small) == 2 + 12
    assert len(plan_views(256, 256, opts, tiled=True)) == 2  # 256 / 3 < min_tile_px: full + coarse only
    assert plan_views(w, h, opts, tiled=False) == views[:1]
    # a lost track's last place: only the tiles overlapping it (and the full and coarse views)
    focus = np.array([[900.0, 600.0, 1000.0, 700.0]])
    near = plan_views(w, h, opts, tiled=True, focus=focus)
    assert 2 < len(near) < len(views) and near[:2] == views[:2]
    assert all(x0 < 1000 and x0 + s > 900 and y0 < 700 and y0 + s > 600 for x0, y0, s in near[2:])
    assert set(near[2:]) == {v for v in tiles if v[0] < 1000 and v[0] + v[2] > 900 and v[1] < 700 and v[1] + v[2] > 600}
    with pytest.raises(ValueError, match="max_views"):
        DetectionOptions(max_views=0).validate()


def _palm(x, y, size, score):
    box = np.array([x - size / 2, y - size / 2, x + size / 2, y + size / 2])
    kp = np.tile([x, y], (7, 1)).astype(float)
    return np.array([score]), box[None], kp[None]


def test_merge_keeps_full_view_palms_and_adds_only_new_whole_ones():
    w, h = 900, 600
    views = [(0.0, -150.0, 900.0), (0.0, 0.0, 300.0), (250.0, 0.0, 300.0)]
    full = _palm(100, 100, 40, 0.9)

    def join(*palms):
        return [np.concatenate(p) for p in zip(*palms, strict=True)]

    # tile a: the full view's palm again (merged away) and a palm at x 280..300 that touches tile a's inner
    # right edge (x = 300): cut, dropped; tile b sees that palm whole, and one more
    tile_a = join(_palm(102, 101, 44, 0.95), _palm(290, 250, 20, 0.8))
    tile_b = join(_palm(300, 250, 30, 0.6), _palm(500, 200, 20, 0.7))
    res = merge_views([full, tile_a, tile_b], views, w, h)
    assert res.views == 3 and res.from_tiles == 2
    assert res.palms[0].score == 0.9 and np.allclose(res.palms[0].box, full[1][0]) and not res.palms[0].from_tiles
    new = res.palms[1:]
    assert [p.from_tiles for p in new] == [True, True]
    assert sorted(round(float(p.box[:2].mean() + p.box[2:].mean()) / 2) for p in new) == [275, 350]
    assert not any(np.isclose(p.score, 0.8) for p in new)  # the cut palm is gone
    assert len(merge_views([full, tile_a, tile_b], views, w, h, max_palms=2).palms) == 2


def test_doubtful_tile_hands():
    base = np.stack(np.meshgrid(np.linspace(0, 40, 7), np.linspace(0, 60, 3)), -1).reshape(21, 2)
    hands = np.stack([base + 100, base + 105, base + 400, base + 700, base * 0.4 + 1000])
    presence = np.array([0.99, 0.8, 0.9, 0.5, 0.95])
    p_right = np.array([0.9, 0.8, 0.1, 0.6, 0.9])
    tiles = np.array([False, True, True, True, True])
    # 1: a second view of hand 0 (same side, overlapping); 2: a separate hand (0.9 x 0.9 >= 0.4);
    # 3: too unsure (0.5 x 0.6 = 0.3); 4: 24 px, too small to read; hand 0 came from the full view
    drop = doubtful_tile_hands(tiles, hands, presence, p_right, 0.4, 32.0)
    assert drop.tolist() == [False, True, False, True, True]
    assert doubtful_tile_hands(tiles, hands, presence, p_right, 0.4).tolist() == [False, True, False, True, False]
    assert not doubtful_tile_hands(np.zeros(5, bool), hands, presence, p_right, 0.4, 32.0).any()


def test_search_grid_covers_the_frame_at_every_rotation():
    w, h = 600, 450
    grid = search_grid(w, h, (0.6, 0.25), 4)
    for frac, (nx, ny) in ((0.6, (3, 2)), (0.25, (7, 5))):
        level = grid[np.isclose(grid[:, 2], frac * w)]
        assert len(level) == nx * ny * 4  # neighbours half a side apart, first and last at the edges
        assert np.isclose(level[:, 0].min(), frac * w / 2) and np.isclose(level[:, 0].max(), w - frac * w / 2)
        assert np.isclose(level[:, 1].min(), frac * w / 2) and np.isclose(level[:, 1].max(), h - frac * w / 2)
        assert np.allclose(np.unique(level[:, 3].round(6)), np.arange(4) * np.pi / 2)
    assert len(search_grid(100, 100, (1.0,), 3)) == 3  # one ROI over the whole frame
    for bad in ({"search_fractions": (0.0,)}, {"search_rotations": 0}, {"search_min_iou": 1.0}):
        with pytest.raises(ValueError):
            DetectionOptions(**bad).validate()


needs_weights = pytest.mark.skipif(not ASSET_PATH.is_file(), reason=f"needs the converted weights {ASSET_PATH}")


@pytest.fixture(scope="module")
def nets():
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return HandLandmarker(LandmarkerOptions(device="cpu")).nets


def make(nets, max_hands=10, detection=None) -> HandLandmarker:
    opts = LandmarkerOptions(
        device="cpu", max_hands=max_hands, tracking=False, detection=detection or DetectionOptions()
    )
    return HandLandmarker(opts, nets=nets)


@needs_weights
def test_full_view_search_is_the_single_view_detector(nets):
    img = read_image(shared_path("photos", "multi_hand_test1.jpg"))
    ref = nets.detect_palms([img], 0.5)[0]
    got = search_palms(nets, [img], FULL_VIEW_ONLY, [False], 0.5)[0]
    assert got.views == 1 and len(got.palms) == len(ref) > 0
    for a, b in zip(got.palms, ref, strict=True):
        assert a.score == b.score and np.array_equal(a.box, b.box) and np.array_equal(a.keypoints, b.keypoints)


@needs_weights
def test_tiles_find_hands_the_full_view_misses(nets):
    data = load_annotated_set(shared_path("panoptic_2d"))
    before = evaluate_set(data, landmarker_predictor(make(nets, 2, FULL_VIEW_ONLY)))
    after = evaluate_set(data, landmarker_predictor(make(nets)))
    assert before.detected_rate == 0.75 and after.detected_rate == 1.0
    assert after.kp2d_err_px < 6.0
    # a photo of two people: the full view finds 2 hands, the tiles add the third (lower left, about 90 px),
    # and every hand kept is a confident one (second views of a found hand are dropped)
    img = read_image(shared_path("photos", "multi_hand_test1.jpg"))
    full, tiled = make(nets, 10, FULL_VIEW_ONLY).process_image(img), make(nets).process_image(img)
    assert len(full.hands) == 2 and len(tiled.hands) == 3 and tiled.palm_views > 40
    new = [h for h in tiled.hands if min(np.linalg.norm(h.kp2d - g.kp2d, axis=-1).mean() for g in full.hands) > 20]
    assert len(new) == 1 and new[0].presence > 0.9 and new[0].kp2d[:, 0].mean() < 250
    assert all(h.presence > 0.9 for h in tiled.hands)


@needs_weights
def test_close_range_crops_found_and_no_hand_crops_empty(nets):
    ref = make(nets, 2, FULL_VIEW_ONLY)
    lm = make(nets)
    frames = [f for i, f in open_source(shared_path("videos", "two_hands_counting_720p.mp4")) if i in (0, 120)]
    crops, empty = 0, []
    for frame in frames:
        hands = np.array([h.kp2d for h in ref.process_image(frame).hands if h.presence >= 0.9])
        assert len(hands) == 2
        for kp in hands:
            for frac in (0.35, 0.7):
                c = close_range_crop(frame, kp, frac, (1280, 720))
                gt = GtHand(None, c.kp2d, np.ones(21, bool), None)
                assert np.isclose(np.ptp(c.kp2d, axis=0).max(), frac * 720)
                preds = [h.kp2d for h in lm.process_image(c.image).hands]
                assert match_hands(preds, [gt])[0] is not None, f"hand at {frac} of the height not found"
                crops += 1
        empty += no_hand_crops(frame, hands)
    assert crops == 8 and len(empty) >= 4
    assert [len(lm.process_image(c).hands) for c, _ in empty] == [0] * len(empty)


@needs_weights
def test_mirrored_and_turned_views_agree_on_real_hands(nets):
    img = read_image(shared_path("photos", "two_hands_woman.jpg"))
    plain = make(nets, 2, FULL_VIEW_ONLY).process_image(img)
    assert len(plain.hands) == 2
    rois = np.stack([h.roi for h in plain.hands])
    a, b = nets.landmarks([img], [rois]), nets.landmarks([img], [rois], flip=True)
    size = np.ptp(a.kp2d, axis=1).max(-1)
    assert (np.linalg.norm(a.kp2d - b.kp2d, axis=-1).mean(1) < 0.05 * size).all()
    assert ((a.left_score > 0.5) == (b.left_score > 0.5)).all() and (b.presence > 0.9).all()
    opts = LandmarkerOptions(device="cpu", tracking=False, detection=FULL_VIEW_ONLY, augment_below=1.0)
    fused = HandLandmarker(opts, nets=nets).process_image(img)
    assert [h.side for h in fused.hands] == [h.side for h in plain.hands]
    for h, p in zip(fused.hands, plain.hands, strict=True):
        assert np.linalg.norm(h.kp2d - p.kp2d, axis=-1).mean() < 0.05 * np.ptp(p.kp2d, axis=0).max()
        assert h.presence > 0.9


@needs_weights
def test_landmark_search_finds_hands_the_palm_detector_misses(nets, monkeypatch):
    # the upper hand on the trumpet's valves and the lower gloved hand: no palm of any view reads as a hand
    # (0 hands by default); the grid search finds each, inside the box a person sees it in
    cases = (("multi_hand_test2.jpg", (216, 36, 408, 198)), ("multi_hand_test4.jpg", (480, 736, 1032, 1280)))
    search = DetectionOptions(landmark_search=True)
    # The grid search is the slow part: rather than running it once here and again inside process_image, record
    # what the landmarker's own (real, unchanged) call returns and check that, for the same image and options.
    calls = []

    def recorded(*args, **kwargs):
        calls.append((args, kwargs, landmark_search_rois(*args, **kwargs)))
        return calls[-1][2]

    monkeypatch.setattr(landmarker_module, "landmark_search_rois", recorded)
    for name, (x0, y0, x1, y1) in cases:
        img = read_image(shared_path("photos", name))
        assert make(nets).process_image(img).hands == []
        assert calls == []  # off by default
        hands = make(nets, detection=search).process_image(img).hands
        [(args, kwargs, rois)] = calls
        calls.clear()
        assert args[0] is nets and args[2] == search and args[3] == 0.5 and not kwargs
        np.testing.assert_array_equal(args[1], img)
        assert 1 <= len(rois) <= 3
        assert len(hands) == 1 and hands[0].presence >= 0.5
        cx, cy = hands[0].kp2d.mean(0)
        assert x0 < cx < x1 and y0 < cy < y1, (name, cx, cy)
