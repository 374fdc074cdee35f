"""The body-model files a run needs, where they come from, and one clear error when they are missing.

ROMP users keep these files in one folder (``paths.smpl_dir``, ``$ROMP_SMPL_DIR``), under the names below:

* ``SMPL_NEUTRAL.pkl`` -- the gender-neutral SMPL model (required). ``SMPL_MALE.pkl`` / ``SMPL_FEMALE.pkl``
  are needed only to turn gendered ground truth (H36M, 3DPW) into joints and vertices.
* ``J_regressor_extra.npy`` (9 x 6890) -- joints 45..53 of the 54-joint set (LSP hips, neck, head top, ...).
* ``J_regressor_h36m.npy`` (17 x 6890) -- the Human3.6M joints used for evaluation.
* ``gmm_08.pkl`` -- SMPLify's 8-component Gaussian-mixture pose prior (only for the prior loss).

The SMPL model files are licensed and cannot be shipped; ``body_model=standin`` runs on a generated
stand-in (`romp_hydra.body.standin`) instead.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GENDERS",
    "GMM_PRIOR_FILE",
    "J_REGRESSOR_EXTRA_FILE",
    "J_REGRESSOR_H36M_FILE",
    "SMPL_MODEL_FILES",
    "STANDIN_MARKER_FILE",
    "BodyModelFile",
    "BodyModelFilesMissing",
    "BodyModelPaths",
    "body_model_paths",
    "check_body_model_files",
    "describe_file",
    "gmm_prior_path",
    "is_standin_dir",
    "smpl_model_path",
]

GENDERS = ("neutral", "male", "female")
SMPL_MODEL_FILES = {"neutral": "SMPL_NEUTRAL.pkl", "male": "SMPL_MALE.pkl", "female": "SMPL_FEMALE.pkl"}
J_REGRESSOR_EXTRA_FILE = "J_regressor_extra.npy"
J_REGRESSOR_H36M_FILE = "J_regressor_h36m.npy"
GMM_PRIOR_FILE = "gmm_08.pkl"
# Written by the stand-in generator next to its files; its presence marks a folder as NOT holding SMPL.
STANDIN_MARKER_FILE = "STANDIN_NOT_SMPL.txt"

_CONVERT_HINT = (
    "if your copy pickles chumpy objects (SMPL for Python v1.0 and SMPLify files do), it also loads "
    "directly, or convert it once to plain numpy with `python -m romp_hydra.body.convert SRC DST`"
)
_SMPL_SOURCE = "https://smpl.is.tue.mpg.de (register, accept the licence, download 'SMPL for Python' v1.0/v1.1)"


@dataclass(frozen=True)
class BodyModelFile:
    """One file of the body-model folder: its name, what it is, where it is licensed from, how to get it."""

    name: str
    what: str
    source: str
    how: str


_FILES = {
    "SMPL_NEUTRAL.pkl": BodyModelFile(
        name="SMPL_NEUTRAL.pkl",
        what="gender-neutral SMPL body model (6890 vertices, 24 joints, 10 shape components used)",
        source=_SMPL_SOURCE + "; the neutral model is also in SMPLify (https://smplify.is.tue.mpg.de)",
        how="copy basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl (SMPL v1.1) or SMPLify's "
        "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl to this name; " + _CONVERT_HINT,
    ),
    "SMPL_MALE.pkl": BodyModelFile(
        name="SMPL_MALE.pkl",
        what="male SMPL body model (for gendered ground truth: H36M, 3DPW)",
        source=_SMPL_SOURCE,
        how="copy basicmodel_m_lbs_10_207_0_v1.1.0.pkl (or basicModel_m_lbs_10_207_0_v1.0.0.pkl) to this name; "
        + _CONVERT_HINT,
    ),
    "SMPL_FEMALE.pkl": BodyModelFile(
        name="SMPL_FEMALE.pkl",
        what="female SMPL body model (for gendered ground truth: H36M, 3DPW)",
        source=_SMPL_SOURCE,
        how="copy basicmodel_f_lbs_10_207_0_v1.1.0.pkl (or basicModel_f_lbs_10_207_0_v1.0.0.pkl) to this name; "
        + _CONVERT_HINT,
    ),
    J_REGRESSOR_EXTRA_FILE: BodyModelFile(
        name=J_REGRESSOR_EXTRA_FILE,
        what="9 x 6890 regressor of the extra joints 45..53 (LSP hips, neck, head top, pelvis, thorax, ...)",
        source="SPIN's data release (github.com/nkolot/SPIN, fetch_data.sh) or ROMP's model_data download "
        "(github.com/Arthur151/ROMP); check their terms of use",
        how="copy J_regressor_extra.npy from SPIN's data folder or ROMP's model_data",
    ),
    J_REGRESSOR_H36M_FILE: BodyModelFile(
        name=J_REGRESSOR_H36M_FILE,
        what="17 x 6890 regressor of the Human3.6M joints (evaluation joints, raw H36M row order)",
        source="SPIN's data release (github.com/nkolot/SPIN, fetch_data.sh) or ROMP's model_data download "
        "(github.com/Arthur151/ROMP); check their terms of use",
        how="copy J_regressor_h36m.npy from SPIN's data folder or ROMP's model_data",
    ),
    GMM_PRIOR_FILE: BodyModelFile(
        name=GMM_PRIOR_FILE,
        what="SMPLify's 8-component Gaussian-mixture prior over the 69-D body pose (prior loss only)",
        source="SMPLify (https://smplify.is.tue.mpg.de, code/models/gmm_08.pkl); SPIN ships the same file",
        how="copy gmm_08.pkl to this name",
    ),
}


class BodyModelFilesMissing(FileNotFoundError):
    """Licensed body-model files are absent. The message lists each file, what it is, where it is licensed
    from, the exact path it must have, and how to run without licensed files."""

    def __init__(self, smpl_dir: Path, missing: list[str]):
        self.smpl_dir = Path(smpl_dir)
        self.missing = list(missing)
        lines = [f"Body-model files missing from {self.smpl_dir} (paths.smpl_dir / $ROMP_SMPL_DIR):"]
        for name in self.missing:
            lines.append(describe_file(name, self.smpl_dir))
        lines.append(
            "To run without licensed files, use the generated stand-in (NOT SMPL): body_model=standin "
            "(or `python -m romp_hydra.body.standin OUT_DIR` and point body_model.model_dir at OUT_DIR)."
        )
        super().__init__("\n".join(lines))


def describe_file(name: str, smpl_dir: str | os.PathLike) -> str:
    """A few indented lines about one body-model file: what it is, where it is licensed from, where it goes."""
    info = _FILES[name]
    return (
        f"  - {name}: {info.what}\n"
        f"      licensed from: {info.source}\n"
        f"      put it at:     {Path(smpl_dir).expanduser().resolve() / name}\n"
        f"      how:           {info.how}"
    )


@dataclass(frozen=True)
class BodyModelPaths:
    """Resolved paths of the files one `BodyModel` reads."""

    model: Path
    j_regressor_extra: Path
    j_regressor_h36m: Path


def _check_gender(gender: str) -> str:
    if gender not in GENDERS:
        raise ValueError(f"gender={gender!r} is not a SMPL model; choose one of {', '.join(GENDERS)}")
    return gender


def smpl_model_path(smpl_dir: str | os.PathLike, gender: str = "neutral") -> Path:
    """Where the SMPL model of ``gender`` lives in ``smpl_dir`` (whether or not it exists)."""
    return Path(smpl_dir).expanduser().resolve() / SMPL_MODEL_FILES[_check_gender(gender)]


def body_model_paths(smpl_dir: str | os.PathLike, gender: str = "neutral") -> BodyModelPaths:
    """The three files a `BodyModel` of ``gender`` reads (whether or not they exist)."""
    root = Path(smpl_dir).expanduser().resolve()
    return BodyModelPaths(
        model=smpl_model_path(root, gender),
        j_regressor_extra=root / J_REGRESSOR_EXTRA_FILE,
        j_regressor_h36m=root / J_REGRESSOR_H36M_FILE,
    )


def check_body_model_files(
    smpl_dir: str | os.PathLike, genders: Iterable[str] = ("neutral",), pose_prior: bool = False
) -> BodyModelPaths:
    """Check that ``smpl_dir`` holds the SMPL models of ``genders``, both regressors and, when
    ``pose_prior``, ``gmm_08.pkl``.

    Returns:
        The paths for the first gender.
    Raises:
        BodyModelFilesMissing: naming every missing file, its licence source and where to put it.
    """
    genders = [_check_gender(g) for g in genders] or ["neutral"]
    root = Path(smpl_dir).expanduser().resolve()
    needed = [SMPL_MODEL_FILES[g] for g in genders] + [J_REGRESSOR_EXTRA_FILE, J_REGRESSOR_H36M_FILE]
    if pose_prior:
        needed.append(GMM_PRIOR_FILE)
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise BodyModelFilesMissing(root, missing)
    return body_model_paths(root, genders[0])


def gmm_prior_path(smpl_dir: str | os.PathLike, required: bool = True) -> Path | None:
    """Path of SMPLify's ``gmm_08.pkl`` in ``smpl_dir``; None when absent and not ``required``."""
    path = Path(smpl_dir).expanduser().resolve() / GMM_PRIOR_FILE
    if path.is_file():
        return path
    if required:
        raise BodyModelFilesMissing(path.parent, [GMM_PRIOR_FILE])
    return None


def is_standin_dir(smpl_dir: str | os.PathLike) -> bool:
    """True when ``smpl_dir`` was written by the stand-in generator (it holds the stand-in marker file)."""
    return (Path(smpl_dir).expanduser() / STANDIN_MARKER_FILE).is_file()
