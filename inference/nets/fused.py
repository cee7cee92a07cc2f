"""CPU fast path for the two networks: oneDNN convolutions with their elementwise ops fused in.

``FusedLandmarkNet`` / ``FusedPalmNet`` compute what ``HandLandmarkNet`` / ``PalmDetectionNet`` compute
(same input, same outputs) but call oneDNN directly through ``torch.ops.mkldnn._convolution_pointwise`` (the
kernels torch.compile's CPU backend uses):

- weights are reordered once into oneDNN's preferred blocked layout instead of on every call;
- ReLU6 runs as a post-op of its convolution and each residual add as a binary post-op of the projection
  (palm net: of the pointwise conv, PReLU after it), so activations are written once per layer
  (TorchScript's optimize_for_inference left every ReLU6 as a separate pass);
- TF 'SAME' padding of the stride-2 layers (one more zero row/column at the bottom/right) needs no F.pad
  copy: a k x k kernel grown to (k + 1) x (k + 1) with a leading zero row and column, and symmetric padding
  ``after``, reads exactly TF's window (the extra taps multiply zeros or sit on zero weights).

Activations stay dense NHWC (channels_last) tensors. Float32 only; results differ from the eager networks
only by summation order (~1e-4 px). Needs a PyTorch build with oneDNN (``FusedUnavailableError``
otherwise); ``handcap.inference.batching`` falls back to the TorchScript path then.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import palm as palm_net
from .blocks import (
    BlazeBlock,
    InvertedResidual,
    NetInputError,
    SameConv2d,
    check_image_batch,
    same_padding,
    upsample2x,
)
from .landmark import INPUT_SIZE, NUM_LANDMARKS, HandLandmarkNet


class FusedUnavailableError(RuntimeError):
    """This PyTorch build or network cannot run the fused oneDNN path."""


def fused_cpu_available() -> bool:
    """True where this PyTorch build has oneDNN and its fused convolution op."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


#: Packed weight copies kept per convolution (one per batch size and thread count seen).
MAX_PACKED_LAYOUTS = 8


class _Conv:
    """One SameConv2d prepared for oneDNN at a fixed input size (padding made symmetric, weights reordered).

    oneDNN's preferred weight layout depends on the batch size and thread count: with weights packed for
    another batch size every call re-packs them (measured: the palm net 4x slower at batch 1 with weights
    packed for batch 2), so a packed copy is kept per (batch size, threads)."""

    def __init__(self, layer: SameConv2d, size: int, batch_hint: int):
        k, stride = layer.kernel_size[0], layer.stride[0]
        if layer.kernel_size[1] != k or layer.stride[1] != stride:
            raise FusedUnavailableError("only square kernels and strides are supported")
        before, after = same_padding(size, k, stride)
        weight = layer.weight.detach().float()
        if before != after:
            if after != before + 1:
                raise FusedUnavailableError(f"unsupported SAME padding ({before}, {after})")
            weight = F.pad(weight, (1, 0, 1, 0))  # leading zero row/column: symmetric padding `after` == TF
        self.weight = weight.contiguous()
        self.size, self.in_channels = size, layer.in_channels
        self.padding = [after, after]
        self.stride = [stride, stride]
        self.groups = layer.groups
        self.out_size = -(-size // stride)
        self.relu6 = layer.activation == "RELU6"
        self.bias = layer.bias.detach().float().contiguous()
        self.packed: dict[tuple[int, int], torch.Tensor] = {}
        self._packed_for(batch_hint)

    def _packed_for(self, batch: int) -> torch.Tensor:
        key = (batch, torch.get_num_threads())
        packed = self.packed.get(key)
        if packed is None:
            if len(self.packed) >= MAX_PACKED_LAYOUTS:
                self.packed.clear()
            packed = self.packed[key] = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.to_mkldnn(),
                self.padding,
                self.stride,
                [1, 1],
                self.groups,
                [batch, self.in_channels, self.size, self.size],
            )
        return packed

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        weight = self._packed_for(x.shape[0])
        if residual is not None:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, weight, self.bias, self.padding, self.stride, [1, 1], self.groups,
                "add", 1.0, None, [], None,
            )  # fmt: skip
        attr, scalars = ("hardtanh", [0.0, 6.0]) if self.relu6 else ("none", [])
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, self.bias, self.padding, self.stride, [1, 1], self.groups, attr, scalars, ""
        )


class _Block:
    def __init__(self, block: InvertedResidual, size: int, batch_hint: int):
        self.expand = _Conv(block.expand, size, batch_hint) if block.expand is not None else None
        self.depthwise = _Conv(block.depthwise, size, batch_hint)
        self.out_size = self.depthwise.out_size
        self.project = _Conv(block.project, self.out_size, batch_hint) if block.project is not None else None
        self.residual = block.residual
        if self.project is not None and self.project.relu6:
            raise FusedUnavailableError("a projection with an activation cannot take the fused residual add")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.project is None:
            return y
        return self.project(y, x if self.residual else None)


class FusedLandmarkNet(nn.Module):
    """``HandLandmarkNet`` on oneDNN with fused ReLU6 / residual adds (CPU, float32). Same forward contract:
    (B, 3, 224, 224) float RGB in [0, 1] -> (landmarks (B, 21, 3), presence (B,), handedness (B,),
    world (B, 21, 3)); any memory format is accepted, channels_last input avoids one reorder.

    ``batch_hint`` is the batch size the weight layouts are chosen for (any batch size runs)."""

    def __init__(self, net: HandLandmarkNet, batch_hint: int = 2):
        super().__init__()
        _check_cpu_float32(net)
        hint = max(1, int(batch_hint))
        self.stem = _Conv(net.stem, INPUT_SIZE, hint)
        size = self.stem.out_size
        self.blocks: list[_Block] = []
        for block in [*net.stage1, *net.stage2, *net.stage3, *net.stage4, *net.stage5, net.final]:
            self.blocks.append(_Block(block, size, hint))
            size = self.blocks[-1].out_size
        # The four heads as one (128, 1152) matrix: one pass over the pooled features.
        heads = (net.landmarks, net.presence, net.handedness, net.world)
        self.head_sizes = [h.out_features for h in heads]
        self.register_buffer("head_weight", torch.cat([h.weight.detach().float() for h in heads]).contiguous())
        self.register_buffer("head_bias", torch.cat([h.bias.detach().float() for h in heads]).contiguous())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        check_image_batch(x, INPUT_SIZE, "FusedLandmarkNet")
        x = self.stem(_check_float32(x, "FusedLandmarkNet"))
        for block in self.blocks:
            x = block(x)
        out = F.linear(x.mean(dim=(2, 3)), self.head_weight, self.head_bias)
        b = out.shape[0]
        landmarks, presence, handedness, world = out.split(self.head_sizes, dim=1)
        return (
            landmarks.reshape(b, NUM_LANDMARKS, 3),
            torch.sigmoid(presence).reshape(b),
            torch.sigmoid(handedness).reshape(b),
            world.reshape(b, NUM_LANDMARKS, 3),
        )


def _check_cpu_float32(net: nn.Module) -> None:
    if not fused_cpu_available():
        raise FusedUnavailableError("this PyTorch build has no oneDNN fused convolution (torch.ops.mkldnn)")
    if any(p.device.type != "cpu" for p in net.parameters()):
        raise FusedUnavailableError("the fused path runs on the CPU only")


def _check_float32(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dtype != torch.float32:
        raise NetInputError(f"{name} expects float32 RGB values in [0, 1], got dtype {x.dtype}")
    return x.contiguous(memory_format=torch.channels_last)


class _Blaze:
    """BlazeBlock: depthwise 5x5 -> pointwise 1x1 with the skip added as a post-op -> PReLU."""

    def __init__(self, block: BlazeBlock, size: int, batch_hint: int):
        self.depthwise = _Conv(block.depthwise, size, batch_hint)
        self.out_size = self.depthwise.out_size
        self.pointwise = _Conv(block.pointwise, self.out_size, batch_hint)
        self.slope = block.act.weight.detach().float().contiguous()
        self.stride, self.extra = block.stride, block.cout - block.cin

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.max_pool2d(x, 2, 2) if self.stride == 2 else x
        if self.extra:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra)).contiguous(memory_format=torch.channels_last)
        return F.prelu(self.pointwise(self.depthwise(x), skip), self.slope)


class FusedPalmNet(nn.Module):
    """``PalmDetectionNet`` on oneDNN (CPU, float32): prepacked weights, no padding copies, the residual
    adds fused into the pointwise convolutions. Same forward contract: (B, 3, 192, 192) float RGB in [0, 1]
    -> (regressors (B, 2016, 18), score_logits (B, 2016))."""

    def __init__(self, net: palm_net.PalmDetectionNet, batch_hint: int = 2):
        super().__init__()
        _check_cpu_float32(net)
        hint = max(1, int(batch_hint))
        self.stem = _Conv(net.stem, palm_net.INPUT_SIZE, hint)
        self.stem_slope = net.stem_act.weight.detach().float().contiguous()
        size = self.stem.out_size
        self.stages: list[list[_Blaze]] = []
        for stage in (net.stage1, net.stage2, net.stage3, net.stage4, net.stage5):
            blocks = []
            for block in stage:
                blocks.append(_Blaze(block, size, hint))
                size = blocks[-1].out_size
            self.stages.append(blocks)
        self.up12, self.up24 = self._merge(net.up12, 12, hint), self._merge(net.up24, 24, hint)
        self.refine12 = [_Blaze(b, 12, hint) for b in net.refine12]
        self.refine24 = [_Blaze(b, 24, hint) for b in net.refine24]
        self.head12 = [_Conv(c, 12, hint) for c in (net.head12.classifier, net.head12.regressor)]
        self.head24 = [_Conv(c, 24, hint) for c in (net.head24.classifier, net.head24.regressor)]

    @staticmethod
    def _merge(m: palm_net.UpsampleMerge, size: int, hint: int) -> tuple[_Conv, torch.Tensor]:
        return _Conv(m.conv, size, hint), m.act.weight.detach().float().contiguous()

    @staticmethod
    def _upsample_merge(merge: tuple[_Conv, torch.Tensor], x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        conv, slope = merge
        up = upsample2x(x).contiguous(memory_format=torch.channels_last)
        return F.prelu(conv(up), slope).add_(skip)

    @staticmethod
    def _head(convs: list[_Conv], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        scores = convs[0](x).permute(0, 2, 3, 1).reshape(b, -1)
        boxes = convs[1](x).permute(0, 2, 3, 1).reshape(b, -1, palm_net.NUM_REGRESSORS)
        return boxes, scores

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(x, palm_net.INPUT_SIZE, "FusedPalmNet")
        x = F.prelu(self.stem(_check_float32(x, "FusedPalmNet")), self.stem_slope)
        feats = []
        for stage in self.stages:
            for block in stage:
                x = block(x)
            feats.append(x)
        f24, f12, f6 = feats[2], feats[3], feats[4]
        p12 = self._upsample_merge(self.up12, f6, f12)
        for block in self.refine12:
            p12 = block(p12)
        p24 = self._upsample_merge(self.up24, p12, f24)
        for block in self.refine24:
            p24 = block(p24)
        boxes12, scores12 = self._head(self.head12, p12)
        boxes24, scores24 = self._head(self.head24, p24)
        return torch.cat([boxes24, boxes12], dim=1), torch.cat([scores24, scores12], dim=1)
