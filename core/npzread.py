"""Bounded reading of ``.npy`` members of a zip (``.npz``) archive, for files from anywhere.

``np.load`` trusts a member's header: a declared shape of 2**40 elements allocates before anything is
checked, and a mangled header or compressed stream escapes as whatever its parser raises (tokenize.TokenError,
zlib.error, NotImplementedError, ...). ``read_member`` parses the header first, checks dtype and shape
against what the caller expects and the byte count against the zip entry, then reads exactly that much.
Every failure is an ``NpzMemberError`` naming the member. Pickled (object) members are never loaded.
"""

from __future__ import annotations

import math
import struct
import tokenize
import warnings
import zipfile
import zlib

import numpy as np

MAX_HEADER_BYTES = 10_000  # numpy's own default limit for a header it will parse

#: What a corrupt archive or compressed stream raises from zipfile / zlib.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,  # unknown compression method or flag bits
    RuntimeError,  # encrypted member
    struct.error,
    OverflowError,
    ValueError,
)
#: What numpy's header parser raises for a mangled header (it evaluates a Python literal).
HEADER_ERRORS = (ValueError, SyntaxError, TypeError, KeyError, tokenize.TokenError, RecursionError, MemoryError)


class NpzMemberError(ValueError):
    """A member of an .npz archive is unreadable or not the array expected."""


def read_member(
    z: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    shape: tuple[int | None, ...],
    kinds: str,
    max_len: int = 0,
    itemsize: int | None = None,
) -> np.ndarray:
    """The array stored in member ``info``, a writable copy in native byte order.

    Args:
        shape: expected shape; ``None`` for a dimension of any length from 0 to ``max_len``.
        kinds: accepted ``dtype.kind`` letters (e.g. "f" for floats, "iu" for integers, "b" for bool).
        itemsize: required bytes per element, if any (e.g. 1 for uint8 text).

    Messages start with the member's name without ".npy" (``right.theta: ...``).
    """
    name = info.filename.removesuffix(".npy")
    try:
        with z.open(info) as f:
            dtype, fortran, found = _header(f, name)
            _check(name, dtype, found, shape, kinds, max_len)
            if itemsize is not None and dtype.itemsize != itemsize:
                raise NpzMemberError(f"{name}: dtype {dtype.str} has {dtype.itemsize} bytes per item, not {itemsize}")
            nbytes = math.prod(found) * dtype.itemsize
            start = f.tell()
            if info.file_size != start + nbytes:
                raise NpzMemberError(
                    f"{name}: header declares {found} {dtype.str} ({nbytes} bytes) but the entry holds "
                    f"{info.file_size - start} bytes of data"
                )
            data = f.read(nbytes)
            f.read(1)  # reach the end so zipfile checks the CRC
    except NpzMemberError:
        raise
    except ZIP_ERRORS as exc:
        raise NpzMemberError(f"{name}: corrupt member ({type(exc).__name__}: {_line(exc)})") from None
    if len(data) != nbytes:
        raise NpzMemberError(f"{name}: {len(data)} of {nbytes} data bytes present (truncated)")
    flat = np.frombuffer(data, dtype=dtype)
    arr = flat.reshape(found[::-1]).T if fortran else flat.reshape(found)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _header(f, name: str) -> tuple[np.dtype, bool, tuple[int, ...]]:
    try:
        with warnings.catch_warnings():
            # the header is a Python literal: crafted ones raise e.g. "invalid escape sequence" warnings
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
            else:
                raise NpzMemberError(f"{name}: .npy format version {version} is not read (1.0 and 2.0 are)")
    except NpzMemberError:
        raise
    except HEADER_ERRORS as exc:  # a corrupt stream (zlib.error, bad CRC, ...) is read_member's to report
        raise NpzMemberError(f"{name}: not a readable .npy header ({type(exc).__name__}: {_line(exc)})") from None
    return dtype, bool(fortran), tuple(shape)


def _check(name: str, dtype: np.dtype, found: tuple, shape: tuple, kinds: str, max_len: int) -> None:
    if dtype.hasobject:
        raise NpzMemberError(f"{name}: refused to load a pickled (object) array")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in kinds:
        raise NpzMemberError(f"{name}: dtype {dtype.str} is not one of the expected kinds {kinds!r}")
    expected = "(" + ", ".join("T" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    if len(found) != len(shape) or any(
        not 0 <= n <= max_len if want is None else n != want for n, want in zip(found, shape, strict=False)
    ):
        raise NpzMemberError(f"{name}: expected shape {expected}, got {found}")


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no detail"
