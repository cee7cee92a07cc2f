"""Minimal reader for TFLite flatbuffer models (only the schema fields the converter needs).

A ``.tflite`` file is a FlatBuffer whose root table is ``tflite.Model`` (schema.fbs in the TensorFlow repo).
FlatBuffer basics used here: a table starts with a signed 32-bit offset back to its vtable; the vtable lists
(after two uint16 sizes) one uint16 offset per field, 0 meaning "absent, use the default". Offsets to
sub-tables, vectors and strings are uint32 and relative to where they are stored. All little-endian.

Only single-subgraph float models with plain (non-sparse, non-quantised-int) constant tensors are supported;
anything else raises TFLiteFormatError instead of being misread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np


class TFLiteFormatError(ValueError):
    """The bytes are not a TFLite model this reader understands."""


# BuiltinOperator enum values (schema.fbs) for the ops these models use, plus a few neighbours for messages.
BUILTIN_OPS = {
    0: "ADD",
    1: "AVERAGE_POOL_2D",
    2: "CONCATENATION",
    3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE",
    9: "FULLY_CONNECTED",
    14: "LOGISTIC",
    17: "MAX_POOL_2D",
    18: "MUL",
    19: "RELU",
    21: "RELU6",
    22: "RESHAPE",
    23: "RESIZE_BILINEAR",
    25: "SOFTMAX",
    34: "PAD",
    40: "MEAN",
    41: "SUB",
    54: "PRELU",
}

# TensorType enum -> numpy dtype (the types a float model can hold).
TENSOR_TYPES = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
}

# Field index lists of the builtin option tables we decode: (name, scalar format, default).
_OPTION_FIELDS = {
    "CONV_2D": [("padding", "b", 0), ("stride_w", "i", 0), ("stride_h", "i", 0), ("activation", "b", 0),
                ("dilation_w", "i", 1), ("dilation_h", "i", 1)],
    "DEPTHWISE_CONV_2D": [("padding", "b", 0), ("stride_w", "i", 0), ("stride_h", "i", 0),
                          ("depth_multiplier", "i", 0), ("activation", "b", 0), ("dilation_w", "i", 1),
                          ("dilation_h", "i", 1)],
    "MAX_POOL_2D": [("padding", "b", 0), ("stride_w", "i", 0), ("stride_h", "i", 0), ("filter_w", "i", 0),
                    ("filter_h", "i", 0), ("activation", "b", 0)],
    "AVERAGE_POOL_2D": [("padding", "b", 0), ("stride_w", "i", 0), ("stride_h", "i", 0), ("filter_w", "i", 0),
                        ("filter_h", "i", 0), ("activation", "b", 0)],
    "ADD": [("activation", "b", 0)],
    "FULLY_CONNECTED": [("activation", "b", 0), ("weights_format", "b", 0), ("keep_num_dims", "?", False)],
    "CONCATENATION": [("axis", "i", 0), ("activation", "b", 0)],
    "RESIZE_BILINEAR": [("new_height", "i", 0), ("new_width", "i", 0), ("align_corners", "?", False),
                        ("half_pixel_centers", "?", False)],
    "MEAN": [("keep_dims", "?", False)],
}  # fmt: skip

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph: ``data`` is the constant payload (None for activations)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None


@dataclass(frozen=True)
class Operator:
    """One op in execution order; ``options`` holds the decoded builtin options (see _OPTION_FIELDS)."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    """The single subgraph of a model: tensors by index, operators in execution order."""

    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


class _Buf:
    """Bounds-checked FlatBuffer accessors over one bytes object."""

    def __init__(self, data: bytes):
        self.b = data

    def _unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.b):
            raise TFLiteFormatError(f"offset {pos} outside the {len(self.b)}-byte model (corrupt file?)")
        return struct.unpack_from("<" + fmt, self.b, pos)[0]

    def field_pos(self, table: int, idx: int) -> int:
        """Absolute position of field ``idx`` of the table at ``table``, or 0 when absent."""
        vtable = table - self._unpack("i", table)
        vt_size = self._unpack("H", vtable)
        slot = 4 + 2 * idx
        if slot >= vt_size:
            return 0
        off = self._unpack("H", vtable + slot)
        return table + off if off else 0

    def scalar(self, table: int, idx: int, fmt: str, default):
        pos = self.field_pos(table, idx)
        return self._unpack(fmt, pos) if pos else default

    def indirect(self, pos: int) -> int:
        return pos + self._unpack("I", pos)

    def table(self, table: int, idx: int) -> int | None:
        pos = self.field_pos(table, idx)
        return self.indirect(pos) if pos else None

    def vector(self, table: int, idx: int) -> tuple[int, int]:
        """(start of elements, length) of a vector field; (0, 0) when absent."""
        pos = self.field_pos(table, idx)
        if not pos:
            return 0, 0
        vec = self.indirect(pos)
        return vec + 4, self._unpack("I", vec)

    def table_vector(self, table: int, idx: int) -> list[int]:
        start, n = self.vector(table, idx)
        return [self.indirect(start + 4 * i) for i in range(n)]

    def int_vector(self, table: int, idx: int) -> tuple[int, ...]:
        start, n = self.vector(table, idx)
        return tuple(self._unpack("i", start + 4 * i) for i in range(n))

    def bytes_vector(self, table: int, idx: int) -> bytes:
        start, n = self.vector(table, idx)
        if start + n > len(self.b):
            raise TFLiteFormatError("byte vector runs past the end of the model (truncated?)")
        return self.b[start : start + n]

    def string(self, table: int, idx: int) -> str:
        return self.bytes_vector(table, idx).decode("utf-8", errors="replace")


def read_model(data: bytes) -> Graph:
    """Parse TFLite model bytes into a Graph (tensors with constant data, operators with options)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteFormatError("not a TFLite model (missing the 'TFL3' file identifier)")
    fb = _Buf(data)
    model = fb.indirect(0)
    opcodes = []
    for oc in fb.table_vector(model, 1):
        # builtin_code (field 3) supersedes deprecated_builtin_code (field 0) once codes exceed 127.
        code = max(fb.scalar(oc, 0, "b", 0), fb.scalar(oc, 3, "i", 0))
        if code not in BUILTIN_OPS:
            raise TFLiteFormatError(f"unsupported TFLite builtin operator code {code}")
        opcodes.append(BUILTIN_OPS[code])
    buffers = [fb.bytes_vector(b, 0) for b in fb.table_vector(model, 4)]
    subgraphs = fb.table_vector(model, 2)
    if len(subgraphs) != 1:
        raise TFLiteFormatError(f"expected one subgraph, found {len(subgraphs)}")
    sg = subgraphs[0]

    tensors = []
    for i, t in enumerate(fb.table_vector(sg, 0)):
        shape = fb.int_vector(t, 0)
        ttype = fb.scalar(t, 1, "b", 0)
        if ttype not in TENSOR_TYPES:
            raise TFLiteFormatError(f"tensor {i}: unsupported tensor type {ttype}")
        if fb.field_pos(t, 6):
            raise TFLiteFormatError(f"tensor {i}: sparse tensors are not supported")
        dtype = np.dtype(TENSOR_TYPES[ttype]).newbyteorder("<")
        buf_idx = fb.scalar(t, 2, "I", 0)
        raw = buffers[buf_idx] if buf_idx < len(buffers) else b""
        arr = None
        if raw:
            count = int(np.prod(shape)) if shape else 1
            if len(raw) != count * dtype.itemsize:
                raise TFLiteFormatError(f"tensor {i}: buffer holds {len(raw)} bytes, shape {shape} needs more/less")
            arr = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        tensors.append(Tensor(i, fb.string(t, 3), tuple(shape), dtype.newbyteorder("="), arr))

    operators = []
    for i, o in enumerate(fb.table_vector(sg, 3)):
        opcode = fb.scalar(o, 0, "I", 0)
        if opcode >= len(opcodes):
            raise TFLiteFormatError(f"operator {i}: opcode index {opcode} out of range")
        name = opcodes[opcode]
        options = {}
        opt_table = fb.table(o, 4)
        if opt_table is not None:
            for k, (key, fmt, default) in enumerate(_OPTION_FIELDS.get(name, [])):
                options[key] = fb.scalar(opt_table, k, fmt, default)
        if "padding" in options:
            options["padding"] = PADDING.get(options["padding"], f"unknown padding {options['padding']}")
        if "activation" in options:
            options["activation"] = ACTIVATIONS.get(options["activation"], options["activation"])
        operators.append(Operator(i, name, fb.int_vector(o, 1), fb.int_vector(o, 2), options))
    return Graph(tensors, operators, fb.int_vector(sg, 1), fb.int_vector(sg, 2))
