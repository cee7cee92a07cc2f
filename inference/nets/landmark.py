"""MediaPipe hand landmark model (hand_landmark_full.tflite, mediapipe 0.10.21) as a PyTorch module.

Architecture as read from the .tflite graph: a MobileNetV2-style backbone with ReLU6 (3x3 stem at stride 2,
inverted-residual blocks at 112, 56, 28, 14 and 7 px, ending on a 1x1 expansion to 1152 channels and a 3x3
depthwise conv), global average pooling, and four fully connected heads.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import InvertedResidual, SameConv2d, check_image_batch

INPUT_SIZE = 224
NUM_LANDMARKS = 21
FEATURES = 1152


class HandLandmarkNet(nn.Module):
    """Hand landmark regressor. Use ``handcap.inference.nets.load_landmark_net()`` for MediaPipe's weights.

    forward(x) with x of shape (B, 3, 224, 224): float RGB in [0, 1], NCHW, a crop around one hand, rotated
    so the hand points up (MediaPipe's ROI), aspect kept with zero letterbox borders. Returns
    ``(landmarks, presence, handedness, world)``:

    - landmarks (B, 21, 3): the .tflite's raw first output. x, y in pixels of the 224 x 224 input crop
      (x right, y down, origin at the crop's top-left corner); z is depth relative to the wrist (about 0 at
      the wrist) in the same pixel scale, smaller = closer to the camera. MediaPipe's graph normalises
      with x / 224, y / 224, z / 224 / 0.4.
      Keypoint order: wrist, thumb CMC..tip, index MCP..tip, middle, ring, pinky.
    - presence (B,): probability that a hand is in the crop. The sigmoid is part of the .tflite graph
      (LOGISTIC op), so this is already in [0, 1]; MediaPipe drops the hand below 0.5.
    - handedness (B,): probability (sigmoid in the graph) of the label "Left" of MediaPipe's handedness.txt
      (["Left", "Right"], binary: Right = 1 - score). The model assumes a mirrored (selfie) image: for
      ordinary, unmirrored camera footage a score > 0.5 means the person's RIGHT hand.
    - world (B, 21, 3): metric 3D landmarks in metres, origin near the hand's centre, axes of the crop
      (x right, y down, z away from the camera), i.e. still rotated by the ROI's in-plane rotation; MediaPipe
      undoes only that rotation (WorldLandmarkProjectionCalculator).
    """

    #: Head module name for each .tflite output, in the graph's output order (checked by the converter).
    TFLITE_OUTPUTS = ("landmarks", "presence", "handedness", "world")

    def __init__(self) -> None:
        super().__init__()
        ir = InvertedResidual
        self.stem = SameConv2d(3, 24, 3, stride=2, activation="RELU6")  # 112 x 112
        self.stage1 = nn.Sequential(ir(24, 16, None, 3))  # 112 x 112
        self.stage2 = nn.Sequential(ir(16, 24, 64, 3, stride=2), ir(24, 24, 144, 3))  # 56 x 56
        self.stage3 = nn.Sequential(ir(24, 40, 144, 5, stride=2), ir(40, 40, 240, 5))  # 28 x 28
        self.stage4 = nn.Sequential(  # 14 x 14
            ir(40, 80, 240, 3, stride=2),
            ir(80, 80, 480, 3),
            ir(80, 80, 480, 3),
            ir(80, 112, 480, 5),
            ir(112, 112, 672, 5),
            ir(112, 112, 672, 5),
        )
        self.stage5 = nn.Sequential(  # 7 x 7
            ir(112, 192, 672, 5, stride=2),
            ir(192, 192, 1152, 5),
            ir(192, 192, 1152, 5),
            ir(192, 192, 1152, 5),
        )
        self.final = ir(192, FEATURES, FEATURES, 3, project=False)  # expand + depthwise, no projection
        self.handedness = nn.Linear(FEATURES, 1)
        self.presence = nn.Linear(FEATURES, 1)
        self.landmarks = nn.Linear(FEATURES, NUM_LANDMARKS * 3)
        self.world = nn.Linear(FEATURES, NUM_LANDMARKS * 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        check_image_batch(x, INPUT_SIZE, "HandLandmarkNet")
        x = self.stem(x)
        x = self.stage5(self.stage4(self.stage3(self.stage2(self.stage1(x)))))
        feat = self.final(x).mean(dim=(2, 3))
        b = feat.shape[0]
        landmarks = self.landmarks(feat).reshape(b, NUM_LANDMARKS, 3)
        presence = torch.sigmoid(self.presence(feat)).reshape(b)
        handedness = torch.sigmoid(self.handedness(feat)).reshape(b)
        world = self.world(feat).reshape(b, NUM_LANDMARKS, 3)
        return landmarks, presence, handedness, world

    def tflite_layers(self) -> list[nn.Module]:
        """Weighted layers (convs, fully connected) in the order the .tflite graph executes them."""
        layers: list[nn.Module] = [self.stem]
        for block in [*self.stage1, *self.stage2, *self.stage3, *self.stage4, *self.stage5, self.final]:
            layers += block.layers()
        return layers + [self.handedness, self.presence, self.landmarks, self.world]
