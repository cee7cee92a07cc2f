"""Deterministic tensor container (safetensors layout) read and written with numpy.

The shipped assets (converted MediaPipe weights, the built-in hand model) use
this format: an 8-byte little-endian header length, a JSON header with sorted
keys, then raw little-endian array bytes. No pickle, no zip timestamps, so a
generator script reproduces an asset bit for bit, and files written here load
with the ``safetensors`` package too.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


class TensorFileError(ValueError):
    """The file is not a valid tensor file."""


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (name -> array) and string ``metadata`` to ``path`` atomically."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        if arr.dtype not in _CODES:
            raise TensorFileError(f"tensor {name!r}: unsupported dtype {arr.dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _CODES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a tensor file -> (name -> array, metadata). Raises TensorFileError on bad files."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise TensorFileError(f"{path}: too short to be a tensor file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise TensorFileError(f"{path}: header length {n} exceeds the file size (truncated?)")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TensorFileError(f"{path}: header is not JSON ({exc})") from None
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(raw)[8 + n :]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if end > len(body):
            raise TensorFileError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    return out, meta
