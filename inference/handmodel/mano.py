"""The user's own MANO model: one-time conversion of MANO_RIGHT.pkl / MANO_LEFT.pkl to plain arrays.

MANO files are licensed for non-commercial use only and may not be redistributed:
HandCap never ships or downloads them, the user points it at a folder holding them.
The original pickles contain chumpy objects (and chumpy breaks on numpy >= 1.24), so
``read_mano_pickle`` unpickles with a restricted ``pickle.Unpickler`` that resolves
chumpy and scipy.sparse classes to tiny stand-ins and pulls the raw arrays out; no
chumpy, and only numpy / builtin classes are ever constructed. The converted arrays
are cached as a tensor file (``<cache_dir>/mano_<side>_<hash>.safetensors``).

Conventions applied (docs/hand-model.md):
* fingertips: smplx's ``VERTEX_IDS['mano']`` = [744, 320, 443, 554, 671] (thumb, index,
  middle, ring, pinky), as in HaMeR / WiLoR; manopth uses [745, 317, 444, 556, 673];
* left-hand shapedirs bug (smplx issue #48): if the left file's first shape direction
  matches the right file's in x (sum |L[:, 0, :] - R[:, 0, :]| < 1), its x components
  are negated;
* pose is flat-hand relative (``flat_hand_mean=True``); ``hands_mean`` / ``hands_components``
  are kept in the cache for importers of PCA-pose files.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

from ...core.handmodel import HandModelData, HandModelError, with_anatomy
from ...core.keypoints import MANO_PARENTS, NUM_BETAS, NUM_JOINTS
from ...core.tensorfile import TensorFileError, load_tensors, save_tensors

#: smplx VERTEX_IDS['mano'] fingertips: thumb, index, middle, ring, pinky.
MANO_TIP_IDS = np.array([744, 320, 443, 554, 671], dtype=np.int64)
#: The other published convention (manopth, MeshGraphormer), right hand.
MANOPTH_TIP_IDS = np.array([745, 317, 444, 556, 673], dtype=np.int64)
MANO_NUM_VERTICES = 778
CONVERTER_VERSION = "1"
DEFAULT_CACHE = Path("~/.cache/handcap")
FILE_NAMES = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}
REQUIRED_KEYS = ("v_template", "f", "weights", "posedirs", "shapedirs", "J_regressor", "kintree_table")


class _ChumpyStandIn:
    """Receives the state of a pickled chumpy object; a plain ``Ch`` keeps its value in 'x'."""

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}


class _SparseStandIn:
    """Receives the state of a pickled scipy.sparse matrix (any scipy version)."""

    kind = ""

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}


def _sparse_class(name: str) -> type:
    return type(name, (_SparseStandIn,), {"kind": name[:3]})


# Helpers pickle itself emits for plain objects and bytes (Python 2 and 3 spellings).
_SAFE_FUNCTIONS = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("_codecs", "encode")}
_SAFE_BUILTINS = {"object", "set", "frozenset", "list", "dict", "tuple", "slice", "complex", "bytearray"}


class _MANOUnpickler(pickle.Unpickler):
    """Resolves only numpy, builtin containers and stand-ins; anything else is refused."""

    def find_class(self, module: str, name: str):
        if module.startswith("chumpy"):
            return _ChumpyStandIn
        if module.startswith("scipy.sparse"):
            return _sparse_class(name)
        if module.split(".")[0] == "numpy" or (module, name) in _SAFE_FUNCTIONS:
            return super().find_class(module, name)
        if module in ("__builtin__", "builtins") and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a MANO file")


def _dense(value, key: str, path: Path) -> np.ndarray:
    """A plain float/int array from an ndarray, chumpy stand-in or sparse stand-in."""
    if isinstance(value, _ChumpyStandIn):
        value.state = getattr(value, "state", {})
        if "x" not in value.state:
            raise HandModelError(f"{path}: '{key}' is a chumpy expression HandCap cannot read (no stored value)")
        value = value.state["x"]
    if isinstance(value, _SparseStandIn):
        return _sparse_to_dense(value, key, path)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise HandModelError(f"{path}: '{key}' is not an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise HandModelError(f"{path}: '{key}' is not a numeric array (dtype {arr.dtype})")
    return arr


def _sparse_to_dense(mat: _SparseStandIn, key: str, path: Path) -> np.ndarray:
    st = getattr(mat, "state", {})
    shape = st.get("_shape", st.get("shape"))
    try:
        rows, cols = (int(v) for v in shape)
        out = np.zeros((rows, cols))
        data = np.asarray(st["data"], np.float64)
        if mat.kind in ("csc", "csr"):
            indices, indptr = np.asarray(st["indices"]), np.asarray(st["indptr"])
            major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            r, c = (indices, major) if mat.kind == "csc" else (major, indices)
        elif mat.kind == "coo":
            r, c = np.asarray(st["row"]), np.asarray(st["col"])
        else:
            raise HandModelError(f"{path}: '{key}' is a scipy '{mat.kind}' matrix; expected csc, csr or coo")
        np.add.at(out, (r, c), data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise HandModelError(f"{path}: '{key}' is a damaged sparse matrix ({exc})") from None
    return out


def find_mano_file(folder: str | Path | None, side: str) -> Path:
    """Path of MANO_RIGHT.pkl / MANO_LEFT.pkl in ``folder`` or ``folder/mano``."""
    if side not in FILE_NAMES:
        raise HandModelError(f"side must be 'right' or 'left', got {side!r}")
    if folder is None or str(folder) == "":
        raise HandModelError("no MANO folder given: point HandCap at the folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HandModelError(f"MANO folder {folder} does not exist (it should hold {FILE_NAMES[side]})")
    for cand in (folder / FILE_NAMES[side], folder / "mano" / FILE_NAMES[side]):
        if cand.is_file():
            return cand
    raise HandModelError(
        f"{FILE_NAMES[side]} not found in {folder} or {folder / 'mano'}; download MANO from "
        "https://mano.is.tue.mpg.de (registration, non-commercial licence) and unpack it there"
    )


def read_mano_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read a MANO pickle without chumpy -> validated plain float64 / int arrays.

    Returns keys v_template (V, 3), faces (F, 3), weights (V, 16), posedirs (V, 3, 135),
    shapedirs (V, 3, 10), j_regressor (16, V), parents (16,), hands_components (45, 45)
    and hands_mean (45,) (zeros when the file lacks them).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HandModelError(f"cannot read MANO file {path}: {exc}") from None
    try:
        obj = _MANOUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as exc:
        raise HandModelError(f"{path} is not a readable MANO pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise HandModelError(f"{path} holds a {type(obj).__name__}, not the dict of arrays of a MANO file")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise HandModelError(f"{path} lacks MANO entries {missing}; is it really MANO_RIGHT.pkl / MANO_LEFT.pkl?")
    a = {k: _dense(obj[k], k, path) for k in REQUIRED_KEYS}
    v = a["v_template"].shape[0] if a["v_template"].ndim == 2 else -1
    expect = {
        "v_template": (v, 3),
        "weights": (v, NUM_JOINTS),
        "posedirs": (v, 3, 9 * (NUM_JOINTS - 1)),
        "J_regressor": (NUM_JOINTS, v),
        "kintree_table": (2, NUM_JOINTS),
    }
    for key, shape in expect.items():
        if a[key].shape != shape:
            raise HandModelError(f"{path}: '{key}' has shape {a[key].shape}, expected {shape} for a MANO hand")
    if a["f"].ndim != 2 or a["f"].shape[1] != 3 or a["f"].min() < 0 or a["f"].max() >= v:
        raise HandModelError(f"{path}: 'f' must be (F, 3) vertex indices, got shape {a['f'].shape}")
    sd = a["shapedirs"]
    if sd.ndim != 3 or sd.shape[:2] != (v, 3) or sd.shape[2] < NUM_BETAS:
        raise HandModelError(f"{path}: 'shapedirs' has shape {sd.shape}, expected ({v}, 3, >= {NUM_BETAS})")
    parents = a["kintree_table"][0].astype(np.int64)
    parents[0] = -1  # stored as 2**32 - 1 in the original files
    if not np.array_equal(parents, MANO_PARENTS):
        raise HandModelError(f"{path}: kinematic tree {parents.tolist()} is not MANO's {MANO_PARENTS.tolist()}")
    comps = _dense(obj["hands_components"], "hands_components", path) if "hands_components" in obj else np.eye(45)
    mean = _dense(obj["hands_mean"], "hands_mean", path) if "hands_mean" in obj else np.zeros(45)
    return {
        "v_template": a["v_template"].astype(np.float64),
        "faces": a["f"].astype(np.int32),
        "weights": a["weights"].astype(np.float64),
        "posedirs": a["posedirs"].astype(np.float64),
        "shapedirs": sd[:, :, :NUM_BETAS].astype(np.float64),
        "j_regressor": a["J_regressor"].astype(np.float64),
        "parents": parents,
        "hands_components": np.asarray(comps, np.float64).reshape(45, 45),
        "hands_mean": np.asarray(mean, np.float64).reshape(45),
    }


def fix_left_shapedirs(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, bool]:
    """smplx issue #48: the released left shapedirs have the right hand's x sign. Returns (fixed, changed)."""
    if np.sum(np.abs(left[:, 0, :] - right[:, 0, :])) < 1.0:
        fixed = left.copy()
        fixed[:, 0, :] *= -1.0
        return fixed, True
    return left, False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_mano(folder: str | Path | None, side: str, cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Converted arrays for ``side`` (see ``read_mano_pickle``), from the cache when it is current."""
    src = find_mano_file(folder, side)
    digest = _sha256(src)
    right_src = None
    if side == "left":
        try:
            right_src = find_mano_file(folder, "right")
        except HandModelError:
            right_src = None  # the left-hand fix cannot be checked without the right file
        if right_src is not None:
            digest = hashlib.sha256((digest + _sha256(right_src)).encode()).hexdigest()
    cache = Path(cache_dir or DEFAULT_CACHE).expanduser()
    cached = cache / f"mano_{side}_{digest[:16]}.safetensors"
    if cached.is_file():
        try:
            arrays, meta = load_tensors(cached)
            if meta.get("converter") == CONVERTER_VERSION and meta.get("sha256") == digest:
                return arrays
        except TensorFileError:
            pass  # a damaged cache entry is simply rebuilt below
    arrays = read_mano_pickle(src)
    left_fix = "n/a"
    if side == "left":
        if right_src is None:
            left_fix = "unchecked (MANO_RIGHT.pkl missing)"
        else:
            right = read_mano_pickle(right_src)
            arrays["shapedirs"], changed = fix_left_shapedirs(arrays["shapedirs"], right["shapedirs"])
            left_fix = "applied" if changed else "not needed"
    meta = {"converter": CONVERTER_VERSION, "sha256": digest, "source": str(src), "side": side, "left_fix": left_fix}
    try:
        cache.mkdir(parents=True, exist_ok=True)
        save_tensors(cached, arrays, meta)
    except OSError as exc:
        raise HandModelError(f"cannot write the MANO cache {cached}: {exc}; pass another cache folder") from None
    return arrays


def mano_data_from_arrays(arrays: dict[str, np.ndarray], side: str, info: dict | None = None) -> HandModelData:
    """HandModelData(model_id="mano") from converted arrays; joints regressed once (linear in beta)."""
    v = arrays["v_template"].shape[0]
    if v != MANO_NUM_VERTICES:
        raise HandModelError(
            f"MANO has {MANO_NUM_VERTICES} vertices; this file has {v}, so the fingertip ids do not apply"
        )
    reg = np.asarray(arrays["j_regressor"], np.float64)
    v_t = np.asarray(arrays["v_template"], np.float64)
    sd = np.asarray(arrays["shapedirs"], np.float64)
    data = HandModelData(
        side=side,
        model_id="mano",
        v_template=v_t,
        faces=np.asarray(arrays["faces"], np.int32),
        shapedirs=sd,
        posedirs=np.asarray(arrays["posedirs"], np.float64),
        j_template=reg @ v_t,
        j_shapedirs=np.einsum("jv,vkb->jkb", reg, sd),
        weights=np.asarray(arrays["weights"], np.float64),
        parents=MANO_PARENTS.copy(),
        tip_vertex_ids=MANO_TIP_IDS.copy(),
        joint_frames=np.zeros((NUM_JOINTS, 3, 3)),
        joint_limits=np.zeros((NUM_JOINTS, 3, 2)),
        j_regressor=reg,
        shape_names=tuple(f"mano_pc{i}" for i in range(NUM_BETAS)),
        info=dict(info or {}),
    )
    data = with_anatomy(data)
    data.validate()
    return data


def load_mano_data(
    folder: str | Path | None, side: str = "right", cache_dir: str | Path | None = None
) -> HandModelData:
    """HandModelData for the user's MANO ``side`` found in ``folder`` (or ``folder/mano``)."""
    arrays = convert_mano(folder, side, cache_dir)
    return mano_data_from_arrays(arrays, side, {"source": str(find_mano_file(folder, side))})


def smplx_layer(data: HandModelData, dtype=None):
    """An ``smplx.MANO`` built from the same arrays (use_pca=False, flat_hand_mean=True, 10 betas).

    smplx is optional (the ``mano`` extra; MPI non-commercial licence). Raises HandModelError
    when it is not installed. Used to cross-check HandCap's forward pass against smplx's.
    """
    try:
        import smplx
        import torch
    except ImportError:
        raise HandModelError("smplx is not installed: pip install 'handcap[mano]' (smplx==0.1.28)") from None
    if data.model_id != "mano" or data.j_regressor is None or data.posedirs is None:
        raise HandModelError("smplx_layer needs MANO data (with its joint regressor and pose correctives)")

    class _Struct:
        pass

    st = _Struct()
    st.v_template = data.v_template
    st.f = data.faces
    st.shapedirs = data.shapedirs
    st.posedirs = data.posedirs
    st.J_regressor = data.j_regressor
    st.kintree_table = np.stack([np.where(data.parents < 0, 2**32 - 1, data.parents), np.arange(NUM_JOINTS)])
    st.weights = data.weights
    st.hands_components = np.eye(45)
    st.hands_mean = np.zeros(45)
    return smplx.MANO(
        "",
        is_rhand=data.side == "right",
        data_struct=st,
        use_pca=False,
        flat_hand_mean=True,
        num_betas=NUM_BETAS,
        dtype=dtype or torch.float64,
    )
