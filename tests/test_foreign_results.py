"""Foreign results (inference/foreign): a HandCap capture written in each foreign layout reads back with the
same keypoints; HaMeR's conventions (mirrored left hands, crop camera) checked against their definition;
PCA poses with and without MANO files; bad files get the reader's own error; the CLI and the operator."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handcap.core.capture import CameraIntrinsics, Capture, HandTrack, project_points, read_capture
from handcap.core.handmodel import forward, load_builtin, rest_joints
from handcap.inference.fitting.ik import ray_rotation
from handcap.inference.foreign import ForeignOptions, ForeignResultsError, read_results, writers
from handcap.inference.foreign.keypoint_results import read_keypoints

from .conftest import REPO
from .retarget_rigs import synthetic_track
from .test_mano import _fake_arrays, _mirror, _write

MM = 0.1  # round-trip tolerance in millimetres (the issue's)


def make_capture(n: int = 12, size=(640, 480), theta_of=None) -> Capture:
    """Both hands of the built-in model over n frames (right hand lost in frame 3), zero joint offsets."""
    k = CameraIntrinsics.default(*size)
    hands = {}
    for i, side in enumerate(("right", "left")):
        st = synthetic_track(side, n, seed=i, invalid=(3,) if side == "right" else ())
        theta = st.theta.astype(np.float64) if theta_of is None else theta_of(side, st.theta.astype(np.float64))
        model = load_builtin(side)
        beta = np.random.default_rng(i).normal(0, 0.5, 10)
        kp3d = forward(model, theta, beta, st.transl).keypoints
        hands[side] = HandTrack(
            side,
            theta.astype(np.float32),
            beta.astype(np.float32),
            st.transl,
            project_points(kp3d, k.matrix).astype(np.float32),
            kp3d.astype(np.float32),
            np.ones(n, np.float32),
            np.ones((n, 21), np.float32),
            st.valid,
            rest_joints(model, beta).astype(np.float32),
        )
    return Capture("clip.mp4", np.arange(5, 5 + n), 30.0, size, k, "builtin-v1", hands)


def assert_same_keypoints(got: Capture, want: Capture, tol_mm: float = MM) -> None:
    assert np.array_equal(got.frames, want.frames)
    assert set(got.hands) == set(want.hands)
    for side, h in want.hands.items():
        g = got.hands[side]
        np.testing.assert_array_equal(g.valid, h.valid)
        v = h.valid
        err = 1000 * np.linalg.norm(g.kp3d[v] - h.kp3d[v], axis=-1).max()
        assert err < tol_mm, f"{side}: keypoints differ by {err:.4f} mm"
        # 2D: the original keypoints seen through the reader's camera
        np.testing.assert_allclose(g.kp2d[v], project_points(h.kp3d[v], got.intrinsics.matrix), atol=0.02)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("take.npz", {}),
        ("take.json", {}),
        ("rot_weak.json", {"pose_format": "rotmat", "camera": "weak"}),
        ("rot_weak.npz", {"pose_format": "rotmat", "camera": "weak"}),
        ("hamer.json", {"layout": "hamer"}),
        ("hamer.npz", {"layout": "hamer"}),
        ("wilor.json", {"layout": "wilor"}),
        ("wilor.npz", {"layout": "wilor"}),
    ],
)
def test_mano_layouts_round_trip_within_a_tenth_of_a_millimetre(tmp_path, name, kwargs):
    cap = make_capture()
    path = writers.write_mano_results(cap, tmp_path / name, **kwargs)
    result = read_results(path)
    assert result.layout == kwargs.get("layout", "handcap")
    assert_same_keypoints(result.capture, cap)
    assert result.capture.fps == 30.0 and result.capture.hand_model == "builtin-v1"


def test_hamer_left_hand_is_the_mirrored_right_model_plus_the_full_image_camera(tmp_path):
    """HaMeR's own definition, written out here: the right model posed with the (flipped-crop) parameters,
    x negated, plus cam_crop_to_full(pred_cam with tx * (2 right - 1)) at f = 5000 / 256 * max(w, h)."""
    cap = make_capture()
    path = writers.write_mano_results(cap, tmp_path / "hamer.json", layout="hamer")
    got = read_results(path).capture
    recs = [r for r in json.loads(path.read_text())["hands"] if r["right"] == 0.0]
    right_model = load_builtin("right")
    w, h = cap.image_size
    f = 5000 / 256 * max(w, h)
    assert got.intrinsics.fx == pytest.approx(f)
    for rec in recs:
        mp = rec["pred_mano_params"]
        aa = Rotation.from_matrix(np.array(mp["global_orient"] + mp["hand_pose"])).as_rotvec()
        kp = forward(right_model, aa, np.array(mp["betas"])).keypoints[0] * [-1.0, 1.0, 1.0]
        s, tx, ty = rec["pred_cam"]
        tx = -tx  # multiplier 2 * right - 1
        bs = rec["box_size"] * s
        cx, cy = rec["box_center"]
        cam_t = np.array([tx + 2 * (cx - w / 2) / bs, ty + 2 * (cy - h / 2) / bs, 2 * f / bs])
        row = int(np.flatnonzero(got.frames == rec["frame"])[0])
        np.testing.assert_allclose(got.hands["left"].kp3d[row], kp + cam_t, atol=1e-6)


@pytest.fixture(scope="module")
def mano_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mano_user")
    right = _fake_arrays()
    mp = pytest.MonkeyPatch()
    try:
        _write(folder / "MANO_RIGHT.pkl", right, mp)
        _write(folder / "MANO_LEFT.pkl", _mirror(right), mp)
    finally:
        mp.undo()
    return folder, right


@pytest.mark.parametrize("count", [6, 12, 45])
def test_pca_poses_with_the_users_mano_files(tmp_path, mano_folder, count):
    folder, arrays = mano_folder
    comps, mean = arrays["hands_components"], arrays["hands_mean"]  # the fake left file shares them
    rng = np.random.default_rng(count)

    def pca_pose(side, theta):
        coeffs = rng.normal(0, 0.4, (len(theta), count))
        theta = theta.copy()
        theta[:, 1:] = (coeffs @ comps[:count] + mean).reshape(-1, 15, 3)
        return theta

    cap = make_capture(theta_of=pca_pose)
    pca = {s: (comps, mean) for s in ("right", "left")}
    path = writers.write_mano_results(cap, tmp_path / "pca.npz", pose_format="pca", pca=pca, pca_count=count)
    assert np.load(path)["hand_pose"].shape[1] == count
    options = ForeignOptions(mano_dir=str(folder), mano_cache_dir=str(tmp_path / "cache"))
    assert_same_keypoints(read_results(path, options).capture, cap)


def test_pca_and_mean_relative_poses_without_mano_files_say_what_to_set(tmp_path):
    cap = make_capture()
    eye = (np.eye(45), np.zeros(45))
    path = writers.write_mano_results(
        cap, tmp_path / "pca.npz", pose_format="pca", pca={"right": eye, "left": eye}, pca_count=12
    )
    with pytest.raises(ForeignResultsError, match=r"PCA pose coefficients.*--mano-dir.*MANO Folder"):
        read_results(path)
    aa = writers.write_mano_results(cap, tmp_path / "aa.json")
    with pytest.raises(ForeignResultsError, match=r"mean hand.*--mano-dir"):
        read_results(aa, ForeignOptions(pose_mean="mean"))
    proc = _cli("import-results", str(path), "-o", str(tmp_path / "out.npz"))
    assert proc.returncode == 2 and "--mano-dir" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


def _bad_files(tmp_path):
    cap = make_capture()
    good = writers.write_mano_results(cap, tmp_path / "good.npz")
    z = dict(np.load(good))
    out = {}
    out["wrong shape"] = {**z, "hand_pose": z["hand_pose"][:, :14]}
    out["NaN"] = {**z, "betas": np.where(np.arange(10) == 3, np.nan, z["betas"])}
    out["missing key"] = {k: v for k, v in z.items() if k != "global_orient"}
    out["not rotations"] = {**z, "global_orient": np.tile(2 * np.eye(3), (len(z["frame"]), 1, 1))}
    paths = {}
    for name, arrays in out.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.npz"
        np.savez(paths[name], **arrays)
    paths["pickled"] = tmp_path / "pickled.npz"
    np.savez(paths["pickled"], **{**z, "hand_pose": np.array([{"x": 1}], dtype=object)})
    paths["not json"] = tmp_path / "broken.json"
    paths["not json"].write_text('{"hands": [', encoding="utf-8")
    paths["truncated"] = tmp_path / "truncated.npz"
    paths["truncated"].write_bytes(good.read_bytes()[:200])
    paths["mediapipe 20 points"] = tmp_path / "mp.json"
    paths["mediapipe 20 points"].write_text(
        json.dumps(
            {
                "image_size": [640, 480],
                "frames": [{"hands": [{"handedness": "Left", "landmarks": [[0.5, 0.5, 0.0]] * 20}]}],
            }
        )
    )
    return paths


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong shape", "hand_pose has shape"),
        ("NaN", "NaN"),
        ("missing key", "global_orient"),
        ("not rotations", "not rotations"),
        ("pickled", "pickled"),
        ("not json", "not valid JSON"),
        ("truncated", "not an .npz|unreadable"),
        ("mediapipe 20 points", "expected 21 landmarks"),
    ],
)
def test_bad_files_get_the_readers_own_error(tmp_path, case, message):
    path = _bad_files(tmp_path)[case]
    with pytest.raises(ForeignResultsError, match=message):
        read_results(path)


def _world_in_camera(world, kp2d, k):
    return np.einsum("nij,npj->npi", ray_rotation(kp2d.mean(1), k), world - world.mean(1, keepdims=True))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_mediapipe_landmarks_round_trip_and_keep_the_hands(tmp_path, fmt):
    cap = make_capture()
    write = writers.write_mediapipe_json if fmt == "json" else writers.write_mediapipe_csv
    path = write(cap, tmp_path / f"landmarks.{fmt}")
    if fmt == "json":  # MediaPipe labels the mirrored hand: the right hand is written as "Left"
        assert json.loads(path.read_text())["frames"][0]["hands"][0]["handedness"][0]["category_name"] == "Left"
    kp = read_keypoints(path, ForeignOptions(image_size=cap.image_size))
    assert set(kp.hands) == {"right", "left"} and np.array_equal(kp.frames, cap.frames)
    for side, h in cap.hands.items():
        g, v = kp.hands[side], h.valid
        np.testing.assert_array_equal(g.valid, v)
        np.testing.assert_allclose(g.kp2d[v], h.kp2d[v], atol=1e-3)
        rel = h.kp3d[v] - h.kp3d[v].mean(1, keepdims=True)
        err = 1000 * np.abs(_world_in_camera(g.world[v], g.kp2d[v], cap.intrinsics.matrix) - rel).max()
        assert err < MM, f"{side}: world landmarks differ by {err:.4f} mm"


@pytest.mark.parametrize("ext", [".csv", ".npy"])
def test_freemocap_hand_data_round_trips_both_hands_from_one_file(tmp_path, ext):
    cap = make_capture()
    right, _ = writers.write_freemocap(cap, tmp_path, ext)
    kp = read_keypoints(right, ForeignOptions())
    offset = np.array(kp.info["virtual_camera"]["world_to_camera_offset_m"])
    for side, h in cap.hands.items():
        g, v = kp.hands[side], h.valid
        np.testing.assert_array_equal(g.valid, v)
        err = 1000 * np.abs(g.camera[v] - offset - h.kp3d[v]).max()
        assert err < MM, f"{side}: points differ by {err:.4f} mm"
        assert np.all(g.camera[v][..., 2] > 0.1)


def test_mediapipe_landmarks_are_fitted_by_handcaps_fit(tmp_path):
    cap = make_capture(n=20)
    path = writers.write_mediapipe_json(cap, tmp_path / "landmarks.json")
    result = read_results(path)
    got = result.capture
    assert result.layout == "mediapipe" and got.info["imported"]["layout"] == "mediapipe"
    for side, h in cap.hands.items():
        g, v = got.hands[side], h.valid
        np.testing.assert_array_equal(g.valid, v)
        rel = lambda x: x - x[:, :1]  # noqa: E731
        err = 1000 * np.linalg.norm(rel(g.kp3d[v]) - rel(h.kp3d[v]), axis=-1).mean()
        assert err < 8.0, f"{side}: fitted keypoints {err:.1f} mm from the truth (wrist-relative)"
        reproj = np.linalg.norm(g.kp2d[v] - h.kp2d[v], axis=-1).mean()
        assert reproj < 1e-3  # the capture keeps the observed keypoints


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "handcap", *args], capture_output=True, text=True, cwd=REPO.parent)


def test_cli_writes_a_capture_and_rejects_bad_files(tmp_path):
    cap = make_capture()
    src = writers.write_mano_results(cap, tmp_path / "hamer.json", layout="hamer")
    out = tmp_path / "take.npz"
    proc = _cli("import-results", str(src), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["layout"] == "hamer" and summary["hands"] == {"right": 11, "left": 12}
    assert_same_keypoints(read_capture(out), cap)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2", encoding="utf-8")
    proc = _cli("import-results", str(bad), "-o", str(tmp_path / "no.npz"))
    assert proc.returncode == 2 and proc.stderr.startswith("handcap import-results: error:")
    assert "Traceback" not in proc.stderr and not (tmp_path / "no.npz").exists()


def test_operator_imports_hand_results_into_the_scene(hc, tmp_path):
    bpy = hc.bpy
    cap = make_capture()
    src = writers.write_mano_results(cap, tmp_path / "wilor.json", layout="wilor")
    assert bpy.ops.handcap.import_results(filepath=str(src)) == {"FINISHED"}
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(arms) == 2
    keyed = {o.name: o.animation_data.action for o in arms if o.animation_data}
    assert len(keyed) == 2
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="not an .npz"):
        bpy.ops.handcap.import_results(filepath=str(bad))
    assert len([o for o in bpy.data.objects if o.type == "ARMATURE"]) == 2


def test_mano_model_round_trip_with_the_users_files(tmp_path, mano_folder):
    """--model mano: the capture is posed with the user's MANO (its keypoints are the tool's own)."""
    from handcap.inference.handmodel.mano import load_mano_data

    folder, _ = mano_folder
    cache = tmp_path / "cache"
    models = {s: load_mano_data(folder, s, cache_dir=cache) for s in ("right", "left")}
    cap = make_capture()
    for side, h in cap.hands.items():
        kp3d = forward(models[side], h.theta, h.beta, h.transl).keypoints
        h.kp3d = kp3d.astype(np.float32)
        h.kp2d = project_points(kp3d, cap.intrinsics.matrix).astype(np.float32)
        h.rest_joints = rest_joints(models[side], h.beta).astype(np.float32)
    cap.hand_model = "mano"
    path = writers.write_mano_results(cap, tmp_path / "take.json")
    options = ForeignOptions(model="mano", mano_dir=str(folder), mano_cache_dir=str(cache))
    got = read_results(path, options).capture
    assert got.hand_model == "mano"
    assert_same_keypoints(got, cap)
