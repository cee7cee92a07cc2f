"""SSD anchors as MediaPipe's SsdAnchorsCalculator generates them (palm detector options by default)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SsdAnchorOptions:
    """Options of MediaPipe's SsdAnchorsCalculator; the defaults are palm_detection_cpu.pbtxt's."""

    num_layers: int = 4
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    input_size: tuple[int, int] = (192, 192)  # (width, height)
    strides: tuple[int, ...] = (8, 16, 16, 16)
    offset: tuple[float, float] = (0.5, 0.5)
    aspect_ratios: tuple[float, ...] = (1.0,)
    fixed_anchor_size: bool = True
    interpolated_scale_aspect_ratio: float = 1.0


PALM_ANCHOR_OPTIONS = SsdAnchorOptions()


def _scale(opts: SsdAnchorOptions, index: int) -> float:
    n = len(opts.strides)
    if n == 1:
        return (opts.min_scale + opts.max_scale) / 2
    return opts.min_scale + (opts.max_scale - opts.min_scale) * index / (n - 1)


def ssd_anchors(opts: SsdAnchorOptions = PALM_ANCHOR_OPTIONS) -> np.ndarray:
    """(N, 4) float32 anchors ``[x_center, y_center, width, height]`` normalised to the input size.

    Consecutive layers with the same stride share one feature map; anchors are ordered by feature map,
    then row-major over its cells, then by anchor within a cell. With ``fixed_anchor_size`` every anchor
    is 1 x 1 (the regressors are then plain offsets in input units). Palm options give 24*24*2 + 12*12*6
    = 2016 anchors.
    """
    if opts.num_layers != len(opts.strides):
        raise ValueError(f"num_layers {opts.num_layers} != number of strides {len(opts.strides)}")
    width, height = opts.input_size
    out: list[np.ndarray] = []
    layer = 0
    while layer < opts.num_layers:
        sizes: list[tuple[float, float]] = []  # (w, h) of each anchor of a cell
        last = layer
        while last < len(opts.strides) and opts.strides[last] == opts.strides[layer]:
            scale = _scale(opts, last)
            for ratio in opts.aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if opts.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == len(opts.strides) - 1 else _scale(opts, last + 1)
                s = math.sqrt(scale * nxt)
                r = math.sqrt(opts.interpolated_scale_aspect_ratio)
                sizes.append((s * r, s / r))
            last += 1
        stride = opts.strides[layer]
        fh, fw = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(
            (np.arange(fh) + opts.offset[1]) / fh, (np.arange(fw) + opts.offset[0]) / fw, indexing="ij"
        )
        wh = np.ones((len(sizes), 2)) if opts.fixed_anchor_size else np.asarray(sizes)
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)  # (cells, 2)
        grid = np.concatenate([np.repeat(cells, len(sizes), axis=0), np.tile(wh, (len(cells), 1))], axis=1)
        out.append(grid)
        layer = last
    return np.concatenate(out).astype(np.float32)
