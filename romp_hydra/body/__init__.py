"""Body model: SMPL through smplx with ROMP's joint sets, a licence-free stand-in, and file handling.

* `joint_sets` -- the 54-joint set, dataset joint orders, mappings, flip permutations.
* `smpl` -- `BodyModel` / `build_body_model`: pose + shape -> vertices, 54 joints, 17 H36M joints.
* `standin` -- a generated model with SMPL's array layout (NOT SMPL) for tests and demos.
* `convert` -- re-save chumpy-based SMPL pickles as plain numpy.
* `files` -- the required files, their licence sources, and the missing-file error.

The names below are imported on first use, so ``python -m romp_hydra.body.standin`` / ``.convert`` run
their module once (no double import) and importing `joint_sets` does not load smplx.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BodyModel": "romp_hydra.body.smpl",
    "BodyOutput": "romp_hydra.body.smpl",
    "build_body_model": "romp_hydra.body.smpl",
    "BodyModelFilesMissing": "romp_hydra.body.files",
    "check_body_model_files": "romp_hydra.body.files",
    "write_standin": "romp_hydra.body.standin",
    "convert_smpl_pickle": "romp_hydra.body.convert",
}

__all__ = [
    "BodyModel",
    "BodyModelFilesMissing",
    "BodyOutput",
    "build_body_model",
    "check_body_model_files",
    "convert_smpl_pickle",
    "write_standin",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'romp_hydra.body' has no attribute {name!r}")
