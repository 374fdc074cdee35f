"""Helpers shared by the 3D, video and evaluation sources (h36m, mpiinf, muco, mupots, pw3d, cmup).

Only `pack_data()` uses these: they read ROMP's pickled archives, decide per-joint 2D visibility, find image
sizes and run the body model on SMPL ground truth. Training reads the packed store and never gets here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from romp_hydra.body.joint_sets import ROOT_JOINTS
from romp_hydra.data.store import StoreFormatError

log = logging.getLogger(__name__)


def load_romp_annots(path: Path, member: str = "annots") -> Any:
    """One member of ROMP's pickled `annots*.npz`, unwrapped (ROMP stores a dict as a 0-d object array).

    Unpickling runs code from the file, so this is done only here, once per pack, with a log line saying so.
    """
    log.info("reading ROMP's pickled archive %s with allow_pickle=True: this file is trusted", path)
    with np.load(path, allow_pickle=True) as archive:
        if member not in archive.files:
            raise StoreFormatError(
                f"{path} has no member '{member}' (members: {archive.files}); expected ROMP's annotation "
                f"archive from its parsed-annotations download"
            )
        value = archive[member]
        return value[()] if value.dtype == object and value.ndim == 0 else value


def inside_image(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """(J,) bool: the pixel point lies inside the image, [0, W) x [0, H)."""
    xy = np.asarray(xy, dtype=np.float64)
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def with_visibility(xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(J, 3) float32 [x, y, vis] with vis 1 / 0; invisible joints become -2 rows (the missing marker)."""
    visible = np.asarray(visible, dtype=bool)
    joints = np.concatenate(
        [np.asarray(xy, dtype=np.float32)[:, :2], np.ones((len(visible), 1), np.float32)], 1
    )
    joints[~visible] = -2.0
    return joints


def hip_centre(kp3d54: np.ndarray) -> np.ndarray:
    """(3,) the midpoint of joints 45/46 (R_Hip, L_Hip): the root translation of our 3D convention."""
    return np.asarray(kp3d54, dtype=np.float64)[list(ROOT_JOINTS)].mean(axis=0).astype(np.float32)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float32 pinhole camera matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float32)


def image_size(path: Path, what: Callable[[Path, str], Exception]) -> tuple[int, int]:
    """(H, W) of an image file; `what(path, description)` builds the error when it is missing or bad."""
    if not path.is_file():
        raise what(path, "an image (used to read the image size)")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise what(path, "a readable image (OpenCV could not decode it)")
    return int(image.shape[0]), int(image.shape[1])


def to_metres(kp3d: np.ndarray, where: str) -> np.ndarray:
    """Joints in metres. Values beyond 50 can only be millimetres (no camera sees people 50 m away): convert
    them and say so, since ROMP's archives do not state their unit."""
    kp3d = np.asarray(kp3d, dtype=np.float32)
    if np.abs(kp3d).max(initial=0.0) > 50.0:
        log.info(
            "%s: 3D joints look like millimetres (max |value| %.0f); dividing by 1000",
            where,
            float(np.abs(kp3d).max()),
        )
        return kp3d / 1000.0
    return kp3d


class SMPLJoints:
    """Runs the body model on SMPL ground truth to give 54-joint 3D positions (only inside `pack_data`).

    Gendered models are used when `SMPL_MALE.pkl` / `SMPL_FEMALE.pkl` exist in `model_dir`; otherwise the
    neutral model stands in and a log line says so (the joints are then approximate for that dataset).

    Args:
        kind: 'smpl' (the licensed files) or 'standin' (the generated stand-in; tests only).
        model_dir: the body-model folder.
        dataset: the dataset key, for log lines.
    """

    def __init__(self, kind: str, model_dir: str | Path, dataset: str):
        self.kind = kind
        self.model_dir = Path(model_dir).expanduser()
        self.dataset = dataset
        self._models: dict[str, Any] = {}

    def _model(self, gender: str) -> Any:
        from romp_hydra.body.files import SMPL_MODEL_FILES, BodyModelFilesMissing
        from romp_hydra.body.smpl import build_body_model

        if gender not in self._models:
            try:
                self._models[gender] = build_body_model(
                    self.kind, self.model_dir, gender=gender, root_align=False
                )
            except BodyModelFilesMissing as err:
                if gender == "neutral" or err.missing != [SMPL_MODEL_FILES[gender]]:
                    raise
                log.warning(
                    "%s: %s is missing from %s; using the neutral body model for %s subjects, so their 3D "
                    "joints are approximate",
                    self.dataset,
                    err.missing[0],
                    self.model_dir,
                    gender,
                )
                self._models[gender] = self._model("neutral")
        return self._models[gender]

    def __call__(self, params: np.ndarray, gender: str = "neutral", chunk: int = 256) -> np.ndarray:
        """(N, 54, 3) float32 joints, in the body model's own frame (no translation), for (N, 76) params."""
        import torch

        model = self._model(gender)
        params = np.asarray(params, dtype=np.float32).reshape(-1, 76)
        out = []
        with torch.no_grad():
            for start in range(0, len(params), chunk):
                batch = torch.from_numpy(np.ascontiguousarray(params[start : start + chunk]))
                body = model(global_orient=batch[:, :3], body_pose=batch[:, 3:66], betas=batch[:, 66:76])
                out.append(body.joints54.detach().cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, 54, 3), np.float32)
