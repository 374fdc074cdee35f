"""UP-3D: SMPL fits to LSP / MPII / FashionPose images, checked by annotators (Lassner et al., CVPR 2017)."""
from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.sources._shared_2d import ImageSizes, joints_to_54, options_tag
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["UP3D"]

LIST_SPLITS = ("train", "val", "test", "trainval")
_IMAGE_NAME = re.compile(r"(\d+)_image\.png$")


class UP3D(StoreBackedSource):
    """UP-3D: one person per image with 14 2D joints and an SMPL fit (pose + shape); no 3D joints.

    Annotations provided: 2D keypoints in LSP order (`<idx>_joints.npy`, (3, 14) x / y / visibility) mapped by name
    (neck -> Neck_LSP 47, head top -> Head_top 48, hips -> the dataset hips 45/46); the SMPL fit of
    `<idx>_body.pkl` ('pose' 72 axis-angle, 'betas' 10) as global orient + body pose targets. vmask_2d [T, F, F]
    (only one person per image is labelled), vmask_3d [F, T, T, F, F, F]: shape is not supervised (SMPLify shapes
    are weak), and without a body model at pack time no 3D joints are regressed (ROMP HEAD sets kp3d only when it
    regresses them).

    Selection (ROMP's): images whose `<idx>_quality_info.txt` says 'high' and whose `<idx>_dataset_info.txt` names
    a dataset other than 'fashionpose'. ROMP compares the first space-separated token, which may keep a trailing
    newline, so its filter may not work as intended; here the first whitespace-separated token is compared.

    Official site: https://files.is.tue.mpg.de/classner/up/ (up-3d.zip).

    Args:
        split: 'train', 'val', 'test', 'trainval' (the release's <split>.txt lists) or 'all' (every image).
        qualities: the quality labels to keep (ROMP: high only).
        exclude_datasets: the origin datasets to leave out (ROMP: fashionpose).
    """

    multi_person: ClassVar[bool] = False
    homepage: ClassVar[str] = "https://files.is.tue.mpg.de/classner/up/ (up-3d.zip)"
    expected_layout: ClassVar[str] = """
        <idx:05d>_image.png, <idx>_body.pkl, <idx>_joints.npy, <idx>_quality_info.txt, <idx>_dataset_info.txt
        train.txt, val.txt, test.txt, trainval.txt    image lists of the splits (not needed for split=all)
    """
    provides: ClassVar[str] = "2D keypoints (LSP-14) and SMPL global orient + body pose of one person per image"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, qualities: Sequence[str] = ("high",),
                 exclude_datasets: Sequence[str] = ("fashionpose",)):
        if split not in (*LIST_SPLITS, "all"):
            raise ValueError(f"up split={split!r}: use one of {', '.join(LIST_SPLITS)} or 'all'")
        super().__init__(root, split, key=key or "up", store_dir=store_dir)
        self.qualities = tuple(str(q) for q in qualities)
        self.exclude_datasets = tuple(str(d) for d in exclude_datasets)

    @property
    def store_path(self) -> Path:
        tag = options_tag(qualities=self.qualities, exclude_datasets=self.exclude_datasets)
        return self.store_dir / f"{self.key}_{self.split}_{tag}.npz"

    def annotation_files(self) -> list[Path]:
        return [self.root / f"{self.split}.txt"] if self.split in LIST_SPLITS else []

    def sample_ids(self) -> list[str]:
        """The zero-padded sample numbers of the split."""
        if self.split == "all":
            names = (path.name for path in self.root.glob("*_image.png"))
        else:
            list_file = self.require(f"{self.split}.txt", "the UP-3D split list (or use split=all)")
            names = (line.strip() for line in list_file.read_text().splitlines() if line.strip())
        return sorted(m.group(1) for name in names if (m := _IMAGE_NAME.search(name)))

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        log.info("%s: reading the pickled SMPL fits (<idx>_body.pkl) under %s: these files are trusted",
                 self.key, self.root)
        sizes = ImageSizes(self.root, self.key)
        kept = skipped = 0
        for idx in self.sample_ids():
            if not self._selected(idx):
                skipped += 1
                continue
            imgpath = f"{idx}_image.png"
            size = sizes(imgpath)
            if size is None:
                continue
            kept += 1
            yield {
                "imgpath": imgpath,
                "img_size": size,
                "kp2ds": joints_to_54(self._joints(idx), "lsp_14")[None],
                "track_ids": None,
                "vmask_2d": vmask_2d_rows(1, pose=True, track_ids=False, all_labelled=False),
                "vmask_3d": vmask_3d_rows(1, global_orient=True, body_pose=True),
                "params": self._params(idx)[None],
            }
        sizes.report()
        log.info("%s %s: %d images kept, %d left out by the quality / dataset filter", self.key, self.split, kept,
                 skipped)

    def _selected(self, idx: str) -> bool:
        quality = self._first_token(f"{idx}_quality_info.txt")
        origin = self._first_token(f"{idx}_dataset_info.txt")
        return quality in self.qualities and origin not in self.exclude_datasets

    def _first_token(self, name: str) -> str:
        tokens = self.require(name, "a UP-3D info file").read_text().split()
        return tokens[0] if tokens else ""

    def _joints(self, idx: str) -> np.ndarray:
        path = self.require(f"{idx}_joints.npy", "the sample's 2D joints")
        joints = np.load(path, allow_pickle=False)
        if joints.shape != (3, 14):
            raise StoreFormatError(f"{path}: shape {joints.shape}, expected (3, 14) rows x / y / visibility")
        return joints.T

    def _params(self, idx: str) -> np.ndarray:
        path = self.require(f"{idx}_body.pkl", "the sample's SMPL fit")
        with open(path, "rb") as file:
            body = pickle.load(file, encoding="latin1")  # written by Python 2
        try:
            pose = np.asarray(body["pose"], dtype=np.float32).reshape(-1)[:66]
            betas = np.asarray(body["betas"], dtype=np.float32).reshape(-1)[:10]
        except (KeyError, TypeError, ValueError) as err:
            raise StoreFormatError(f"{path}: expected a dict with 'pose' (72) and 'betas' (10): {err}") from err
        if pose.size != 66 or betas.size != 10:
            raise StoreFormatError(f"{path}: 'pose' / 'betas' have {pose.size} / {betas.size} values, expected "
                                   f"at least 66 / 10")
        return np.concatenate([pose, betas])
