"""Fuzz the capture reader: seeded byte and member mutations of a small valid capture (tools/capture_mutations.py).

Every mutant must either read as a capture that passes ``validate()`` or raise ``CaptureFormatError``; nothing
else (zlib.error, tokenize.TokenError, MemoryError, AttributeError, ...) may escape. Longer runs:
``python tools/fuzz_capture.py --minutes N``.
"""

from __future__ import annotations

import sys
import types
import zipfile
import zlib

import pytest

from handcap.core import capture
from handcap.core.capture import CaptureFormatError, read_capture

from .conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import capture_mutations as cm  # noqa: E402
import fuzz_capture  # noqa: E402

N_MUTATIONS = 3000
SEED = 22


def test_reader_raises_only_its_own_error(tmp_path):
    """... and what it accepts, the importer's arithmetic takes without an exception or a non-finite key."""
    counts = cm.run_mutations(capture, tmp_path, N_MUTATIONS, SEED, "both", check=cm.importer_arithmetic)
    assert counts.tried == N_MUTATIONS
    assert counts.by_family == {"bytes": N_MUTATIONS // 2, "members": N_MUTATIONS // 2}
    assert counts.foreign_total == 0, counts.summary()
    # The mutants reach the reader's checks: nearly all are refused, a few change nothing that matters.
    assert counts.clean > 0.9 * N_MUTATIONS and counts.valid > 0, counts.summary()
    assert not list(tmp_path.glob("mutant*")), "the fuzzer leaves no mutant behind"


def test_base_captures_read(tmp_path):
    for version in (2, 1):
        path = tmp_path / f"v{version}.npz"
        path.write_bytes(cm.zip_members(cm.base_members(capture, tmp_path, version)))
        cap = read_capture(path)
        assert cap.num_frames == 3 and sorted(cap.hands) == ["left", "right"]
        assert version == 2 or not cap.hands["left"].joint_offsets.any()


def test_the_harness_counts_foreign_exceptions(tmp_path):
    """A reader that lets zlib.error through is caught by the same classification the fuzz test uses."""

    def leaky(path):
        raise zlib.error("Error -3 while decompressing data")

    fake = types.SimpleNamespace(read_capture=leaky, CaptureFormatError=CaptureFormatError)
    counts = cm.FuzzCounts()
    cm.classify(fake, tmp_path / "x.npz", counts, "probe")
    assert counts.foreign == {"zlib.error": 1} and counts.clean == counts.valid == 0


def _mutant(tmp_path, name: str, new_raw, compression=zipfile.ZIP_DEFLATED):
    members = cm.base_members(capture, tmp_path)
    members = [(n, new_raw(raw) if n == name else raw) for n, raw in members]
    path = tmp_path / "mutant.npz"
    path.write_bytes(cm.zip_members(members, compression))
    return path


def _with_header(header: str):
    return lambda raw: cm._join_npy(raw[:8], header, cm._npy_data(raw))


@pytest.mark.parametrize(
    "name, header, message",
    [
        # huge declared sizes are refused from the header, before anything is allocated
        ("right.theta.npy", cm._header(shape="(2**40, 16, 3)"), r"not a readable \.npy header"),
        ("right.theta.npy", cm._header(shape="(1099511627776, 16, 3)"), r"right\.theta: expected shape \(3, 16, 3\)"),
        ("frames.npy", cm._header("'<i8'", shape="(4611686018427387904,)"), r"frames: expected shape \(T,\)"),
        ("left.kp2d.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,", "TokenError"),
        ("left.kp2d.npy", cm._header("'|O'", shape="(3, 21, 2)"), "refused to load a pickled"),
        ("left.valid.npy", cm._header("'<U4'", shape="(3,)"), "left.valid: dtype <U4 is not one of"),
        ("left.beta.npy", cm._header("'<f4'", "'yes'", "(10,)"), "fortran_order"),
    ],
)
def test_bad_npy_headers(tmp_path, name, header, message):
    with pytest.raises(CaptureFormatError, match=message):
        read_capture(_mutant(tmp_path, name, _with_header(header)))


def test_corrupt_compressed_member_with_valid_zip_directory(tmp_path):
    path = _mutant(tmp_path, "right.kp3d.npy", lambda raw: raw)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("right.kp3d.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # local header, then the data
    raw[start + 20 : start + 40] = b"\xff" * 20
    path.write_bytes(bytes(raw))
    with pytest.raises(CaptureFormatError, match=r"right\.kp3d: corrupt member \((zlib\.)?error|BadZipFile"):
        read_capture(path)


def test_tool_prints_counts_and_exit_status(capsys):
    assert fuzz_capture.main(["--count", "60", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "mutations tried: 60" in out and "foreign exceptions: 0" in out
