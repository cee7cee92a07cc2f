"""Parity of the PyTorch hand networks with MediaPipe's own .tflite models on real images.

The reference is the TFLite interpreter (tflite_runtime 2.14.0) running palm_detection_full.tflite and
hand_landmark_full.tflite read from the cached mediapipe 0.10.21 wheel (tools/fetch_mediapipe_wheel.py), on
the same input tensors built from ../shared/data. The PyTorch side loads the committed asset, so this also
checks the shipped weights. Run with ``-rP`` to see the measured deviations.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from handcap.core.tensorfile import load_tensors, save_tensors
from handcap.inference.nets import (
    ASSET_PATH,
    HandLandmarkNet,
    NetInputError,
    PalmDetectionNet,
    WeightsError,
    load_landmark_net,
    load_palm_net,
)

from .conftest import REPO, shared_path

sys.path.insert(0, str(REPO / "tools"))
from convert_mediapipe import read_wheel_models  # noqa: E402
from fetch_mediapipe_wheel import DEFAULT_DEST, WHEEL_NAME  # noqa: E402

# Tolerances. Float32 TFLite (XNNPACK) and PyTorch differ only in summation order: measured deviations are
# ~1e-4 crop px, ~1e-6 m and ~1e-5 in scores, so these bounds leave a wide margin yet catch any layout,
# padding or resize mistake (those move landmarks by pixels).
LANDMARK_PX = 0.05  # landmarks x, y, z in 224-crop pixels
WORLD_M = 1e-4  # world landmarks, metres (0.1 mm)
PROB = 1e-3  # presence and handedness probabilities
PALM_PX = 0.05  # palm box/keypoint regressors, 192-input pixels
PALM_LOGIT = 1e-2  # palm score logits


def _cv2():
    return pytest.importorskip("cv2", reason="opencv-python-headless is needed to read the test images")


def _rgb(path) -> np.ndarray:
    img = _cv2().imread(str(path))
    assert img is not None, f"cannot read {path}"
    return _cv2().cvtColor(img, _cv2().COLOR_BGR2RGB)


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio, zero letterbox borders (as MediaPipe's ImageToTensor), to [0, 1]."""
    cv2 = _cv2()
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = round(h * s), round(w * s)
    out = np.zeros((size, size, 3), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA) / 255.0
    return out


@pytest.fixture(scope="module")
def tflite_models() -> dict[str, bytes]:
    pytest.importorskip("tflite_runtime.interpreter", reason="tflite-runtime 2.14.0 (test extra) is not installed")
    wheel = DEFAULT_DEST / WHEEL_NAME
    if not wheel.is_file():
        pytest.skip(f"needs {wheel}: run `python tools/fetch_mediapipe_wheel.py` (project setup step)")
    return read_wheel_models(wheel)


def _run_tflite(blob: bytes, batch: np.ndarray) -> list[np.ndarray]:
    """Run the model image by image (the .tflite input is batch 1); outputs stacked over the batch."""
    from tflite_runtime.interpreter import Interpreter

    interp = Interpreter(model_content=blob, num_threads=2)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    results = [[] for _ in outs]
    for x in batch:
        interp.set_tensor(inp["index"], x[None].astype(np.float32))
        interp.invoke()
        for r, o in zip(results, outs, strict=True):
            r.append(interp.get_tensor(o["index"])[0].copy())
    return [np.stack(r) for r in results]


@pytest.fixture(scope="module")
def landmark_inputs() -> np.ndarray:
    """(N, 224, 224, 3) crops: FreiHAND as is, GE2019 resized / centre-cropped / rotated / letterboxed, a photo."""
    cv2 = _cv2()
    frei = sorted(shared_path("freihand_2d", "images").glob("*.jpg"))
    ge = sorted(shared_path("ge2019_dev", "images").glob("*.jpg"))[:6]
    crops = [_rgb(p).astype(np.float32) / 255.0 for p in frei]
    for i, p in enumerate(ge):
        img = _rgb(p)
        if i % 3 == 0:
            crops.append(_fit(img, 224))
        elif i % 3 == 1:
            crops.append(img[16:240, 16:240].astype(np.float32) / 255.0)
        else:
            crops.append(_fit(cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE), 224))
    crops.append(_fit(_rgb(ge[0])[:, 40:216], 224))  # narrow crop: letterbox borders left and right
    crops.append(_fit(_rgb(shared_path("photos", "two_hands_woman.jpg")), 224))
    return np.stack(crops)


@pytest.fixture(scope="module")
def palm_inputs() -> np.ndarray:
    """(N, 192, 192, 3): every photo letterboxed, plus two GE2019 and two FreiHAND images."""
    photos = sorted(shared_path("photos").glob("*.jpg"))
    others = sorted(shared_path("ge2019_dev", "images").glob("*.jpg"))[:2]
    others += sorted(shared_path("freihand_2d", "images").glob("*.jpg"))[:2]
    return np.stack([_fit(_rgb(p), 192) for p in photos + others])


def _torch(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def landmark_net():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_landmark_net()


def test_landmark_net_matches_tflite(tflite_models, landmark_inputs, landmark_net):
    ref_lm, ref_presence, ref_handed, ref_world = _run_tflite(tflite_models["landmark"], landmark_inputs)
    with torch.no_grad():
        lm, presence, handed, world = (t.numpy() for t in landmark_net(_torch(landmark_inputs)))
    n = len(landmark_inputs)
    assert lm.shape == (n, 21, 3) and world.shape == (n, 21, 3)
    assert presence.shape == (n,) and handed.shape == (n,)
    dev = {
        "landmarks_px": np.abs(lm - ref_lm.reshape(n, 21, 3)).max(),
        "world_m": np.abs(world - ref_world.reshape(n, 21, 3)).max(),
        "presence": np.abs(presence - ref_presence.reshape(n)).max(),
        "handedness": np.abs(handed - ref_handed.reshape(n)).max(),
    }
    print(
        f"landmark parity over {n} real crops, max |torch - tflite|: "
        + ", ".join(f"{k} {v:.3g}" for k, v in dev.items())
    )
    # The inputs must exercise real hands, not only empty crops.
    assert ref_presence.max() > 0.9 and (ref_presence > 0.5).sum() >= 5
    assert dev["landmarks_px"] < LANDMARK_PX
    assert dev["world_m"] < WORLD_M
    assert dev["presence"] < PROB and dev["handedness"] < PROB
    # Same decisions as MediaPipe's thresholds.
    assert np.array_equal(presence > 0.5, ref_presence.reshape(n) > 0.5)


def test_palm_net_matches_tflite(tflite_models, palm_inputs):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    net = load_palm_net()
    ref_reg, ref_scores = _run_tflite(tflite_models["palm"], palm_inputs)
    with torch.no_grad():
        reg, scores = (t.numpy() for t in net(_torch(palm_inputs)))
    n = len(palm_inputs)
    assert reg.shape == (n, 2016, 18) and scores.shape == (n, 2016)
    ref_scores = ref_scores.reshape(n, 2016)
    dev_reg, dev_logit = np.abs(reg - ref_reg).max(), np.abs(scores - ref_scores).max()
    detected = ref_scores > 0.0  # sigmoid >= 0.5, MediaPipe's min_score_thresh
    print(f"palm parity over {n} real images ({detected.sum()} anchors >= 0.5): max |torch - tflite| "
          f"regressors {dev_reg:.3g} px, score logits {dev_logit:.3g}")  # fmt: skip
    assert detected.any(axis=1).sum() >= 3, "the photos should contain detectable palms"
    assert dev_reg < PALM_PX
    assert dev_logit < PALM_LOGIT
    # Decisions away from the threshold agree exactly.
    clear = np.abs(ref_scores) > 10 * PALM_LOGIT
    assert np.array_equal((scores > 0)[clear], detected[clear])


def test_landmark_net_half_precision(landmark_inputs, landmark_net):
    """.half() runs (CUDA when present, else CPU) and stays close to float32."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    half = load_landmark_net(device=device, dtype=torch.float16)
    x = _torch(landmark_inputs[:2])
    with torch.no_grad():
        ref = landmark_net(x)
        out = half(x.to(device=device, dtype=torch.float16))
    assert all(t.dtype == torch.float16 for t in out)
    lm, presence, handed, world = (t.float().cpu() for t in out)
    assert (lm - ref[0]).abs().max() < 1.0  # crop pixels
    assert (world - ref[3]).abs().max() < 2e-3  # metres
    assert (presence - ref[1]).abs().max() < 0.02 and (handed - ref[2]).abs().max() < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nets_on_cuda_match_cpu(landmark_inputs, palm_inputs, landmark_net):
    palm_cpu, palm_gpu = load_palm_net(), load_palm_net(device="cuda")
    lm_gpu = load_landmark_net(device="cuda")
    with torch.no_grad():
        for cpu_out, gpu_out in [
            (landmark_net(_torch(landmark_inputs)), lm_gpu(_torch(landmark_inputs).cuda())),
            (palm_cpu(_torch(palm_inputs)), palm_gpu(_torch(palm_inputs).cuda())),
        ]:
            for a, b in zip(cpu_out, gpu_out, strict=True):
                # TF32 convolutions on recent GPUs: allow a little more than the TFLite parity bound.
                assert (a - b.cpu()).abs().max() < 0.1


def test_bad_input_shapes_raise_clear_errors(landmark_net):
    with pytest.raises(NetInputError, match=r"\(B, 3, 224, 224\)"):
        landmark_net(torch.zeros(1, 224, 224, 3))  # NHWC by mistake
    with pytest.raises(NetInputError, match="float"):
        landmark_net(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(NetInputError, match=r"\(B, 3, 192, 192\)"):
        load_palm_net()(torch.zeros(2, 3, 224, 224))


def test_missing_or_mismatched_asset_raises(tmp_path):
    with pytest.raises(WeightsError, match="convert_mediapipe.py"):
        load_palm_net(path=tmp_path / "absent.safetensors")
    tensors, meta = load_tensors(ASSET_PATH)
    del tensors["landmark.world.bias"]
    save_tensors(tmp_path / "partial.safetensors", tensors, meta)
    with pytest.raises(WeightsError, match="world.bias"):
        load_landmark_net(path=tmp_path / "partial.safetensors")
    load_palm_net(path=tmp_path / "partial.safetensors")  # the palm half of that file is still complete


def test_asset_keeps_float16_and_records_its_source():
    tensors, meta = load_tensors(ASSET_PATH)
    assert {v.dtype for v in tensors.values()} == {np.dtype(np.float16)}
    assert meta["license"] == "Apache-2.0" and "MediaPipe" in meta["attribution"]
    assert meta["source"] == WHEEL_NAME and meta["source_version"] == "mediapipe==0.10.21"
    assert len(meta["palm.sha256"]) == 64 and len(meta["landmark.sha256"]) == 64
    # Exactly the networks' parameters, nothing left over (2.72 M landmark and 1.14 M palm weights).
    for prefix, net in (("landmark.", HandLandmarkNet()), ("palm.", PalmDetectionNet())):
        stored = {k[len(prefix) :]: v.shape for k, v in tensors.items() if k.startswith(prefix)}
        assert stored == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert set(tensors) == {k for k in tensors if k.startswith(("landmark.", "palm."))}


def test_fused_cpu_landmark_net_matches_tflite(tflite_models, landmark_inputs, landmark_net):
    """The fused oneDNN net that HandNets runs on the CPU keeps the same TFLite parity bounds."""
    from handcap.inference.nets.fused import FusedLandmarkNet, fused_cpu_available

    if not fused_cpu_available():
        pytest.skip("this PyTorch build has no oneDNN fused convolution")
    ref_lm, ref_presence, ref_handed, ref_world = _run_tflite(tflite_models["landmark"], landmark_inputs)
    n = len(landmark_inputs)
    with torch.inference_mode():
        lm, presence, handed, world = (t.numpy() for t in FusedLandmarkNet(landmark_net)(_torch(landmark_inputs)))
    dev = {
        "landmarks_px": np.abs(lm - ref_lm.reshape(n, 21, 3)).max(),
        "world_m": np.abs(world - ref_world.reshape(n, 21, 3)).max(),
        "presence": np.abs(presence - ref_presence.reshape(n)).max(),
        "handedness": np.abs(handed - ref_handed.reshape(n)).max(),
    }
    print("fused landmark parity, max |fused - tflite|: " + ", ".join(f"{k} {v:.3g}" for k, v in dev.items()))
    assert dev["landmarks_px"] < LANDMARK_PX
    assert dev["world_m"] < WORLD_M
    assert dev["presence"] < PROB and dev["handedness"] < PROB
    assert np.array_equal(presence > 0.5, ref_presence.reshape(n) > 0.5)


def test_fused_cpu_palm_net_matches_tflite(tflite_models, palm_inputs):
    """The fused oneDNN palm net that HandNets runs on the CPU keeps the same TFLite parity bounds."""
    from handcap.inference.nets.fused import FusedPalmNet, fused_cpu_available

    if not fused_cpu_available():
        pytest.skip("this PyTorch build has no oneDNN fused convolution")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ref_reg, ref_scores = _run_tflite(tflite_models["palm"], palm_inputs)
    n = len(palm_inputs)
    with torch.inference_mode():
        reg, scores = (t.numpy() for t in FusedPalmNet(load_palm_net())(_torch(palm_inputs)))
    ref_scores = ref_scores.reshape(n, 2016)
    dev_reg, dev_logit = np.abs(reg - ref_reg).max(), np.abs(scores - ref_scores).max()
    print(f"fused palm parity, max |fused - tflite|: regressors {dev_reg:.3g} px, score logits {dev_logit:.3g}")
    assert dev_reg < PALM_PX
    assert dev_logit < PALM_LOGIT
    clear = np.abs(ref_scores) > 10 * PALM_LOGIT
    assert np.array_equal((scores > 0)[clear], (ref_scores > 0)[clear])
