"""HandLandmarker end to end on the shipped weights: real photos and video from ../shared/data (skipped when
absent), generated images without hands, huge images, bad inputs, tracking identities and chunked lanes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from handcap.inference.landmarker import HandLandmarker, LandmarkerOptions
from handcap.inference.nets import ASSET_PATH
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


@pytest.mark.slow
def test_video_tracking_keeps_identities(nets, two_hands_clip):
    calls = []
    results = make(nets).process_source(two_hands_clip, progress=lambda d, t: calls.append((d, t)))
    assert len(results) == 210 and calls[-1] == (210, 210)
    assert [r.frame_index for r in results] == list(range(210))
    two = np.mean([len(r.hands) == 2 for r in results])
    assert two >= 0.95, f"two hands in only {100 * two:.1f} % of frames"
    tracks: dict[int, dict[int, object]] = {}
    for r in results:
        assert len({h.track_id for h in r.hands}) == len(r.hands)
        for h in r.hands:
            tracks.setdefault(h.track_id, {})[r.frame_index] = h
    assert len(tracks) == 2, f"hands split into tracks {sorted(tracks)}"
    sides = {}
    for tid, obs in tracks.items():
        [side] = {h.side for h in obs.values()}
        sides[side] = tid
        # every frame's own handedness agrees with the track: no frame shows the other hand under this id
        assert min(h.side_score for h in obs.values()) > 0.5
        for f, h in obs.items():  # the wrist moves continuously
            if f - 1 in obs:
                assert np.linalg.norm(h.kp2d[0] - obs[f - 1].kp2d[0]) < 0.2 * h.roi[2], f"track {tid} jumps at {f}"
    assert set(sides) == {"left", "right"}
    # Facing the camera, the person's left hand is on the image's right.
    mean_x = {s: np.mean([h.kp2d[0, 0] for h in tracks[t].values()]) for s, t in sides.items()}
    assert mean_x["left"] > mean_x["right"]


@pytest.mark.slow
def test_lanes_stitch_into_the_same_tracks(nets, two_hands_clip):
    frames = np.stack([f for _, f in open_source(two_hands_clip, frames=range(0, 72))])
    one = make(nets, lanes=1).process_source(frames)
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
