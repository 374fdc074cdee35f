"""EFT pseudo ground truth: SMPL fits to 2D keypoints (Joo et al., "Exemplar Fine-Tuning", 3DV 2021).

ROMP supervises the SMPL pose of COCO, MPII and LSP persons with EFT's fits (romp_datasets.md §8, §11.10). They come
in two forms:

* EFT's release (github.com/facebookresearch/eft, `eft_fit_ver01.zip`): `COCO2014-All-ver01.json`,
  `MPII_ver01.json`, `LSPet_ver01.json`, each `{"data": [{"imageName", "bbox_center" [x, y], "bbox_scale",
  "parm_pose" 24 x 3 x 3 rotation matrices, "parm_shape" [10], "parm_cam", ...}]}`;
* ROMP's conversion `eft_annots.npz` in the dataset folder: a pickled dict {image name: [[bbox_center (2,),
  pose (72,) axis-angle, betas (10,)], ...]}.

Both become `EftFit`s keyed by the image's base name. A fit is attached to the annotated person whose keypoint box
centre is nearest its `bbox_center` (EFT computed that centre from the same keypoints), one fit per person.

vmask_3d of a fitted person is [kp3d F, global orient T, body pose T, betas F, verts F, depth F]:

* kp3d False: ROMP HEAD (regress_smpl=False) trains without 3D joints regressed from the fits;
* betas False: EFT shapes are weakly constrained by 2D keypoints, so ROMP never uses them as targets;
* verts False: no ground-truth mesh;
* depth False, where ROMP HEAD's table says True: that column means "root translation valid" and these datasets
  have none (EFT's camera is a weak-perspective crop camera), so claiming it would gate a loss on a target that
  does not exist. ROMP v1's losses never read the column, so training is unchanged.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from romp_hydra.data.sources._shared_2d import keypoint_box
from romp_hydra.data.sources._shared_3d import load_romp_annots
from romp_hydra.data.store import StoreFormatError
from romp_hydra.geometry.rotations import rotmat_to_axis_angle

log = logging.getLogger(__name__)

__all__ = [
    "VMASK_3D_EFT",
    "EftFit",
    "attach_fits",
    "eft_options",
    "find_eft_file",
    "load_eft_fits",
    "match_fits",
    "read_eft_json",
    "read_romp_eft_npz",
]

VMASK_3D_EFT = (False, True, True, False, False, False)
ROMP_EFT_FILE = "eft_annots.npz"
# A matched pair farther apart than this many person sizes (max side of the keypoint box) is not a match.
DEFAULT_MAX_OFFSET = 0.5
_NO_MATCH_COST = 1e9


@dataclass(frozen=True)
class EftFit:
    """One EFT fit: its bounding-box centre in image pixels and SMPL parameters (66 axis-angle + 10 betas)."""

    center: np.ndarray  # (2,) float64
    params: np.ndarray  # (76,) float32


def rotmats_to_params(rotmats: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """(M, 24, 3, 3) SMPL joint rotations + (M, 10) betas -> (M, 76): axis-angle of joints 0..21, then betas.

    SMPL's hand joints 22/23 are dropped, as everywhere in ROMP.
    """
    rotmats = np.asarray(rotmats, dtype=np.float32).reshape(-1, 24, 3, 3)
    axis_angle = rotmat_to_axis_angle(torch.from_numpy(rotmats)).numpy().reshape(-1, 72)
    return np.concatenate([axis_angle[:, :66], np.asarray(betas, dtype=np.float32).reshape(-1, 10)], axis=1)


def read_eft_json(path: Path) -> dict[str, list[EftFit]]:
    """EFT's release json -> {image base name: [EftFit, ...]} in file order."""
    with open(path) as file:
        content = json.load(file)
    entries = content.get("data") if isinstance(content, Mapping) else None
    if not isinstance(entries, list):
        raise StoreFormatError(f"{path}: expected EFT's json {{'data': [{{'imageName', 'bbox_center', 'parm_pose', "
                               f"'parm_shape', ...}}, ...]}}")
    if not entries:
        return {}
    try:
        names = [Path(entry["imageName"]).name for entry in entries]
        centers = np.array([entry["bbox_center"] for entry in entries], dtype=np.float64).reshape(-1, 2)
        rotmats = np.array([entry["parm_pose"] for entry in entries], dtype=np.float32).reshape(-1, 24, 3, 3)
        betas = np.array([entry["parm_shape"] for entry in entries], dtype=np.float32).reshape(-1, 10)
    except (KeyError, ValueError) as err:
        raise StoreFormatError(f"{path}: an entry lacks imageName / bbox_center (2) / parm_pose (24 x 3 x 3) / "
                               f"parm_shape (10): {err}") from err
    params = rotmats_to_params(rotmats, betas)
    fits: dict[str, list[EftFit]] = defaultdict(list)
    for name, center, row in zip(names, centers, params):
        fits[name].append(EftFit(center, row))
    return dict(fits)


def read_romp_eft_npz(path: Path) -> dict[str, list[EftFit]]:
    """ROMP's `eft_annots.npz` -> {image base name: [EftFit, ...]}."""
    annots = load_romp_annots(path, "annots")
    if not isinstance(annots, Mapping):
        raise StoreFormatError(f"{path}: member 'annots' is a {type(annots).__name__}, expected ROMP's dict "
                               f"{{image name: [[bbox_center, pose (72,), betas (10,)], ...]}}")
    fits: dict[str, list[EftFit]] = {}
    for name, entries in annots.items():
        converted = []
        for entry in entries:
            try:
                center = np.asarray(entry[0], dtype=np.float64).reshape(2)
                pose = np.asarray(entry[1], dtype=np.float32).reshape(72)
                betas = np.asarray(entry[2], dtype=np.float32).reshape(10)
            except (IndexError, ValueError, TypeError) as err:
                raise StoreFormatError(f"{path}: the fit of {name} is not [bbox_center (2,), pose (72,), "
                                       f"betas (10,)]: {err}") from err
            converted.append(EftFit(center, np.concatenate([pose[:66], betas])))
        fits[Path(str(name)).name] = converted
    return fits


def find_eft_file(root: Path, json_name: str, explicit: str | Path | None,
                  not_found: Callable[[Path, str], Exception]) -> Path:
    """The EFT file of a dataset: `explicit` if given, else EFT's json (under root or root/eft_fit), else ROMP's
    `eft_annots.npz` under root."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise not_found(path, f"the EFT fit file (EFT's {json_name} or ROMP's {ROMP_EFT_FILE}) given as eft_file")
        return path
    candidates = [root / json_name, root / "eft_fit" / json_name, root / ROMP_EFT_FILE]
    for path in candidates:
        if path.is_file():
            return path
    raise not_found(candidates[-1], f"the EFT fits (ROMP's {ROMP_EFT_FILE}, or EFT's {json_name} in the dataset "
                                    f"folder or its eft_fit/ subfolder; or set eft_file=..., or eft=false to train "
                                    f"on 2D keypoints only)")


def load_eft_fits(path: Path) -> dict[str, list[EftFit]]:
    """Read an EFT file in either form (ROMP's .npz or EFT's .json), logging how many fits it holds."""
    fits = read_romp_eft_npz(path) if path.suffix == ".npz" else read_eft_json(path)
    log.info("EFT: %d fits on %d images from %s", sum(len(v) for v in fits.values()), len(fits), path)
    return fits


def match_fits(kp2ds: np.ndarray, fits: Sequence[EftFit], max_offset: float | None = DEFAULT_MAX_OFFSET
               ) -> list[int | None]:
    """For each person of an image, the index of its EFT fit or None.

    One-to-one assignment (Hungarian, scipy's linear_sum_assignment) minimising the summed distance between each
    person's keypoint-box centre and the fits' `bbox_center`s. A pair farther apart than `max_offset` x the person's
    size (max side of its keypoint box, at least 1 px) is never matched; None disables that check.

    Differences from ROMP: ROMP matches COCO with the same assignment (lap.lapjv) but without a distance limit, so a
    person whose own fit is missing can receive a neighbour's; and it matches MPII by nearest centre with
    duplicates allowed, so two persons can share one fit. Both put another person's pose on a person.
    """
    count = len(kp2ds)
    matches: list[int | None] = [None] * count
    if count == 0 or len(fits) == 0:
        return matches
    centers = np.stack([fit.center for fit in fits])
    cost = np.full((count, len(fits)), _NO_MATCH_COST)
    for person in range(count):
        box = keypoint_box(kp2ds[person])
        if box is None:
            continue
        center, size = box
        distance = np.linalg.norm(centers - center, axis=1)
        allowed = np.ones(len(fits), bool) if max_offset is None else distance <= max_offset * max(size, 1.0)
        cost[person, allowed] = distance[allowed]
    for person, fit in zip(*linear_sum_assignment(cost)):
        if cost[person, fit] < _NO_MATCH_COST:
            matches[int(person)] = int(fit)
    return matches


def attach_fits(kp2ds: np.ndarray, fits: Sequence[EftFit], max_offset: float | None = DEFAULT_MAX_OFFSET
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 76) params (-10 rows for persons without a fit) and (N, 6) vmask_3d for one image's persons."""
    count = len(kp2ds)
    params = np.full((count, 76), -10.0, np.float32)
    vmask_3d = np.zeros((count, 6), bool)
    for person, fit in enumerate(match_fits(kp2ds, fits, max_offset)):
        if fit is not None:
            params[person] = fits[fit].params
            vmask_3d[person] = VMASK_3D_EFT
    return params, vmask_3d


def eft_options(eft: bool, eft_file: str | Path | None, eft_max_offset: float | None, key: str) -> dict[str, Any]:
    """Check the EFT options shared by coco / mpii / lsp and return them for the store's options tag."""
    if eft_max_offset is not None and float(eft_max_offset) <= 0:
        raise ValueError(f"{key}: eft_max_offset={eft_max_offset} must be > 0 (a fraction of the person's size), "
                         f"or null for ROMP's unlimited matching")
    return {"eft": bool(eft), "eft_file": None if eft_file is None else str(eft_file),
            "eft_max_offset": None if eft_max_offset is None else float(eft_max_offset)}
