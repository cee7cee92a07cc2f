"""The optimised networks used on the CPU compute what the eager networks compute.

Start-up traces without torch's own check_trace (it re-runs both graphs and doubled start-up); this test
is that check, run once in the suite instead of on every capture. The fused oneDNN landmark net
(inference/nets/fused.py) is checked against the eager reference net on real crops, inside HandNets, and on
its fallback path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handcap.inference import batching
from handcap.inference.batching import (
    FUSED_CHECK_TOLERANCE,
    PALM_FUSED_CHECK_TOLERANCE,
    HandNets,
    optimize_for_cpu,
)
from handcap.inference.nets import NetInputError, load_landmark_net, load_palm_net
from handcap.inference.nets import fused as fused_mod
from handcap.inference.nets.fused import FusedLandmarkNet, FusedPalmNet, FusedUnavailableError

from .conftest import shared_path


def _real_batch(size: int, count: int = 3) -> torch.Tensor:
    import cv2

    files = sorted(shared_path("freihand_2d", "images").glob("*.jpg"))[:count]
    imgs = [cv2.resize(cv2.imread(str(f))[..., ::-1], (size, size)) for f in files]
    return torch.from_numpy(np.stack(imgs).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def test_optimised_nets_match_eager_nets():
    torch.set_num_threads(2)
    for load, size in ((load_palm_net, 192), (load_landmark_net, 224)):
        net = load()
        x = _real_batch(size)
        fast = optimize_for_cpu(net, size)
        assert fast is not net, "TorchScript optimisation fell back to the eager network"
        with torch.inference_mode():
            for a, b in zip(net(x), fast(x.contiguous(memory_format=torch.channels_last)), strict=True):
                np.testing.assert_allclose(b.float().numpy(), a.float().numpy(), rtol=1e-3, atol=1e-3)


def _assert_landmark_outputs_close(ref, out) -> None:
    """Landmarks (crop px), presence, handedness, world (m) within FUSED_CHECK_TOLERANCE."""
    for a, b, tol in zip(ref, out, FUSED_CHECK_TOLERANCE, strict=True):
        assert a.shape == b.shape and b.dtype == torch.float32
        assert float((a - b).abs().max()) <= tol


needs_fused = pytest.mark.skipif(not fused_mod.fused_cpu_available(), reason="this PyTorch build has no oneDNN")


@needs_fused
def test_fused_landmark_net_matches_eager_net():
    torch.set_num_threads(2)
    net = load_landmark_net()
    x = _real_batch(224, count=8)  # hand presence from 0.004 to 0.87
    fused = FusedLandmarkNet(net, batch_hint=2)
    with torch.inference_mode():
        ref = net(x)
        assert float(ref[1].max()) > 0.8, "the crops should show hands"
        # Batch sizes other than the hint, NCHW and NHWC memory layouts.
        _assert_landmark_outputs_close(ref, fused(x))
        _assert_landmark_outputs_close(ref, fused(x.contiguous(memory_format=torch.channels_last)))
        single = fused(x[1:2])
        _assert_landmark_outputs_close([r[1:2] for r in ref], single)
    with pytest.raises(NetInputError, match="float32"):
        fused(x.double())
    with pytest.raises(NetInputError, match=r"\(B, 3, 224, 224\)"):
        fused(x.permute(0, 2, 3, 1))


@needs_fused
def test_hand_nets_on_cpu_use_the_fused_net_with_the_reference_results():
    import cv2

    torch.set_num_threads(2)
    fast, ref = HandNets("cpu", optimize=True), HandNets("cpu", optimize=False)
    assert isinstance(fast.landmark_net, FusedLandmarkNet) and isinstance(fast.palm_net, FusedPalmNet)
    img = cv2.cvtColor(cv2.imread(str(shared_path("photos", "two_hands_woman.jpg"))), cv2.COLOR_BGR2RGB)
    palms = ref.detect_palms([img], max_palms=2)[0]
    assert palms, "the photo should contain a palm"
    fast_palms = fast.detect_palms([img], max_palms=2)[0]
    assert len(fast_palms) == len(palms)
    for p, q in zip(palms, fast_palms, strict=True):
        np.testing.assert_allclose(q.box, p.box, atol=0.05)  # image px
        np.testing.assert_allclose(q.keypoints, p.keypoints, atol=0.05)
    from handcap.inference.roi import palm_rois

    rois = palm_rois(np.stack([p.box for p in palms]), np.stack([p.keypoints for p in palms]))
    rois = np.concatenate([rois, rois[:1] + [9.0, -5.0, 20.0, 0.4]])  # three crops: two calls on the CPU
    a, b = fast.landmarks([img], [rois]), ref.landmarks([img], [rois])
    assert a.presence.max() > 0.9
    px_per_crop_px = rois[:, 2] / 224
    assert (np.abs(a.kp2d - b.kp2d).max(axis=(1, 2)) <= FUSED_CHECK_TOLERANCE[0] * px_per_crop_px).all()
    assert np.abs(a.presence - b.presence).max() <= FUSED_CHECK_TOLERANCE[1]
    assert np.abs(a.left_score - b.left_score).max() <= FUSED_CHECK_TOLERANCE[2]
    assert np.abs(a.world - b.world).max() <= FUSED_CHECK_TOLERANCE[3]


@needs_fused
def test_fused_palm_net_matches_eager_net():
    torch.set_num_threads(2)
    net = load_palm_net()
    x = _real_batch(192, count=3)
    fused = FusedPalmNet(net, batch_hint=2)
    with torch.inference_mode():
        ref = net(x)
        assert float(ref[1].max()) > 0.0, "some anchor should score above 0.5"
        for out in (fused(x), fused(x[:1].contiguous(memory_format=torch.channels_last))):
            for a, b, tol in zip(ref, out, PALM_FUSED_CHECK_TOLERANCE, strict=True):
                assert a[: len(b)].shape == b.shape
                assert float((a[: len(b)] - b).abs().max()) <= tol


def test_fused_net_falls_back_to_torchscript_where_unavailable(monkeypatch):
    torch.set_num_threads(2)
    net = load_landmark_net()
    monkeypatch.setattr(fused_mod, "fused_cpu_available", lambda: False)
    with pytest.raises(FusedUnavailableError, match="oneDNN"):
        FusedLandmarkNet(net)
    with pytest.warns(UserWarning, match="using TorchScript"):
        fallback = batching.fuse_for_cpu(net)
    assert isinstance(fallback, torch.jit.ScriptModule)
    x = _real_batch(224)[:1]
    with torch.inference_mode():
        _assert_landmark_outputs_close(net(x), fallback(x.contiguous(memory_format=torch.channels_last)))
