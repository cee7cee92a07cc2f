"""Mutators for fuzzing the capture reader, shared by tests/test_capture_fuzz.py and tools/fuzz_capture.py.

Two families, both seeded (``random.Random``) and deterministic:

* byte mutations of a whole valid ``.npz``: flipped bytes, truncation, inserted, deleted, duplicated or
  overwritten ranges (the zip's checksums then mostly fail);
* member mutations, re-zipped so every CRC is valid: ``.npy`` headers (shape, dtype descr, fortran_order,
  header text, magic), data bytes and special float values, the ``meta`` JSON (other JSON types and values),
  and the member set (dropped, duplicated, renamed, extra, swapped members, other compressions).

``run_mutations`` feeds each mutant to a reader module (``read_capture`` + ``CaptureFormatError``) and
counts: the reader's own error, a capture that passes ``validate()``, or a foreign exception.
"""

from __future__ import annotations

import ast
import io
import json
import random
import struct
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed so the base file is the same bytes every run
Members = list[tuple[str, bytes]]


def base_capture(mod, t: int = 3):
    """A small, plausible two-hand capture (``mod`` is the capture module whose dataclasses to use)."""
    rng = np.random.default_rng(3)
    # A flat right hand: wrist at 0, four fingers 8-9 cm up the y axis, thumb to the side (MANO order).
    chains = {1: (-0.02, 0.09), 4: (0.0, 0.095), 7: (0.04, 0.08), 10: (0.02, 0.09), 13: (-0.035, 0.03)}
    rest = np.zeros((16, 3))
    for first, (x, y) in chains.items():
        for k in range(3):
            rest[first + k] = (x - 0.01 * k * (first == 13), y + 0.03 * k, 0.0)

    def track(side):
        return mod.HandTrack(
            side=side,
            theta=rng.normal(0, 0.2, (t, 16, 3)).astype(np.float32),
            beta=rng.normal(0, 0.5, 10).astype(np.float32),
            transl=(rng.normal(0, 0.05, (t, 3)) + [0, 0, 0.6]).astype(np.float32),
            kp2d=rng.uniform(0, 320, (t, 21, 2)).astype(np.float32),
            kp3d=rng.normal(0, 0.05, (t, 21, 3)).astype(np.float32),
            frame_conf=rng.uniform(0.5, 1, t).astype(np.float32),
            kp_conf=rng.uniform(0, 1, (t, 21)).astype(np.float32),
            valid=np.arange(t) != 1,
            rest_joints=(rest * (1 if side == "right" else [-1, 1, 1])).astype(np.float32),
            joint_offsets=rng.normal(0, 0.002, (16, 3)).astype(np.float32),
        )

    cap = mod.Capture(
        source="/footage/clip.mp4",
        frames=np.arange(4, 4 + 2 * t, 2, dtype=np.int64),
        fps=30.0,
        image_size=(320, 240),
        intrinsics=mod.CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240),
        hand_model="builtin-v1",
        hands={"right": track("right"), "left": track("left")},
        info={"fit": {"reproj_px": 1.5}},
    )
    return cap


def base_members(mod, tmp: Path, version: int = 2) -> Members:
    """The members of ``base_capture`` written by ``mod.write_capture`` (version 1: no joint_offsets)."""
    path = mod.write_capture(tmp / "base.npz", base_capture(mod))
    with zipfile.ZipFile(path) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    path.unlink()
    if version == 1:
        members = [(n, b) for n, b in members if not n.endswith(".joint_offsets.npy")]
        meta = json.loads(_npy_data(dict(members)["meta.npy"]))
        meta["version"] = 1
        members = _replace(members, "meta.npy", _meta_npy(meta))
    return members


def zip_members(members: Members, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Members -> .npz bytes with valid CRCs (duplicate names are kept, as a crafted file may have them)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted here
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = compression
            z.writestr(info, data)
    return buf.getvalue()


# --- .npy helpers -------------------------------------------------------------------------------------------


def _split_npy(raw: bytes) -> tuple[bytes, str, bytes]:
    """(magic + version, header text, data) of a version 1.0 .npy written by numpy."""
    (hlen,) = struct.unpack("<H", raw[8:10])
    return raw[:8], raw[10 : 10 + hlen].decode("latin1"), raw[10 + hlen :]


def _npy_data(raw: bytes) -> bytes:
    return _split_npy(raw)[2]


def _join_npy(magic: bytes, header: str, data: bytes) -> bytes:
    text = header.rstrip("\n").encode("latin1", "replace")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return magic + struct.pack("<H", len(text) % 65536) + text + data


def _header(descr="'<f4'", fortran="False", shape="(3,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def _meta_npy(meta) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8))
    return buf.getvalue()


def _replace(members: Members, name: str, data: bytes) -> Members:
    return [(n, data if n == name else b) for n, b in members]


# --- mutators: (rng, members) -> (members, compression) or bytes ------------------------------------------

HUGE = [2**31, 2**32 + 5, 2**40, 2**62, 2**63 - 1, 10**15, 10**30]
DESCRS = [
    "'<f8'", "'>f4'", "'<f2'", "'|b1'", "'<i8'", "'<u8'", "'|u1'", "'|O'", "'<U4'", "'|S4'", "'<c8'",
    "'<M8[s]'", "'|V4'", "[('a', '<f4')]", "('<f4', (3,))", "'bogus'", "'<f4 '", "42", "None", "{'x': 1}",
]  # fmt: skip
JSON_VALUES = [
    None, True, False, 0, -1, 1, 2, 1e15, -1e15, 1e308, 10**20, -0.0, 3.5, "", "x", "right", "\ud800",
    "a\x00b", [], [0], [1, 2], [1280, 720], [10**12, 10**12], [-5, 7], ["a", "b"], {}, {"a": 1}, [[[]]],
    {"fx": "1"}, {"fx": 0, "fy": -1, "cx": 1, "cy": 1}, float("nan"), float("inf"), float("-inf"),
]  # fmt: skip
META_KEYS = ["format", "version", "source", "fps", "image_size", "intrinsics", "hand_model", "sides", "info"]


def _pick_member(rng: random.Random, members: Members) -> int:
    return rng.randrange(len(members))


def _parsed(raw: bytes) -> tuple[bytes, dict, bytes] | None:
    """(magic, header dict, data) of a well-formed .npy, None once an earlier mutation broke it."""
    try:
        magic, header, data = _split_npy(raw)
        h = ast.literal_eval(header)
        return (magic, h, data) if isinstance(h, dict) and {"descr", "shape"} <= set(h) else None
    except (ValueError, SyntaxError, struct.error, TypeError, MemoryError, RecursionError):
        return None


def mut_shape(rng, members):
    i = _pick_member(rng, members)
    parsed = _parsed(members[i][1])
    if parsed is None:
        return members
    magic, h, data = parsed
    shape = list(h["shape"])
    choice = rng.randrange(6)
    if choice == 0 and shape:
        shape.pop(rng.randrange(len(shape)))
    elif choice == 1:
        shape.insert(rng.randrange(len(shape) + 1), rng.choice([1, 2, 3, 0]))
    elif choice == 2 and shape:
        shape[rng.randrange(len(shape))] = rng.choice(HUGE)
    elif choice == 3 and shape:
        shape[rng.randrange(len(shape))] = rng.choice([0, 1, 2, 4, 16, 21, -1, -(2**40)])
    elif choice == 4:
        shape = [rng.choice(HUGE) for _ in range(rng.randrange(1, 4))]
    else:
        shape = []
    text = _header(descr=repr(h["descr"]), shape=repr(tuple(shape)))
    return _replace_at(members, i, _join_npy(magic, text, data))


def mut_descr(rng, members):
    i = _pick_member(rng, members)
    parsed = _parsed(members[i][1])
    if parsed is None:
        return members
    magic, h, data = parsed
    shape = h["shape"]
    return _replace_at(members, i, _join_npy(magic, _header(descr=rng.choice(DESCRS), shape=repr(shape)), data))


def mut_fortran(rng, members):
    i = _pick_member(rng, members)
    parsed = _parsed(members[i][1])
    if parsed is None:
        return members
    magic, h, data = parsed
    fortran = rng.choice(["True", "False", "1", "0", "'yes'", "None"])
    return _replace_at(members, i, _join_npy(magic, _header(repr(h["descr"]), fortran, repr(h["shape"])), data))


def mut_header_text(rng, members):
    i = _pick_member(rng, members)
    magic, header, data = _split_npy(members[i][1])
    if rng.random() < 0.3:
        header = rng.choice(
            [
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
                "{'descr': '<f4', 'fortran_order': False}",
                "[1, 2, 3]",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } '''",
                '{"descr": "<f4", "fortran_order": False, "shape": (1e400,)}',
                "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 200 + ")" * 200 + "}",
                "",
            ]
        )
    else:
        chars = list(header) or [" "]
        for _ in range(rng.randrange(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice("(){}[],:'\"\\ 0123456789-x\x00\xff#")
        header = "".join(chars)
    return _replace_at(members, i, _join_npy(magic, header, data))


def mut_magic(rng, members):
    i = _pick_member(rng, members)
    raw = bytearray(members[i][1])
    pos = rng.randrange(10)  # magic, version and header length
    raw[pos] = rng.randrange(256)
    return _replace_at(members, i, bytes(raw))


def mut_data(rng, members):
    i = _pick_member(rng, members)
    raw = members[i][1]
    data = bytearray(_npy_data(raw))
    choice = rng.randrange(4)
    if choice == 0 and data:
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1:
        del data[rng.randrange(len(data) + 1) :]
    elif choice == 2:
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    elif len(data) >= 4:
        value = rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e15, -5.0, 2.0, 1e-30, 0.0, 1e6])
        word = struct.pack("<f", value)
        at = 4 * rng.randrange(len(data) // 4)
        data[at : at + 4] = word
    return _replace_at(members, i, raw[: len(raw) - len(_npy_data(raw))] + bytes(data))


def mut_meta(rng, members):
    names = [n for n, _ in members]
    if "meta.npy" not in names:
        return members
    try:
        meta = json.loads(_npy_data(dict(members)["meta.npy"]))
    except (ValueError, RecursionError):  # an earlier mutation broke it
        meta = None
    choice = rng.randrange(7)
    if choice == 0 or not isinstance(meta, dict):
        meta = rng.choice(JSON_VALUES)
    elif choice in (1, 2):
        meta[rng.choice(META_KEYS)] = rng.choice(JSON_VALUES)
    elif choice == 3:
        meta.pop(rng.choice(META_KEYS), None)
    elif choice == 4:
        sub = meta.get(rng.choice(["intrinsics", "image_size", "sides"]))
        if isinstance(sub, dict) and sub:
            sub[rng.choice(list(sub))] = rng.choice(JSON_VALUES)
        elif isinstance(sub, list) and sub:
            sub[rng.randrange(len(sub))] = rng.choice(JSON_VALUES)
    elif choice == 5:
        depth = rng.choice([50, 5000, 100000])
        return _replace(members, "meta.npy", _raw_meta("[" * depth + "]" * depth))
    else:
        raw = rng.choice([b"\xff\xfe{}", b'{"format": "handcap.capture"', b"\x00" * 8, b"nan", b"1" * 5000])
        return _replace(members, "meta.npy", _raw_meta(raw))
    return _replace(members, "meta.npy", _meta_npy(meta))


def _raw_meta(text: str | bytes) -> bytes:
    raw = text.encode("latin1") if isinstance(text, str) else text
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(raw, np.uint8))
    return buf.getvalue()


def mut_members(rng, members):
    members = list(members)
    choice = rng.randrange(6)
    i = rng.randrange(len(members))
    if choice == 0:
        members.pop(i)
    elif choice == 1:
        members.insert(rng.randrange(len(members) + 1), members[i])
    elif choice == 2:
        name, raw = members[i]
        members[i] = (rng.choice(["x.npy", "meta", "right.theta.npy", "left.extra.npy", "../evil.npy", name[:-4]]), raw)
    elif choice == 3:
        members.append((rng.choice(["middle.theta.npy", "extra.npy", "right.theta"]), members[i][1]))
    elif choice == 4:
        j = rng.randrange(len(members))
        (a, ra), (b, rb) = members[i], members[j]
        members[i], members[j] = (a, rb), (b, ra)
    else:
        side = rng.choice(["right", "left"])
        members = [(n, b) for n, b in members if not n.startswith(side + ".")]
    return members


def _replace_at(members: Members, i: int, raw: bytes) -> Members:
    out = list(members)
    out[i] = (out[i][0], raw)
    return out


MEMBER_MUTATORS: dict[str, Callable] = {
    "shape": mut_shape,
    "descr": mut_descr,
    "fortran": mut_fortran,
    "header_text": mut_header_text,
    "magic": mut_magic,
    "data": mut_data,
    "meta": mut_meta,
    "members": mut_members,
}


def byte_mutation(rng: random.Random, raw: bytes) -> tuple[str, bytes]:
    """One random byte-level mutation of a whole file."""
    data = bytearray(raw)
    kind = rng.choice(["flip", "truncate", "insert", "delete", "duplicate", "overwrite"])
    n = len(data)
    a = rng.randrange(n)
    b = min(n, a + rng.choice([1, 2, 4, 16, 64, 512]))
    if kind == "flip":
        for _ in range(rng.randrange(1, 9)):
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del data[a:]
    elif kind == "insert":
        data[a:a] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 30])))
    elif kind == "delete":
        del data[a:b]
    elif kind == "duplicate":
        data[rng.randrange(n) : rng.randrange(n)] = data[a:b]
    else:
        data[a:b] = bytes([rng.choice([0, 0xFF, 0x7F, 0x80])]) * (b - a)
    return kind, bytes(data)


def member_mutation(rng: random.Random, members: Members) -> tuple[str, bytes]:
    """1-2 member mutations, re-zipped with valid checksums."""
    kinds = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        kind = rng.choice(list(MEMBER_MUTATORS))
        kinds.append(kind)
        members = MEMBER_MUTATORS[kind](rng, members)
        if not members:
            break
    compression = rng.choice([zipfile.ZIP_DEFLATED] * 12 + [zipfile.ZIP_STORED] * 7 + [zipfile.ZIP_BZIP2])
    return "+".join(kinds), zip_members(members, compression)


@dataclass
class FuzzCounts:
    """Outcome counts of one fuzz run; ``foreign`` maps exception type -> count, ``examples`` one message each."""

    tried: int = 0
    clean: int = 0
    valid: int = 0
    foreign: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    by_family: Counter = field(default_factory=Counter)

    @property
    def foreign_total(self) -> int:
        return sum(self.foreign.values())

    def summary(self) -> str:
        lines = [
            f"mutations tried: {self.tried} ({', '.join(f'{k} {v}' for k, v in sorted(self.by_family.items()))})",
            f"clean reader errors: {self.clean}",
            f"valid reads: {self.valid}",
            f"foreign exceptions: {self.foreign_total}",
        ]
        for name, n in self.foreign.most_common():
            lines.append(f"  {name}: {n}  e.g. {self.examples[name]}")
        return "\n".join(lines)


def classify(mod, path: Path, counts: FuzzCounts, label: str, check: Callable | None = None) -> None:
    """Read ``path`` with ``mod.read_capture`` and count the outcome; ``check(capture)`` then runs on a valid read
    (e.g. the importer's arithmetic), and whatever it raises counts as foreign too."""
    counts.tried += 1
    try:
        cap = mod.read_capture(path)
        cap.validate()
        if check is not None:
            check(cap)
    except mod.CaptureFormatError as exc:
        if "\n" in str(exc):  # the reader's messages are one line; a multi-line one counts against it
            counts.foreign["multi-line CaptureFormatError"] += 1
            counts.examples.setdefault("multi-line CaptureFormatError", f"[{label}] {str(exc)[:160]!r}")
            return
        counts.clean += 1
        return
    except Exception as exc:  # noqa: BLE001 - the point of the fuzzer: count whatever escapes the reader
        kind = type(exc)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        counts.foreign[name] += 1
        counts.examples.setdefault(name, f"[{label}] {str(exc).splitlines()[0][:160] if str(exc) else ''}")
        return
    counts.valid += 1


def run_mutations(
    mod,
    tmp: Path,
    n: int | None,
    seed: int,
    family: str = "both",
    deadline: Callable[[], bool] | None = None,
    check: Callable | None = None,
) -> FuzzCounts:
    """Run ``n`` mutations (or until ``deadline()`` is true) of the base capture against ``mod``'s reader.

    ``family``: "bytes", "members" or "both" (alternating); ``check``: see ``classify``. Deterministic for a
    given seed and count.
    """
    rng = random.Random(seed)
    bases = {v: base_members(mod, tmp, v) for v in (2, 1)}
    raw_bases = {v: zip_members(m) for v, m in bases.items()}
    counts = FuzzCounts()
    path = tmp / "mutant.npz"
    i = 0
    while (n is None or i < n) and not (deadline and deadline()):
        version = 1 if rng.random() < 0.15 else 2
        use_bytes = family == "bytes" or (family == "both" and i % 2 == 0)
        if use_bytes:
            kind, raw = byte_mutation(rng, raw_bases[version])
            counts.by_family["bytes"] += 1
        else:
            kind, raw = member_mutation(rng, bases[version])
            counts.by_family["members"] += 1
        path.write_bytes(raw)  # a new file each time: truncating one in place is ~15x slower on ext4
        classify(mod, path, counts, f"{'bytes' if use_bytes else 'members'}:{kind} #{i}", check)
        path.unlink()
        i += 1
    return counts


def importer_arithmetic(cap) -> None:
    """What ``builders.importer`` computes from a capture before Blender is touched (no bpy needed): rest tips,
    joint frames, the bone layout and the pose keys. The importer turns a ValueError from the skeleton into its
    own clean error; anything else, or a non-finite key, would be a traceback or garbage in Blender."""
    from handcap.builders import convention
    from handcap.core import anatomy

    for side, track in cap.hands.items():
        rest = np.asarray(track.rest_joints, np.float64)
        tips = convention.estimate_rest_tips(rest, track.kp3d, track.valid)
        try:
            layout = convention.bone_layout(rest, tips, anatomy.joint_frames_from_rest(rest, side, tips))
        except ValueError:
            continue  # the importer reports "the capture's rest joints make no skeleton"
        valid = np.asarray(track.valid, bool)
        quats, loc = convention.pose_to_bone_basis(track.theta[valid], track.transl[valid], layout.frames[:16])
        if not (np.all(np.isfinite(quats)) and np.all(np.isfinite(loc))):
            raise FloatingPointError(f"{side}: non-finite pose keys from a capture that passed validation")
