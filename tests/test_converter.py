"""tools/convert_mediapipe.py, tools/tflite_reader.py and tools/fetch_mediapipe_wheel.py."""

from __future__ import annotations

import hashlib
import sys
import zipfile

import pytest

from handcap.core.tensorfile import load_tensors
from handcap.inference.nets import ASSET_PATH, HandLandmarkNet, PalmDetectionNet

from .conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import convert_mediapipe as conv  # noqa: E402
import fetch_mediapipe_wheel as fetch  # noqa: E402
from tflite_reader import TFLiteFormatError, read_model  # noqa: E402


@pytest.fixture(scope="module")
def wheel():
    path = fetch.DEFAULT_DEST / fetch.WHEEL_NAME
    if not path.is_file():
        pytest.skip(f"needs {path}: run `python tools/fetch_mediapipe_wheel.py` (project setup step)")
    return path


@pytest.fixture(scope="module")
def blobs(wheel):
    return conv.read_wheel_models(wheel)


def test_reconversion_is_bit_identical(wheel, tmp_path, capsys):
    out = tmp_path / "again.safetensors"
    assert conv.main(["--wheel", str(wheel), "--out", str(out)]) == 0
    assert out.read_bytes() == ASSET_PATH.read_bytes(), "re-converting changed the committed asset"
    assert conv.main(["--wheel", str(wheel), "--out", str(ASSET_PATH), "--check"]) == 0
    assert "identical" in capsys.readouterr().out


def test_check_detects_a_changed_asset(wheel, tmp_path, capsys):
    changed = bytearray(ASSET_PATH.read_bytes())
    changed[-1] ^= 0x01  # one bit of the last weight
    target = tmp_path / "changed.safetensors"
    target.write_bytes(bytes(changed))
    assert conv.main(["--wheel", str(wheel), "--out", str(target), "--check"]) == 1
    assert "DIFFERS" in capsys.readouterr().out
    assert target.read_bytes() == bytes(changed), "--check must not rewrite the file"


def test_metadata_records_source_hashes(blobs):
    _, meta = load_tensors(ASSET_PATH)
    for key in ("palm", "landmark"):
        assert meta[f"{key}.sha256"] == hashlib.sha256(blobs[key]).hexdigest()
        assert meta[f"{key}.file"] == conv.MODELS[key]


def test_reader_parses_the_graphs(blobs):
    palm = read_model(blobs["palm"])
    (inp,) = palm.inputs
    assert palm.tensors[inp].shape == (1, 192, 192, 3)
    assert sorted(palm.tensors[i].shape for i in palm.outputs) == [(1, 2016, 1), (1, 2016, 18)]
    ops = {op.op for op in palm.operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "RESIZE_BILINEAR", "DEQUANTIZE"} <= ops
    landmark = read_model(blobs["landmark"])
    assert [landmark.tensors[i].shape for i in landmark.outputs] == [(1, 63), (1, 1), (1, 1), (1, 63)]
    assert sum(op.op == "LOGISTIC" for op in landmark.operators) == 2


def test_structure_mismatch_is_reported(blobs):
    with pytest.raises(conv.ConversionError, match="weighted ops"):
        conv.convert_graph(read_model(blobs["palm"]), HandLandmarkNet(), "palm")
    with pytest.raises(conv.ConversionError, match="weighted ops"):
        conv.convert_graph(read_model(blobs["landmark"]), PalmDetectionNet(), "landmark")


def test_truncated_or_foreign_tflite_is_rejected(blobs):
    with pytest.raises(TFLiteFormatError, match="TFL3"):
        read_model(b"PK\x03\x04 not a flatbuffer at all")
    with pytest.raises(TFLiteFormatError):
        read_model(blobs["palm"][: len(blobs["palm"]) // 3])


def test_non_wheel_inputs_give_clear_errors(tmp_path, capsys):
    text = tmp_path / "mediapipe.whl"
    text.write_text("this is not a zip file")
    with pytest.raises(conv.ConversionError, match="not a wheel"):
        conv.read_wheel_models(text)
    other = tmp_path / "mediapipe-0.10.30-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("mediapipe/__init__.py", "")
    with pytest.raises(conv.ConversionError, match="0.10.21"):
        conv.read_wheel_models(other)
    with pytest.raises(conv.ConversionError, match="fetch_mediapipe_wheel"):
        conv.read_wheel_models(tmp_path / "absent.whl")
    # The command line reports the message, exits 2, and writes nothing.
    out = tmp_path / "out.safetensors"
    assert conv.main(["--wheel", str(text), "--out", str(out)]) == 2
    assert "not a wheel" in capsys.readouterr().err
    assert not out.exists()


def test_fetch_is_idempotent_and_verifies_the_pin(wheel, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run when the wheel is already there")

    monkeypatch.setattr(fetch.subprocess, "run", no_network)
    assert fetch.fetch_wheel(wheel.parent) == wheel
    (tmp_path / fetch.WHEEL_NAME).write_bytes(b"not the pinned wheel")
    with pytest.raises(fetch.FetchError, match="sha256"):
        fetch.fetch_wheel(tmp_path)
