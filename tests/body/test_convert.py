"""Reading chumpy-based SMPL pickles without chumpy.

The tests build such pickles themselves: fake classes registered as ``chumpy.ch.Ch`` etc. pickle their
``__dict__`` the way chumpy does; then the fake modules are removed and the pickle is converted.
"""
from __future__ import annotations

import copy
import os
import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from romp_hydra.body.convert import ChumpyConversionError, convert_smpl_pickle, load_smpl_pickle, main
from romp_hydra.body.smpl import BodyModel


class _FakeCh:
    """Pickles like chumpy.ch.Ch: its __dict__ without the weak-reference caches."""

    def __init__(self, **fields):
        self.__dict__.update(fields)
        self._dirty_vars, self._itr, self._depends_on_deps = set(), None, {}
        self._parents, self._cache = {}, {"r": None}  # dropped by __getstate__, as in chumpy

    def __getstate__(self):
        state = copy.copy(self.__dict__)
        del state["_parents"], state["_cache"]
        return state


def _fake_class(module: str, name: str) -> type:
    return type(name, (_FakeCh,), {"__module__": module, "__qualname__": name})


@pytest.fixture
def fake_chumpy():
    """Register fake chumpy modules while a test pickles; ``remove()`` takes them away before it converts."""
    classes = {
        "chumpy.ch": ["Ch"],
        "chumpy.reordering": ["Select", "Reshape", "transpose", "Concatenate"],
        "chumpy.ch_ops": ["add", "multiply", "Unknown"],
    }
    made: dict[str, type] = {}
    patch = pytest.MonkeyPatch()
    patch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    for module_name, names in classes.items():
        module = types.ModuleType(module_name)
        for name in names:
            made[name] = _fake_class(module_name, name)
            setattr(module, name, made[name])
        patch.setitem(sys.modules, module_name, module)

    def remove() -> None:
        patch.undo()
        assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules

    yield made, remove
    patch.undo()  # idempotent: a no-op when the test already removed them


def _chumpy_model(ch: dict[str, type], protocol: int) -> tuple[bytes, dict]:
    rng = np.random.default_rng(0)
    template = rng.normal(size=(8, 3))
    shapedirs = rng.normal(size=(8, 3, 4))
    flat_weights = rng.random(8 * 5)
    j_regressor = scipy.sparse.random(5, 8, density=0.4, format="csc", random_state=1)
    base = ch["Ch"](x=np.arange(12.0))
    content = {
        "v_template": ch["Ch"](x=template),
        "shapedirs": ch["Ch"](x=shapedirs),
        "weights": ch["Reshape"](a=ch["Ch"](x=flat_weights), newshape=(8, 5)),
        "J": ch["Select"](a=base, idxs=np.array([0, 5, 7, 11]), preferred_shape=(2, 2)),
        "posedirs_t": ch["transpose"](a=ch["Ch"](x=shapedirs), axes=(2, 1, 0)),
        "sum": ch["add"](a=base, b=ch["multiply"](a=base, b=ch["Ch"](x=2.0))),
        "stacked": ch["Concatenate"](m0=base, m1=base, dterms=["m0", "m1"], axis=0),
        "J_regressor": j_regressor,
        "kintree_table": np.array([[4294967295, 0], [0, 1]], dtype=np.int64),
        "bs_style": "lbs",
    }
    expected = {
        "v_template": template,
        "shapedirs": shapedirs,
        "weights": flat_weights.reshape(8, 5),
        "J": np.array([[0.0, 5.0], [7.0, 11.0]]),
        "posedirs_t": shapedirs.transpose(2, 1, 0),
        "sum": np.arange(12.0) * 3,
        "stacked": np.concatenate([np.arange(12.0)] * 2),
        "J_regressor": j_regressor.toarray(),
    }
    return pickle.dumps(content, protocol=protocol), expected


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pickle_converts_without_chumpy(fake_chumpy, tmp_path: Path, protocol: int):
    classes, remove_chumpy = fake_chumpy
    payload, expected = _chumpy_model(classes, protocol)
    remove_chumpy()
    src, dst = tmp_path / "basicModel_chumpy.pkl", tmp_path / "SMPL_NEUTRAL.pkl"
    src.write_bytes(payload)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(payload)  # what smplx would hit

    converted = convert_smpl_pickle(src, dst)
    with dst.open("rb") as handle:
        plain = pickle.load(handle)  # the output needs no custom unpickler
    for result in (converted, plain):
        for key, value in expected.items():
            array = result[key].toarray() if scipy.sparse.issparse(result[key]) else result[key]
            np.testing.assert_array_equal(array, value, err_msg=key)
        assert scipy.sparse.isspmatrix_csc(result["J_regressor"])
        assert result["bs_style"] == "lbs" and result["kintree_table"][0, 0] == 4294967295


def test_old_scipy_module_paths_load(tmp_path: Path):
    matrix = scipy.sparse.random(4, 6, density=0.5, format="csc", random_state=0)
    payload = pickle.dumps({"J_regressor": matrix}, protocol=2)
    module = type(matrix).__module__.encode()  # e.g. scipy.sparse._csc
    assert module in payload
    (tmp_path / "old.pkl").write_bytes(payload.replace(module + b"\n", b"scipy.sparse.csc\n"))
    loaded = load_smpl_pickle(tmp_path / "old.pkl")
    np.testing.assert_array_equal(loaded["J_regressor"].toarray(), matrix.toarray())


def test_unknown_chumpy_class_is_named(fake_chumpy, tmp_path: Path):
    classes, remove_chumpy = fake_chumpy
    payload = pickle.dumps({"v_template": classes["Unknown"](x=np.zeros(3))}, protocol=2)
    remove_chumpy()
    (tmp_path / "odd.pkl").write_bytes(payload)
    with pytest.raises(ChumpyConversionError, match="chumpy.ch_ops.Unknown"):
        load_smpl_pickle(tmp_path / "odd.pkl")


class _CallsAFunction:
    def __reduce__(self):
        return (os.getcwd, ())


def test_refuses_globals_a_model_file_never_holds(tmp_path: Path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"v_template": _CallsAFunction()}))
    with pytest.raises(ChumpyConversionError, match="refusing to unpickle posix.getcwd|refusing to unpickle os.getcwd|refusing to unpickle nt.getcwd"):
        load_smpl_pickle(tmp_path / "evil.pkl")


def test_chumpy_stand_in_loads_directly_and_after_conversion(fake_chumpy, standin_dir: Path, tmp_path: Path):
    """The official-style file (chumpy arrays) gives the same body as the plain one, with or without
    converting it first."""
    classes, remove_chumpy = fake_chumpy
    with (standin_dir / "SMPL_NEUTRAL.pkl").open("rb") as handle:
        data = pickle.load(handle)
    chumpy_data = dict(data)
    chumpy_data["v_template"] = classes["Ch"](x=data["v_template"])
    chumpy_data["shapedirs"] = classes["Ch"](x=data["shapedirs"])
    chumpy_data["posedirs"] = classes["Reshape"](a=classes["Ch"](x=data["posedirs"].ravel()), newshape=data["posedirs"].shape)
    payload = pickle.dumps(chumpy_data, protocol=2)
    remove_chumpy()

    official, converted = tmp_path / "official", tmp_path / "converted"
    for folder in (official, converted):
        folder.mkdir()
        for name in ("J_regressor_extra.npy", "J_regressor_h36m.npy"):
            shutil.copy(standin_dir / name, folder / name)
    (official / "SMPL_NEUTRAL.pkl").write_bytes(payload)
    convert_smpl_pickle(official / "SMPL_NEUTRAL.pkl", converted / "SMPL_NEUTRAL.pkl")

    generator = torch.Generator().manual_seed(0)
    args = (0.3 * torch.randn(2, 3, generator=generator), 0.3 * torch.randn(2, 63, generator=generator),
            torch.randn(2, 10, generator=generator))
    reference = BodyModel(standin_dir)(*args)
    for folder in (official, converted):
        torch.testing.assert_close(BodyModel(folder)(*args).vertices, reference.vertices)


def test_command_line(tmp_path: Path, capsys):
    src = tmp_path / "in.pkl"
    src.write_bytes(pickle.dumps({"v_template": np.ones((2, 3))}))
    assert main([str(src), str(tmp_path / "out.pkl")]) == 0
    assert "v_template: ndarray (2, 3) float64" in capsys.readouterr().out
    assert main([str(src), str(src)]) == 1
    assert "overwrite its source" in capsys.readouterr().err
