"""MediaPipe palm detector (palm_detection_full.tflite, mediapipe 0.10.21) as a PyTorch module.

Architecture as read from the .tflite graph: a BlazeFace-style backbone (5x5 stem at stride 2, then five
stages of BlazeBlocks at 96, 48, 24, 12 and 6 px), a two-step feature-pyramid decoder (bilinear x2
upsampling, 1x1 conv + PReLU, added to the backbone's 12 px and 24 px features, two refinement blocks), and
SSD heads at 24x24 (2 anchors per cell) and 12x12 (6 anchors per cell).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BlazeBlock, SameConv2d, check_image_batch, upsample2x

#: Number of values per anchor in the regressor output: box (4) + 7 keypoints x (x, y).
NUM_REGRESSORS = 18
#: Total anchors: 24 * 24 * 2 + 12 * 12 * 6.
NUM_ANCHORS = 2016
INPUT_SIZE = 192


def _stage(cin: int, cout: int, downsample: bool, blocks: int = 4) -> nn.Sequential:
    """Optional stride-2 BlazeBlock (cin -> cout) followed by ``blocks`` stride-1 BlazeBlocks at cout."""
    layers = [BlazeBlock(cin, cout, stride=2)] if downsample else []
    layers += [BlazeBlock(cout, cout) for _ in range(blocks)]
    return nn.Sequential(*layers)


class UpsampleMerge(nn.Module):
    """Decoder step: upsample x2 (bilinear, half-pixel centres), 1x1 conv + PReLU, add the skip feature."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = SameConv2d(cin, cout, 1)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip + self.act(self.conv(upsample2x(x)))


class SSDHead(nn.Module):
    """Per-cell anchor classifier (1 logit per anchor) and regressor (18 values per anchor), 1x1 convs."""

    def __init__(self, cin: int, anchors_per_cell: int):
        super().__init__()
        self.classifier = SameConv2d(cin, anchors_per_cell, 1)
        self.regressor = SameConv2d(cin, anchors_per_cell * NUM_REGRESSORS, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        # NHWC flattening: anchors run over rows, then columns, then the anchors of one cell (TFLite order).
        scores = self.classifier(x).permute(0, 2, 3, 1).reshape(b, -1)
        boxes = self.regressor(x).permute(0, 2, 3, 1).reshape(b, -1, NUM_REGRESSORS)
        return boxes, scores


class PalmDetectionNet(nn.Module):
    """Palm detector. Use ``handcap.inference.nets.load_palm_net()`` to get one with MediaPipe's weights.

    forward(x) with x of shape (B, 3, 192, 192): float RGB in [0, 1], NCHW (MediaPipe feeds the whole image
    resized with its aspect ratio kept and zero (black) letterbox borders). Returns ``(regressors, score_logits)``:

    - regressors (B, 2016, 18), in input pixels (0..192 scale), relative to each anchor's centre:
      [dx, dy, w, h] of the palm box (centre offset and size), then 7 keypoints as (dx, dy) offsets from the
      anchor centre. Keypoint 0 is the wrist centre and keypoint 2 the middle-finger MCP (MediaPipe's ROI
      step rotates 0 -> 2 to point up); the others are further palm/thumb points. MediaPipe decodes with
      value / 192 * anchor_size + anchor_centre, anchor_size = 1 (fixed-size anchors).
    - score_logits (B, 2016): raw logits exactly as the .tflite outputs them (the graph has no sigmoid);
      MediaPipe clips them to [-100, 100] and applies a sigmoid, keeping anchors scoring >= 0.5.

    Anchor order: first the 24x24 grid (stride 8, 2 anchors per cell, 1152 anchors), then the 12x12 grid
    (stride 16, 6 anchors per cell, 864 anchors); within a grid row-major over cells, anchors of a cell
    consecutive. This is the order of MediaPipe's SSD anchor generator with the palm options.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = SameConv2d(3, 32, 5, stride=2)
        self.stem_act = nn.PReLU(32)
        self.stage1 = _stage(32, 32, downsample=False)  # 96 x 96
        self.stage2 = _stage(32, 64, downsample=True)  # 48 x 48
        self.stage3 = _stage(64, 128, downsample=True)  # 24 x 24, skip for the stride-8 level
        self.stage4 = _stage(128, 256, downsample=True)  # 12 x 12, skip for the stride-16 level
        self.stage5 = _stage(256, 256, downsample=True)  # 6 x 6
        self.up12 = UpsampleMerge(256, 256)
        self.refine12 = nn.Sequential(BlazeBlock(256, 256), BlazeBlock(256, 256))
        self.head12 = SSDHead(256, 6)
        self.up24 = UpsampleMerge(256, 128)
        self.refine24 = nn.Sequential(BlazeBlock(128, 128), BlazeBlock(128, 128))
        self.head24 = SSDHead(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(x, INPUT_SIZE, "PalmDetectionNet")
        x = self.stem_act(self.stem(x))
        x = self.stage2(self.stage1(x))
        f24 = self.stage3(x)
        f12 = self.stage4(f24)
        f6 = self.stage5(f12)
        p12 = self.refine12(self.up12(f6, f12))
        p24 = self.refine24(self.up24(p12, f24))
        boxes12, scores12 = self.head12(p12)
        boxes24, scores24 = self.head24(p24)
        return torch.cat([boxes24, boxes12], dim=1), torch.cat([scores24, scores12], dim=1)

    def tflite_layers(self) -> list[nn.Module]:
        """Weighted layers (convs, PReLUs) in the order the .tflite graph executes them (used by the converter)."""
        layers: list[nn.Module] = [self.stem, self.stem_act]
        blocks = [*self.stage1, *self.stage2, *self.stage3, *self.stage4, *self.stage5]
        for block in blocks:
            layers += [block.depthwise, block.pointwise, block.act]
        layers += [self.up12.conv, self.up12.act]
        for block in self.refine12:
            layers += [block.depthwise, block.pointwise, block.act]
        layers += [self.head12.classifier, self.head12.regressor, self.up24.conv, self.up24.act]
        for block in self.refine24:
            layers += [block.depthwise, block.pointwise, block.act]
        layers += [self.head24.classifier, self.head24.regressor]
        return layers
