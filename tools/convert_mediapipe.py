"""Convert MediaPipe's palm detector and hand landmark model from the mediapipe wheel to one tensor asset.

    python tools/convert_mediapipe.py [--wheel PATH] [--out assets/mediapipe_hands.safetensors] [--check]

Reads palm_detection_full.tflite and hand_landmark_full.tflite from the wheel (a zip file, never installed;
tools/fetch_mediapipe_wheel.py downloads it), parses them with tools/tflite_reader.py, pairs the graph's
weighted ops, in execution order, with the PyTorch networks' layers (checking op kind, stride, padding, fused
activation and shapes), moves weights from TFLite's NHWC layouts to PyTorch's, and writes them, still
float16 as in the source, with handcap.core.tensorfile.save_tensors. The output is deterministic: ``--check``
converts again and compares byte for byte with the existing asset (exit 1 on mismatch).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling tools modules, also when imported by tests

from fetch_mediapipe_wheel import DEFAULT_DEST, REPO, WHEEL_NAME  # noqa: E402
from tflite_reader import Graph, TFLiteFormatError, read_model  # noqa: E402

from handcap.core.tensorfile import save_tensors  # noqa: E402
from handcap.inference.nets import HandLandmarkNet, PalmDetectionNet  # noqa: E402
from handcap.inference.nets.blocks import SameConv2d  # noqa: E402

MODELS = {
    "palm": "mediapipe/modules/palm_detection/palm_detection_full.tflite",
    "landmark": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
}
DEFAULT_OUT = REPO / "assets" / "mediapipe_hands.safetensors"
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "FULLY_CONNECTED")
ATTRIBUTION = (
    "Palm detection and hand landmark models of MediaPipe (https://github.com/google-ai-edge/mediapipe), "
    "Copyright The MediaPipe Authors / Google LLC, licensed under the Apache License 2.0. Weights converted "
    "unchanged (float16) to PyTorch layout by HandCap's tools/convert_mediapipe.py."
)


class ConversionError(ValueError):
    """The input is not a usable mediapipe wheel or the models do not fit the network definitions."""


def read_wheel_models(wheel: str | Path) -> dict[str, bytes]:
    """The two .tflite files from a mediapipe wheel, as {"palm": bytes, "landmark": bytes}."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise ConversionError(f"{wheel} does not exist; run `python tools/fetch_mediapipe_wheel.py` first")
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            missing = [m for m in MODELS.values() if m not in names]
            if missing:
                raise ConversionError(
                    f"{wheel.name} lacks {', '.join(missing)}; use the mediapipe 0.10.21 wheel ({WHEEL_NAME}), "
                    "newer wheels no longer carry these models"
                )
            return {key: zf.read(member) for key, member in MODELS.items()}
    except zipfile.BadZipFile:
        raise ConversionError(f"{wheel} is not a wheel (not a zip file)") from None


def _const(graph: Graph, index: int, producers: dict[int, int]) -> np.ndarray:
    """Constant data of tensor ``index``, looking through a DEQUANTIZE op (float16 weights stay float16)."""
    t = graph.tensors[index]
    if t.data is None and index in producers:
        op = graph.operators[producers[index]]
        if op.op == "DEQUANTIZE":
            t = graph.tensors[op.inputs[0]]
    if t.data is None:
        raise ConversionError(f"tensor {t.name!r} should be a constant weight but has no data")
    return t.data


def _to_torch_layout(op, module, arrays: list[np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Map one TFLite weighted op onto ``module``'s parameters (name -> array), checking kind and options."""
    o = op.options
    if isinstance(module, SameConv2d):
        kind = "DEPTHWISE_CONV_2D" if module.depthwise else "CONV_2D"
        if op.op != kind:
            raise ConversionError(f"{where}: graph has {op.op}, network expects {kind}")
        if (o["stride_h"], o["stride_w"]) != module.stride or (o["dilation_h"], o["dilation_w"]) != (1, 1):
            raise ConversionError(f"{where}: stride/dilation {o} do not match the network ({module.stride})")
        if o["padding"] != "SAME" and module.kernel_size != (1, 1):
            raise ConversionError(f"{where}: padding {o['padding']} but the network pads 'SAME'")
        if o["activation"] != module.activation:
            raise ConversionError(f"{where}: fused activation {o['activation']}, network has {module.activation}")
        if kind == "DEPTHWISE_CONV_2D":
            if o["depth_multiplier"] != 1:
                raise ConversionError(f"{where}: depth multiplier {o['depth_multiplier']} is not supported")
            weight = arrays[0].transpose(3, 0, 1, 2)  # (1, kh, kw, C) -> (C, 1, kh, kw)
        else:
            weight = arrays[0].transpose(0, 3, 1, 2)  # (O, kh, kw, I) -> (O, I, kh, kw)
        params = {"weight": weight, "bias": arrays[1]}
    elif op.op == "PRELU":
        alpha = arrays[0]
        if alpha.ndim != 3 or alpha.shape[:2] != (1, 1):
            raise ConversionError(f"{where}: PReLU slope shape {alpha.shape} is not per-channel (1, 1, C)")
        params = {"weight": alpha.reshape(-1)}
    elif op.op == "FULLY_CONNECTED":
        if o.get("activation") is not None:
            raise ConversionError(f"{where}: fused activation {o['activation']} on a head is not expected")
        params = {"weight": arrays[0], "bias": arrays[1]}  # (O, I), same as nn.Linear
    else:
        raise ConversionError(f"{where}: cannot map {op.op} onto {type(module).__name__}")
    for name, value in params.items():
        expected = tuple(getattr(module, name).shape)
        if value.shape != expected:
            raise ConversionError(f"{where}: {op.op} {name} has shape {value.shape}, network expects {expected}")
    return {name: np.ascontiguousarray(value) for name, value in params.items()}


def _check_plain_ops(graph: Graph, key: str) -> None:
    """Check the weight-free ops behave as the PyTorch code assumes (resize flags, pooling, channel padding)."""
    for op in graph.operators:
        where = f"{key} op {op.index} {op.op}"
        o = op.options
        if op.op == "RESIZE_BILINEAR" and (o["align_corners"] or not o["half_pixel_centers"]):
            raise ConversionError(f"{where}: expected half_pixel_centers=True, align_corners=False, got {o}")
        if op.op == "MAX_POOL_2D" and (o["filter_h"], o["filter_w"], o["stride_h"], o["stride_w"]) != (2, 2, 2, 2):
            raise ConversionError(f"{where}: expected a 2x2 stride-2 pool, got {o}")
        if op.op == "PAD":
            pads = graph.tensors[op.inputs[1]].data
            if pads is None or pads[:3].any() or pads[3, 0] != 0:
                raise ConversionError(f"{where}: expected zero padding of channels at the end only, got {pads}")
        if op.op in ("ADD", "CONCATENATION") and o.get("activation") is not None:
            raise ConversionError(f"{where}: fused activation {o['activation']} is not expected")


def _check_landmark_heads(graph: Graph, pairs: list[tuple[object, str]], net: HandLandmarkNet) -> None:
    """Each fully connected head must feed the graph output the network names it after (LOGISTIC allowed)."""
    consumers: dict[int, list] = {}
    for op in graph.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    for op, name in pairs:
        if op.op != "FULLY_CONNECTED":
            continue
        out = op.outputs[0]
        nxt = consumers.get(out, [])
        sigmoid = len(nxt) == 1 and nxt[0].op == "LOGISTIC"
        if sigmoid:
            out = nxt[0].outputs[0]
        if out not in graph.outputs:
            raise ConversionError(f"landmark head {name}: its output is not a graph output")
        expected = net.TFLITE_OUTPUTS[graph.outputs.index(out)]
        if name != expected:
            raise ConversionError(f"landmark head {name} feeds the graph output of {expected}")
        if sigmoid != (name in ("presence", "handedness")):
            raise ConversionError(f"landmark head {name}: sigmoid in graph = {sigmoid}, network assumes otherwise")


def convert_graph(graph: Graph, net, key: str) -> dict[str, np.ndarray]:
    """State dict arrays (float16 as stored) for ``net`` from the TFLite ``graph``."""
    producers = {out: op.index for op in graph.operators for out in op.outputs}
    ops = [op for op in graph.operators if op.op in WEIGHTED_OPS]
    layers = net.tflite_layers()
    if len(ops) != len(layers):
        raise ConversionError(f"{key}: graph has {len(ops)} weighted ops, {type(net).__name__} has {len(layers)}")
    names = {id(m): n for n, m in net.named_modules()}
    _check_plain_ops(graph, key)
    out: dict[str, np.ndarray] = {}
    pairs = []
    for op, module in zip(ops, layers, strict=True):
        name = names[id(module)]
        arrays = [_const(graph, i, producers) for i in op.inputs[1:] if i >= 0]
        for pname, value in _to_torch_layout(op, module, arrays, f"{key} op {op.index} -> {name}").items():
            out[f"{name}.{pname}"] = value
        pairs.append((op, name))
    if isinstance(net, HandLandmarkNet):
        _check_landmark_heads(graph, pairs, net)
    missing = set(net.state_dict()) - {k for k in out}
    if missing:
        raise ConversionError(f"{key}: no weights for {sorted(missing)}")
    return out


def convert_wheel(wheel: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors named "palm.<key>" / "landmark.<key>", metadata) converted from the wheel."""
    wheel = Path(wheel)
    blobs = read_wheel_models(wheel)
    tensors: dict[str, np.ndarray] = {}
    meta = {
        "source": wheel.name,
        "source_version": "mediapipe==" + wheel.name.split("-")[1] if "-" in wheel.name else "unknown",
        "license": "Apache-2.0",
        "attribution": ATTRIBUTION,
        "converter": "tools/convert_mediapipe.py",
    }
    for key, net in (("palm", PalmDetectionNet()), ("landmark", HandLandmarkNet())):
        try:
            graph = read_model(blobs[key])
        except TFLiteFormatError as exc:
            raise ConversionError(f"{MODELS[key]} in {wheel.name}: {exc}") from None
        for name, value in convert_graph(graph, net, key).items():
            tensors[f"{key}.{name}"] = value
        meta[f"{key}.file"] = MODELS[key]
        meta[f"{key}.sha256"] = hashlib.sha256(blobs[key]).hexdigest()
    return tensors, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert MediaPipe hand models (.tflite in the wheel) to PyTorch.")
    parser.add_argument("--wheel", type=Path, default=DEFAULT_DEST / WHEEL_NAME, help="mediapipe 0.10.21 wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="asset to write (or compare with --check)")
    parser.add_argument("--check", action="store_true", help="convert again and compare byte for byte with --out")
    args = parser.parse_args(argv)
    try:
        tensors, meta = convert_wheel(args.wheel)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.check:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(args.out, tensors, meta)
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(tensors)} tensors)")
        return 0
    if not args.out.is_file():
        print(f"error: {args.out} does not exist, nothing to check", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / args.out.name
        save_tensors(fresh, tensors, meta)
        same = fresh.read_bytes() == args.out.read_bytes()
    print(f"{args.out}: {'identical to' if same else 'DIFFERS from'} a fresh conversion of {args.wheel.name}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
