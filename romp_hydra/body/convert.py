"""Read SMPL-family pickles that hold chumpy objects, without chumpy, and re-save them as plain numpy.

The official SMPL for Python (v1.0) and SMPLify model files are Python-2 pickles in which some arrays
(``v_template``, ``shapedirs``, ``J``, ...) are ``chumpy.ch.Ch`` objects or small chumpy expression graphs
(``chumpy.reordering.Select``, ``chumpy.ch_ops.add``, ...). chumpy does not install on current Python /
numpy, so `load_smpl_pickle` unpickles with a restricted `pickle.Unpickler` that substitutes a placeholder
for every chumpy class. A chumpy object pickles its ``__dict__`` (minus two weak-reference caches), so
the placeholder receives e.g. ``{'x': ndarray, ...}`` for a plain ``Ch`` or ``{'a': <Ch>, 'idxs': ...}``
for a ``Select``; after loading, each placeholder is evaluated to the ndarray chumpy would have computed.
scipy sparse matrices (``J_regressor``) are rebuilt from their stored arrays, so old scipy module paths
(``scipy.sparse.csc``) load too; they stay sparse, which smplx accepts.

Command line::

    python -m romp_hydra.body.convert SRC.pkl DST.pkl
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

__all__ = ["ChumpyConversionError", "convert_smpl_pickle", "load_smpl_pickle", "save_plain_pickle"]


class ChumpyConversionError(ValueError):
    """A pickle holds something that cannot be turned into plain arrays (unknown chumpy class, odd global)."""


class _ChumpyPlaceholder:
    """Stands in for one chumpy class during unpickling; keeps the pickled state for later evaluation."""

    chumpy_class = "chumpy.ch.Ch"  # overridden per substituted class; created empty, filled by BUILD

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = state if isinstance(state, dict) else {"x": state}


class _SparsePlaceholder:
    """Stands in for a scipy sparse matrix class; rebuilt with the installed scipy after unpickling."""

    sparse_format = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state


# Globals a SMPL / SMPLify / regressor pickle legitimately names. Anything else is refused, so loading a
# model file cannot call arbitrary functions.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "object"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("copyreg", "_reconstructor"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # bytes in protocol 0-2 pickles written by Python 3
    # Python-2 spellings; the base class maps them to their Python-3 modules.
    ("__builtin__", "object"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
    ("__builtin__", "slice"),
    ("__builtin__", "complex"),
    ("copy_reg", "_reconstructor"),
}
_SPARSE_FORMATS = {"csc_matrix": "csc", "csr_matrix": "csr", "coo_matrix": "coo",
                   "csc_array": "csc", "csr_array": "csr", "coo_array": "coo"}


class _ModelUnpickler(pickle.Unpickler):
    """Unpickler that maps chumpy and scipy-sparse classes to placeholders and refuses unexpected globals."""

    def __init__(self, file: Any):
        super().__init__(file, encoding="latin1")  # Python-2 pickles store numpy buffers as str
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return self._placeholder(module, name, _ChumpyPlaceholder, chumpy_class=f"{module}.{name}")
        if module.startswith("scipy.sparse") and name in _SPARSE_FORMATS:
            return self._placeholder(module, name, _SparsePlaceholder, sparse_format=_SPARSE_FORMATS[name])
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise ChumpyConversionError(
            f"refusing to unpickle {module}.{name}: a SMPL/SMPLify model file holds only numpy arrays, "
            "scipy sparse matrices and chumpy arrays; is this the right file?"
        )

    def _placeholder(self, module: str, name: str, base: type, **attributes: str) -> type:
        key = (module, name)
        if key not in self._placeholders:
            self._placeholders[key] = type(name, (base,), dict(attributes))
        return self._placeholders[key]


def _evaluate_chumpy(obj: _ChumpyPlaceholder, plain: Callable[[Any], Any]) -> np.ndarray:
    """The array a chumpy object evaluates to, for the classes SMPL-family files contain."""
    state = obj.state
    kind = obj.chumpy_class.rsplit(".", 1)[-1]

    def term(name: str) -> Any:
        if name not in state:
            raise ChumpyConversionError(f"chumpy {obj.chumpy_class} has no '{name}' in its pickled state")
        value = plain(state[name])
        return value.toarray() if scipy.sparse.issparse(value) else value

    def arr(name: str) -> np.ndarray:
        return np.asarray(term(name))

    if kind == "Ch":  # the basic container: its value is the stored array
        return np.asarray(term("x"), dtype=np.float64)
    if kind not in _CHUMPY_OPS:
        raise ChumpyConversionError(
            f"unsupported chumpy class {obj.chumpy_class} (pickled fields: {sorted(state)}); "
            "load the file once with chumpy installed and save np.array(value) instead"
        )
    return np.asarray(_CHUMPY_OPS[kind](state, arr, term), dtype=np.float64)


def _concatenate(state: dict, arr: Callable, term: Callable) -> np.ndarray:
    return np.concatenate([arr(name) for name in state["dterms"]], axis=state.get("axis", 0))


def _mat_vec_mult(state: dict, arr: Callable, term: Callable) -> np.ndarray:
    vec = arr("vec")
    result = np.asarray(term("mtx") @ vec.reshape(-1, 1)).ravel()
    return result.reshape(-1, vec.shape[1]) if vec.ndim > 1 and vec.shape[1] > 1 else result


def _atleast_nd(state: dict, arr: Callable, term: Callable) -> np.ndarray:
    fn = {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[state["ndims"]]
    return fn(arr("x"))


def _select(state: dict, arr: Callable, term: Callable) -> np.ndarray:
    result = arr("a").ravel()[np.asarray(state["idxs"])]
    return result.reshape(state["preferred_shape"]) if state.get("preferred_shape") is not None else result


# chumpy class name -> how to compute its value from the pickled fields (names as in chumpy's source).
_CHUMPY_OPS: dict[str, Callable[[dict, Callable, Callable], np.ndarray]] = {
    "Reshape": lambda s, arr, term: arr("a").reshape(s["newshape"]),
    "Select": _select,
    "transpose": lambda s, arr, term: np.transpose(arr("a"), s.get("axes")),
    "rollaxis": lambda s, arr, term: np.rollaxis(arr("a"), s["axis"], s.get("start", 0)),
    "swapaxes": lambda s, arr, term: np.swapaxes(arr("a"), s["axis1"], s["axis2"]),
    "Tile": lambda s, arr, term: np.tile(arr("a"), s["reps"]),
    "Repeat": lambda s, arr, term: np.repeat(arr("a"), s["repeats"], s.get("axis")),
    "Concatenate": _concatenate,
    "AtleastNd": _atleast_nd,
    "add": lambda s, arr, term: arr("a") + arr("b"),
    "subtract": lambda s, arr, term: arr("a") - arr("b"),
    "multiply": lambda s, arr, term: arr("a") * arr("b"),
    "divide": lambda s, arr, term: arr("x1") / arr("x2"),
    "dot": lambda s, arr, term: arr("a").dot(arr("b")),
    "negative": lambda s, arr, term: -arr("x"),
    "power": lambda s, arr, term: np.power(arr("x"), arr("pow")),
    "sum": lambda s, arr, term: np.sum(arr("x"), axis=s.get("axis")),
    "mean": lambda s, arr, term: np.mean(arr("x"), axis=s.get("axis")),
    "MatVecMult": _mat_vec_mult,
}


def _rebuild_sparse(obj: _SparsePlaceholder) -> scipy.sparse.spmatrix:
    state = obj.state if isinstance(obj.state, dict) else {}
    shape = tuple(state.get("_shape", state.get("shape", ())))
    if len(shape) != 2:
        raise ChumpyConversionError(f"sparse matrix in the pickle has no usable shape (fields: {sorted(state)})")
    if obj.sparse_format == "coo":
        return scipy.sparse.coo_matrix((state["data"], (state["row"], state["col"])), shape=shape)
    matrix_class = scipy.sparse.csc_matrix if obj.sparse_format == "csc" else scipy.sparse.csr_matrix
    return matrix_class((state["data"], state["indices"], state["indptr"]), shape=shape)


def _to_plain(value: Any, memo: dict[int, Any]) -> Any:
    """Replace placeholders (recursively through dicts, lists, tuples) by arrays and sparse matrices."""
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, _ChumpyPlaceholder):
        result: Any = _evaluate_chumpy(value, lambda inner: _to_plain(inner, memo))
    elif isinstance(value, _SparsePlaceholder):
        result = _rebuild_sparse(value)
    elif isinstance(value, dict):
        result = {k: _to_plain(v, memo) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        result = type(value)(_to_plain(v, memo) for v in value)
    else:
        result = value
    memo[key] = result
    return result


def load_smpl_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Load a SMPL-family pickle (plain numpy or chumpy, Python 2 or 3) as a dict of numpy arrays,
    scipy sparse matrices and plain Python values. chumpy is not needed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ChumpyConversionError: the file names an unexpected global or an unsupported chumpy class.
    """
    path = Path(path)
    with path.open("rb") as handle:
        try:
            content = _ModelUnpickler(handle).load()
        except ChumpyConversionError as error:
            raise ChumpyConversionError(f"{path}: {error}") from None
    if not isinstance(content, dict):
        raise ChumpyConversionError(f"{path}: expected a pickled dict of arrays, found {type(content).__name__}")
    try:
        return _to_plain(content, {})
    except ChumpyConversionError as error:
        raise ChumpyConversionError(f"{path}: {error}") from None


def save_plain_pickle(content: dict[str, Any], dst: str | os.PathLike) -> Path:
    """Write ``content`` as a Python-3 pickle atomically (a reader never sees a half-written file)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    with partial.open("wb") as handle:
        pickle.dump(content, handle, protocol=4)
    os.replace(partial, dst)
    return dst


def convert_smpl_pickle(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, Any]:
    """Rewrite the SMPL-family pickle ``src`` (chumpy or not) as a plain-numpy pickle at ``dst``.

    Every chumpy value becomes a float64 ndarray; sparse matrices (``J_regressor``) stay scipy sparse
    (smplx densifies them on load); all other entries are kept as they are.

    Returns:
        The converted dict, as written.
    """
    if Path(src).resolve() == Path(dst).resolve():
        raise ValueError(f"convert would overwrite its source {src}; give a different DST path")
    content = load_smpl_pickle(src)
    save_plain_pickle(content, dst)
    return content


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray {value.shape} {value.dtype}"
    if scipy.sparse.issparse(value):
        return f"{value.format} sparse {value.shape} nnz={value.nnz}"
    return type(value).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m romp_hydra.body.convert",
        description="Re-save a SMPL / SMPLify pickle that holds chumpy objects as plain numpy (no chumpy needed).",
    )
    parser.add_argument("src", type=Path, help="official pickle, e.g. basicModel_neutral_lbs_10_207_0_v1.0.0.pkl")
    parser.add_argument("dst", type=Path, help="output pickle, e.g. $ROMP_SMPL_DIR/SMPL_NEUTRAL.pkl")
    args = parser.parse_args(argv)
    try:
        content = convert_smpl_pickle(args.src, args.dst)
    except (OSError, ValueError) as error:
        print(f"convert failed: {error}", file=sys.stderr)
        return 1
    for key in sorted(content):
        print(f"  {key}: {_describe(content[key])}")
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
