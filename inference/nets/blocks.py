"""Building blocks shared by the MediaPipe hand networks, written to match TFLite semantics exactly.

Conventions carried over from TFLite:
- 'SAME' padding puts the extra pixel of an odd total padding at the bottom/right (for stride 2 on even
  inputs: 5x5 kernels pad (1, 2), 3x3 kernels pad (0, 1)); PyTorch's symmetric ``padding=`` cannot express
  that, so ``SameConv2d`` pads explicitly when the split is uneven.
- Batch norm is already folded into the conv biases in the .tflite files, so there is no BatchNorm here.
- PReLU has one slope per channel (TFLite stores it as (1, 1, C)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d (plain or depthwise) with TF 'SAME' padding and an optional fused activation.

    ``activation`` is None or "RELU6" (the only fused activation these models use); the converter checks it
    against the TFLite op options.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, depthwise: bool = False, activation=None):
        super().__init__(cin, cout, kernel, stride=stride, groups=cin if depthwise else 1, bias=True)
        self.depthwise = depthwise
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        top, bottom = same_padding(x.shape[-2], kh, self.stride[0])
        left, right = same_padding(x.shape[-1], kw, self.stride[1])
        if top == bottom and left == right:
            y = F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        else:
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, 1, self.groups)
        return F.relu6(y) if self.activation == "RELU6" else y


class BlazeBlock(nn.Module):
    """Residual block of the palm detector: depthwise 5x5 -> pointwise 1x1, added to the skip path, PReLU.

    With ``stride`` 2 the skip path is a 2x2 max-pool; when ``cout > cin`` the skip path is zero-padded in
    channels (TFLite PAD on the channel axis, extra channels appended at the end).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.depthwise = SameConv2d(cin, cin, 5, stride=stride, depthwise=True)
        self.pointwise = SameConv2d(cin, cout, 1)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.max_pool2d(x, 2, 2) if self.stride == 2 else x
        if self.cout > self.cin:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.cout - self.cin))
        return self.act(skip + self.pointwise(self.depthwise(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block of the landmark model: [1x1 expand, ReLU6] -> kxk depthwise, ReLU6 -> 1x1 project.

    The projection is linear; the input is added back when the shapes allow (stride 1, cin == cout).
    ``expand`` None means no expansion conv (the first block). ``project`` False drops the projection (the
    last block before global pooling ends on the depthwise conv).
    """

    def __init__(self, cin: int, cout: int, hidden: int | None, kernel: int, stride: int = 1, project: bool = True):
        super().__init__()
        width = hidden or cin
        self.expand = SameConv2d(cin, width, 1, activation="RELU6") if hidden else None
        self.depthwise = SameConv2d(width, width, kernel, stride=stride, depthwise=True, activation="RELU6")
        self.project = SameConv2d(width, cout, 1) if project else None
        self.residual = project and stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.project is None:
            return y
        y = self.project(y)
        return x + y if self.residual else y

    def layers(self) -> list[nn.Module]:
        """Weighted layers in the order the TFLite graph runs them."""
        return [m for m in (self.expand, self.depthwise, self.project) if m is not None]


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """TFLite RESIZE_BILINEAR x2 with half_pixel_centers=True, align_corners=False (== PyTorch's default)."""
    return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)


class NetInputError(ValueError):
    """The tensor given to a network has the wrong shape or type."""


def check_image_batch(x: torch.Tensor, size: int, net: str) -> None:
    """Raise NetInputError unless ``x`` is a float (B, 3, size, size) tensor."""
    if not isinstance(x, torch.Tensor):
        raise NetInputError(f"{net} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
        raise NetInputError(f"{net} expects a (B, 3, {size}, {size}) RGB batch (NCHW), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise NetInputError(f"{net} expects float RGB values in [0, 1], got dtype {x.dtype}")
