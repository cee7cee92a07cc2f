"""MediaPipe's hand networks (palm detector, hand landmark model) ported to PyTorch.

Weights come from ``assets/mediapipe_hands.safetensors``, converted from the mediapipe 0.10.21 wheel by
``tools/convert_mediapipe.py`` (Apache-2.0, see assets/NOTICE-mediapipe.txt). Tensor names in the asset are
``palm.<state_dict key>`` and ``landmark.<state_dict key>``, stored as float16 like the source models and cast
to the requested dtype at load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...core.tensorfile import load_tensors
from .blocks import NetInputError
from .landmark import HandLandmarkNet
from .palm import PalmDetectionNet

__all__ = [
    "ASSET_PATH",
    "HandLandmarkNet",
    "NetInputError",
    "PalmDetectionNet",
    "WeightsError",
    "load_landmark_net",
    "load_palm_net",
]

#: The converted weights, shipped with the package (<package root>/assets/).
ASSET_PATH = Path(__file__).resolve().parents[2] / "assets" / "mediapipe_hands.safetensors"


class WeightsError(ValueError):
    """The converted weight asset is missing or does not fit the network definitions."""


def _load(net: nn.Module, prefix: str, device, dtype: torch.dtype, path: Path | None) -> nn.Module:
    path = Path(path) if path is not None else ASSET_PATH
    if not path.is_file():
        raise WeightsError(
            f"converted MediaPipe weights not found at {path}. Create them with "
            "`python tools/fetch_mediapipe_wheel.py && python tools/convert_mediapipe.py` from the repository root."
        )
    tensors, _meta = load_tensors(path)
    state = {
        k[len(prefix) :]: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items() if k.startswith(prefix)
    }
    expected = set(net.state_dict())
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise WeightsError(
            f"{path} does not match {type(net).__name__} (missing {missing[:3]}, unexpected {extra[:3]}); "
            "re-run tools/convert_mediapipe.py"
        )
    for key, value in state.items():
        if value.shape != net.state_dict()[key].shape:
            raise WeightsError(
                f"{path}: {prefix}{key} has shape {tuple(value.shape)}, the network expects "
                f"{tuple(net.state_dict()[key].shape)}; re-run tools/convert_mediapipe.py"
            )
    net.load_state_dict(state)
    # Inference only: no parameter gradients (gradients with respect to the input still flow).
    net.requires_grad_(False)
    return net.to(device=device, dtype=dtype).eval()


def load_palm_net(device="cpu", dtype: torch.dtype = torch.float32, path: Path | None = None) -> PalmDetectionNet:
    """PalmDetectionNet with MediaPipe's palm_detection_full weights, in eval mode on ``device``/``dtype``."""
    return _load(PalmDetectionNet(), "palm.", device, dtype, path)


def load_landmark_net(device="cpu", dtype: torch.dtype = torch.float32, path: Path | None = None) -> HandLandmarkNet:
    """HandLandmarkNet with MediaPipe's hand_landmark_full weights, in eval mode on ``device``/``dtype``."""
    return _load(HandLandmarkNet(), "landmark.", device, dtype, path)
