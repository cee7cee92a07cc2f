"""MANO plumbing on GENERATED pickles (real MANO files are never in the repo nor downloaded).

The fake files have MANO's structure: a dict of arrays, ``shapedirs`` as an object of
class ``chumpy.ch.Ch`` (pickled through a stand-in module that is removed before
loading, so the loader must cope without chumpy), a scipy.sparse ``J_regressor``,
``kintree_table`` with MANO's root marker, ``hands_components`` / ``hands_mean``.
Geometry is borrowed from the built-in model so joints and frames are sensible.
"""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

from handcap.core.handmodel import HandModelError, forward, load_builtin
from handcap.core.keypoints import MANO_PARENTS
from handcap.inference.handmodel import mano

MIRROR = np.array([-1.0, 1.0, 1.0])


class _FakeCh:
    """Pickles like a chumpy Ch: class chumpy.ch.Ch, state dict with the value in 'x'."""

    def __init__(self, x):
        self.x = x
        self._dirty_vars = set()


def _pickle_with_fake_chumpy(obj, path, monkeypatch):
    pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    _FakeCh.__module__, _FakeCh.__qualname__, _FakeCh.__name__ = "chumpy.ch", "Ch", "Ch"
    mod.Ch = _FakeCh
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "chumpy", pkg)
        m.setitem(sys.modules, "chumpy.ch", mod)
        path.write_bytes(pickle.dumps(obj, protocol=2))
    assert "chumpy" not in sys.modules


def _fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Right-hand MANO-like arrays (778 vertices) carved out of the built-in model."""
    rng = np.random.default_rng(seed)
    b = load_builtin("right")
    idx = np.linspace(0, b.num_vertices - 1, mano.MANO_NUM_VERTICES).astype(int)
    idx[mano.MANO_TIP_IDS] = b.tip_vertex_ids  # MANO's tip ids land on real fingertips
    v = b.v_template[idx]
    reg = np.zeros((16, len(idx)))
    for j, p in enumerate(b.j_template):
        near = np.argsort(np.linalg.norm(v - p, axis=1))[:4]
        reg[j, near] = 0.25
    q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return {
        "v_template": v,
        "f": rng.integers(0, len(idx), size=(1538, 3)).astype(np.uint32),
        "weights": b.weights[idx],
        "shapedirs": b.shapedirs[idx],
        "posedirs": rng.normal(scale=2e-3, size=(len(idx), 3, 135)),
        "J_regressor": reg,
        "hands_components": q,
        "hands_mean": rng.normal(scale=0.2, size=45),
    }


def _mirror(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The left hand as MANO ships it: mirrored geometry, but shapedirs with the right hand's x sign."""
    sign = np.tile(np.outer(MIRROR, MIRROR).ravel(), 15)
    return dict(
        a,
        v_template=a["v_template"] * MIRROR,
        f=a["f"][:, ::-1].copy(),
        posedirs=a["posedirs"] * MIRROR[None, :, None] * sign,
        shapedirs=a["shapedirs"].copy(),  # the smplx issue #48 bug
    )


def _write(path, arrays, monkeypatch):
    import scipy.sparse as sp

    obj = {k: v for k, v in arrays.items() if k not in ("shapedirs", "J_regressor")}
    obj["shapedirs"] = _FakeCh(arrays["shapedirs"])
    obj["J_regressor"] = sp.csc_matrix(arrays["J_regressor"])
    obj["kintree_table"] = np.stack([np.where(MANO_PARENTS < 0, 2**32 - 1, MANO_PARENTS), np.arange(16)])
    obj["bs_style"], obj["bs_type"] = "lbs", "lrotmin"
    _pickle_with_fake_chumpy(obj, path, monkeypatch)


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mano_user") / "models"
    (folder / "mano").mkdir(parents=True)  # smplx layout: folder/mano/MANO_*.pkl
    right = _fake_arrays()
    mp = pytest.MonkeyPatch()
    try:
        _write(folder / "mano" / "MANO_RIGHT.pkl", right, mp)
        _write(folder / "mano" / "MANO_LEFT.pkl", _mirror(right), mp)
    finally:
        mp.undo()
    return folder, right


def test_conversion_without_chumpy_gives_the_plain_arrays(fake_folder, tmp_path):
    folder, src = fake_folder
    arrays = mano.convert_mano(folder, "right", cache_dir=tmp_path)
    np.testing.assert_array_equal(arrays["shapedirs"], src["shapedirs"])
    np.testing.assert_array_equal(arrays["j_regressor"], src["J_regressor"])
    np.testing.assert_array_equal(arrays["faces"], src["f"].astype(np.int32))
    np.testing.assert_array_equal(arrays["parents"], MANO_PARENTS)
    np.testing.assert_array_equal(arrays["hands_mean"], src["hands_mean"])
    assert len(list(tmp_path.glob("mano_right_*.safetensors"))) == 1


def test_cache_is_reused_and_refreshed_when_the_file_changes(fake_folder, tmp_path, monkeypatch):
    folder, src = fake_folder
    mano.convert_mano(folder, "right", cache_dir=tmp_path)

    def refuse(path):
        raise AssertionError("the pickle was read again although the cache is current")

    monkeypatch.setattr(mano, "read_mano_pickle", refuse)
    data = mano.load_mano_data(folder, "right", cache_dir=tmp_path)
    assert data.model_id == "mano" and data.num_vertices == 778
    monkeypatch.undo()
    # A different file (other content, same name) gets its own conversion.
    other = tmp_path / "other"
    other.mkdir()
    changed = dict(src, v_template=src["v_template"] * 1.01)
    _write(other / "MANO_RIGHT.pkl", changed, monkeypatch)
    arrays = mano.convert_mano(other, "right", cache_dir=tmp_path)
    np.testing.assert_allclose(arrays["v_template"], changed["v_template"])
    assert len(list(tmp_path.glob("mano_right_*.safetensors"))) == 2


def test_left_hand_shapedirs_fix_makes_left_the_mirror_of_right(fake_folder, tmp_path):
    folder, _ = fake_folder
    right = mano.load_mano_data(folder, "right", cache_dir=tmp_path)
    left = mano.load_mano_data(folder, "left", cache_dir=tmp_path)
    np.testing.assert_allclose(left.shapedirs[:, 0, :], -right.shapedirs[:, 0, :])
    from handcap.core.tensorfile import load_tensors

    (cached,) = tmp_path.glob("mano_left_*.safetensors")
    assert load_tensors(cached)[1]["left_fix"] == "applied"
    rng = np.random.default_rng(5)
    theta = rng.normal(scale=0.4, size=(2, 16, 3))
    beta = rng.normal(size=(2, 10))
    out_r = forward(right, theta, beta)
    out_l = forward(left, -theta * MIRROR, beta)
    np.testing.assert_allclose(out_l.vertices, out_r.vertices * MIRROR, atol=1e-12)
    np.testing.assert_allclose(
        left.joint_frames, MIRROR[:, None] * right.joint_frames * np.array([-1, 1, 1]), atol=1e-9
    )


def test_mano_data_follows_the_hand_model_contract(fake_folder, tmp_path):
    folder, src = fake_folder
    data = mano.load_mano_data(folder, "right", cache_dir=tmp_path)
    np.testing.assert_array_equal(data.tip_vertex_ids, [744, 320, 443, 554, 671])
    np.testing.assert_allclose(data.j_template, src["J_regressor"] @ src["v_template"], atol=1e-15)
    beta = np.linspace(-2, 2, 10)
    out = forward(data, np.zeros((1, 16, 3)), beta)
    shaped = src["v_template"] + src["shapedirs"] @ beta
    np.testing.assert_allclose(out.joints[0], src["J_regressor"] @ shaped, atol=1e-12)
    np.testing.assert_allclose(out.keypoints[0, 4], shaped[744], atol=1e-12)


def test_torch_model_on_mano_matches_numpy_and_its_fast_path(fake_folder, tmp_path):
    torch = pytest.importorskip("torch")
    from handcap.inference.handmodel import load_hand_model

    folder, _ = fake_folder
    model = load_hand_model("mano", "left", mano_dir=folder, cache_dir=tmp_path)
    rng = np.random.default_rng(6)
    theta = rng.normal(scale=0.5, size=(3, 16, 3))
    beta = rng.normal(size=(3, 10))
    transl = rng.normal(scale=0.2, size=(3, 3))
    ref = forward(model.data, theta, beta, transl)
    out = model(torch.tensor(theta), torch.tensor(beta), torch.tensor(transl))
    assert np.abs(out.vertices.numpy() - ref.vertices).max() < 1e-6
    fast = model(torch.tensor(theta), torch.tensor(beta), torch.tensor(transl), with_vertices=False)
    assert np.abs(fast.keypoints.numpy() - ref.keypoints).max() < 1e-6


@pytest.mark.parametrize("side", ["right", "left"])
def test_forward_equals_smplx_on_the_same_arrays(fake_folder, tmp_path, side):
    torch = pytest.importorskip("torch")
    pytest.importorskip("smplx", reason="smplx is optional (pip install 'handcap[mano]')")
    from handcap.inference.handmodel import HandModel

    folder, _ = fake_folder
    data = mano.load_mano_data(folder, side, cache_dir=tmp_path)
    ours = HandModel(data, dtype=torch.float64)
    ref = mano.smplx_layer(data)
    rng = np.random.default_rng(7)
    theta = torch.tensor(rng.normal(scale=0.5, size=(4, 16, 3)))
    beta = torch.tensor(rng.normal(size=(4, 10)))
    transl = torch.tensor(rng.normal(scale=0.2, size=(4, 3)))
    out = ours(theta, beta, transl)
    exp = ref(betas=beta, global_orient=theta[:, 0], hand_pose=theta[:, 1:].reshape(4, 45), transl=transl)
    assert (out.vertices - exp.vertices).abs().max() < 1e-6
    assert (out.joints - exp.joints[:, :16]).abs().max() < 1e-6


def test_errors_name_the_problem(fake_folder, tmp_path, monkeypatch):
    folder, src = fake_folder
    with pytest.raises(HandModelError, match="no MANO folder"):
        mano.load_mano_data(None, "right", cache_dir=tmp_path)
    with pytest.raises(HandModelError, match="does not exist"):
        mano.load_mano_data(tmp_path / "nowhere", "right", cache_dir=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HandModelError, match=r"MANO_LEFT\.pkl not found"):
        mano.load_mano_data(empty, "left", cache_dir=tmp_path)
    cases = {
        "garbage": (b"\x00\x01 not a pickle", "not a readable MANO pickle"),
        "list": (pickle.dumps([1, 2, 3]), "not the dict of arrays"),
        "keys": (pickle.dumps({"v_template": np.zeros((778, 3))}), "lacks MANO entries"),
        "evil": (pickle.dumps({"x": os.getcwd}, protocol=2), "refusing to load"),
    }
    for name, (blob, message) in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "MANO_RIGHT.pkl").write_bytes(blob)
        with pytest.raises(HandModelError, match=message):
            mano.load_mano_data(d, "right", cache_dir=tmp_path)
    bad = tmp_path / "shapes"
    bad.mkdir()
    _write(bad / "MANO_RIGHT.pkl", dict(src, weights=src["weights"][:, :15]), monkeypatch)
    with pytest.raises(HandModelError, match="'weights' has shape"):
        mano.load_mano_data(bad, "right", cache_dir=tmp_path)
    assert issubclass(HandModelError, ValueError)
