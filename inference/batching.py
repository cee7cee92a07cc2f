"""Batched network passes and background frame decoding.

``HandNets`` runs the palm detector over many images and the landmark model over many hand crops (from
any number of frames) in a few large batches; ``prefetch`` decodes frames in a background thread so
decoding overlaps with the network passes (OpenCV releases the GIL while decoding).
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .nets import HandLandmarkNet, PalmDetectionNet, load_landmark_net, load_palm_net
from .nets.fused import FusedLandmarkNet, FusedPalmNet, FusedUnavailableError
from .palm import PALM_INPUT_SIZE, PalmDetection, palm_input, postprocess_palms
from .roi import crop_rois, crop_to_image, rotate_in_plane

LANDMARK_INPUT_SIZE = 224
#: MediaPipe's TensorsToLandmarksCalculator divides z by the input width and by normalize_z = 0.4.
LANDMARK_Z_NORMALIZE = 0.4
CPU_CALL_SIZE = 2


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; anything else is passed to torch.device (ValueError if bad)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available in this PyTorch build/machine")
    return dev


@dataclass
class LandmarkBatch:
    """Landmark-model outputs for N hand crops, already mapped back to image pixels.

    Attributes:
        image: (N,) int, index of the image (in the pass's image list) each crop came from.
        rois: (N, 4) float ``[cx, cy, size, rotation]`` ROI of each crop (image pixels, radians).
        kp2d: (N, 21, 2) float landmarks in image pixels (x right, y down).
        kp_z: (N, 21) float relative depth in image pixels (same scale as x; smaller = nearer the camera;
            MediaPipe's z times the image width).
        world: (N, 21, 3) float metric landmarks in metres, origin near the hand centre, camera-aligned
            axes (x right, y down, z away from the camera): the crop rotation is undone.
        presence: (N,) float hand-presence probability.
        left_score: (N,) float the network's raw handedness score, P(label "Left") for a MIRRORED image.
    """

    image: np.ndarray
    rois: np.ndarray
    kp2d: np.ndarray
    kp_z: np.ndarray
    world: np.ndarray
    presence: np.ndarray
    left_score: np.ndarray

    def __len__(self) -> int:
        return len(self.image)


def optimize_for_cpu(net: torch.nn.Module, size: int) -> torch.nn.Module:
    """TorchScript-trace ``net`` and let ``torch.jit.optimize_for_inference`` fuse it (conv + activation,
    oneDNN layouts): about 25 % faster on CPU, same outputs to ~1e-4 px. Falls back to ``net`` (with a
    warning) where this PyTorch build cannot trace or optimise it."""
    example = torch.zeros(2, 3, size, size).contiguous(memory_format=torch.channels_last)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer notes on the nets' shape checks (fixed input size)
            # check_trace=False: the default re-runs both graphs to compare them, doubling start-up; the
            # landmarker and parity tests check the traced nets' outputs instead.
            return torch.jit.optimize_for_inference(torch.jit.trace(net, example, check_trace=False).eval())
    except (RuntimeError, AttributeError) as exc:
        warnings.warn(f"TorchScript optimisation unavailable ({exc}); running the eager network", stacklevel=2)
        return net


#: Largest deviations of the fused nets from the eager ones accepted by the start-up self-check. Landmark
#: net: landmarks (crop px), presence, handedness, world (m); measured ~1e-4 px, ~1e-6, ~1e-7 m. Palm net:
#: regressors (input px), score logits; measured ~2e-4 px, ~3e-5.
FUSED_CHECK_TOLERANCE = (1e-2, 1e-4, 1e-4, 1e-5)
PALM_FUSED_CHECK_TOLERANCE = (1e-2, 1e-3)


def fuse_for_cpu(net: torch.nn.Module, batch_hint: int = CPU_CALL_SIZE) -> torch.nn.Module:
    """The fastest CPU form of a landmark or palm net: ``FusedLandmarkNet`` / ``FusedPalmNet`` (oneDNN with
    fused ReLU6 and residual adds, prepacked weights, no padding copies; landmark net 10-45 % less time per
    crop than ``optimize_for_cpu`` at 2 crops per call, the most on a busy machine since it has half the
    thread synchronisations), checked once against ``net`` on a fixed input (~0.1 s). Falls back to
    ``optimize_for_cpu`` (with a warning) where this PyTorch build cannot run it or its outputs differ."""
    if isinstance(net, PalmDetectionNet):
        kind, size, tolerance = FusedPalmNet, PALM_INPUT_SIZE, PALM_FUSED_CHECK_TOLERANCE
    elif isinstance(net, HandLandmarkNet):
        kind, size, tolerance = FusedLandmarkNet, LANDMARK_INPUT_SIZE, FUSED_CHECK_TOLERANCE
    else:
        raise TypeError(f"fuse_for_cpu takes a HandLandmarkNet or PalmDetectionNet, got {type(net).__name__}")
    try:
        fused = kind(net, batch_hint)
        x = _check_input(size)
        with torch.inference_mode():
            dev = [float((a - b).abs().max()) for a, b in zip(net(x), fused(x), strict=True)]
    except (FusedUnavailableError, RuntimeError) as exc:
        warnings.warn(f"fused oneDNN {type(net).__name__} unavailable ({exc}); using TorchScript", stacklevel=2)
        return optimize_for_cpu(net, size)
    if not all(d <= tol for d, tol in zip(dev, tolerance, strict=True)):
        warnings.warn(
            f"fused oneDNN {type(net).__name__} deviates from the reference ({dev}); using TorchScript", stacklevel=2
        )
        return optimize_for_cpu(net, size)
    return fused


def _check_input(size: int) -> torch.Tensor:
    """A fixed, image-like (smooth plus noise) batch of 2 in [0, 1], channels_last."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.0, 1.0, size)
    smooth = (ramp[None, :, None] * ramp[None, None, :]).expand(3, size, size)
    x = (0.6 * smooth + 0.4 * torch.rand(2, 3, size, size, generator=g)).clamp(0.0, 1.0)
    return x.contiguous(memory_format=torch.channels_last)


class HandNets:
    """The two networks on one device, with batched pre- and post-processing around them.

    ``optimize`` (CPU only) runs the networks' fused oneDNN forms (``fuse_for_cpu``, TorchScript where those
    are unavailable); ``optimize=False`` keeps the eager reference networks."""

    def __init__(
        self, device: str | torch.device = "auto", half: bool = False, batch_size: int = 16, optimize: bool = True
    ):
        self.device = resolve_device(device)
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.batch_size = max(1, int(batch_size))
        # On CPU, per-sample time is lowest at 2 samples per call (measured on a 2-core x86 machine: larger
        # batches spill the caches); GPUs take the whole batch.
        self.call_size = self.batch_size if self.device.type == "cuda" else min(self.batch_size, CPU_CALL_SIZE)
        self.palm_net = load_palm_net(self.device, self.dtype)
        self.landmark_net = load_landmark_net(self.device, self.dtype)
        if optimize and self.device.type == "cpu":
            self.palm_net = fuse_for_cpu(self.palm_net, self.call_size)
            self.landmark_net = fuse_for_cpu(self.landmark_net, self.call_size)

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        # (B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]; the NHWC memory layout stays (channels_last).
        t = torch.from_numpy(images).to(self.device, non_blocking=True)
        return t.permute(0, 3, 1, 2).to(self.dtype).mul_(1.0 / 255.0)

    @torch.inference_mode()
    def _run(self, net, inputs: np.ndarray) -> list[np.ndarray]:
        outs: list[list[np.ndarray]] = []
        for start in range(0, len(inputs), self.call_size):
            res = net(self._to_tensor(inputs[start : start + self.call_size]))
            outs.append([r.float().cpu().numpy() for r in res])
        return [np.concatenate(parts) for parts in zip(*outs, strict=True)]

    def palm_outputs(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw palm-network outputs for (B, 192, 192, 3) uint8 inputs: regressors (B, 2016, 18) in input
        pixels and score logits (B, 2016)."""
        regressors, logits = self._run(self.palm_net, inputs)
        return regressors, logits.reshape(len(inputs), -1)

    def detect_palms(
        self, images: list[np.ndarray], min_score: float = 0.5, max_palms: int | None = None
    ) -> list[list[PalmDetection]]:
        """Palms in each (H, W, 3) uint8 RGB image, best first, in image pixels."""
        if not images:
            return []
        inputs = np.stack([palm_input(im, PALM_INPUT_SIZE) for im in images])
        regressors, logits = self.palm_outputs(inputs)
        sizes = [(im.shape[1], im.shape[0]) for im in images]
        return postprocess_palms(regressors, logits, sizes, min_score, max_palms)

    def landmarks(self, images: list[np.ndarray], rois: list[np.ndarray], flip: bool = False) -> LandmarkBatch:
        """Run the landmark model on the ROIs (M_i, 4) of each image; one batch over all crops. ``flip``: the
        crops are mirrored left-right before the network and its outputs mirrored back (x of the landmarks
        and of the world points, and the handedness), a second view of the same hand."""
        idx = np.concatenate([np.full(len(r), i, np.int64) for i, r in enumerate(rois)]) if rois else np.zeros(0, int)
        all_rois = (
            np.concatenate([np.asarray(r, np.float64).reshape(-1, 4) for r in rois]) if rois else np.zeros((0, 4))
        )
        n = len(all_rois)
        if n == 0:
            z = np.zeros
            return LandmarkBatch(idx, all_rois, z((0, 21, 2)), z((0, 21)), z((0, 21, 3)), z(0), z(0))
        crops = np.empty((n, LANDMARK_INPUT_SIZE, LANDMARK_INPUT_SIZE, 3), np.uint8)
        for i, roi in enumerate(all_rois):
            crops[i] = crop_rois(images[idx[i]], roi[None], LANDMARK_INPUT_SIZE)[0]
        if flip:
            crops = np.ascontiguousarray(crops[:, :, ::-1])
        lm, presence, left, world = self._run(self.landmark_net, crops)
        lm = lm.astype(np.float64)
        world = world.astype(np.float64)
        if flip:  # crop x (pixel edges 0..size) mirrors to size - x; the mirrored hand is the other side
            lm[..., 0] = LANDMARK_INPUT_SIZE - lm[..., 0]
            world[..., 0] = -world[..., 0]
            left = 1.0 - left
        kp2d = crop_to_image(lm[..., :2], all_rois, LANDMARK_INPUT_SIZE)
        kp_z = lm[..., 2] / LANDMARK_INPUT_SIZE / LANDMARK_Z_NORMALIZE * all_rois[:, 2:3]
        world = rotate_in_plane(world, all_rois[:, 3])
        return LandmarkBatch(idx, all_rois, kp2d, kp_z, world, presence.astype(np.float64), left.astype(np.float64))


_END = object()


def prefetch(items: Iterable, depth: int = 4) -> Iterator:
    """Iterate ``items`` in a background thread, ``depth`` items ahead; exceptions re-raise in the caller.

    Closing the returned generator (or dropping it) stops the thread at its next item."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", _END))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))

    thread = threading.Thread(target=worker, name="handcap-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
