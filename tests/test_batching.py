"""The TorchScript-optimised networks used on the CPU compute what the eager networks compute.

Start-up traces without torch's own check_trace (it re-runs both graphs and doubled start-up); this test
is that check, run once in the suite instead of on every capture.
"""

from __future__ import annotations

import numpy as np
import torch

from handcap.inference.batching import optimize_for_cpu
from handcap.inference.nets import load_landmark_net, load_palm_net

from .conftest import shared_path


def _real_batch(size: int) -> torch.Tensor:
    import cv2

    files = sorted(shared_path("freihand_2d", "images").glob("*.jpg"))[:3]
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
