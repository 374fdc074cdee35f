"""MPII Human Pose, from the HRNet-style json that ROMP reads (+ EFT SMPL fits)."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.masks import vmask_2d_rows
from romp_hydra.data.sources._shared_2d import ImageSizes, joints_to_54, located_or_packed, options_tag
from romp_hydra.data.sources.eft import (
    DEFAULT_MAX_OFFSET,
    attach_fits,
    eft_options,
    find_eft_file,
    load_eft_fits,
)
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["MPII", "read_mpii_json"]

SPLITS = ("train", "valid")
NUM_JOINTS = 16


def read_mpii_json(path: Path) -> dict[str, list[np.ndarray]]:
    """HRNet's MPII json -> {image name: [(16, 3) [x, y, vis] per person]}, images in file order.

    The json holds one entry per person: {'image', 'center', 'scale', 'joints' [[x, y] x 16], 'joints_vis' [16]},
    with 1-based (MATLAB) pixel coordinates; 1 is subtracted, as ROMP does.
    """
    with open(path) as file:
        entries = json.load(file)
    if not isinstance(entries, list):
        raise StoreFormatError(f"{path}: expected a list of persons {{'image', 'joints', 'joints_vis', ...}}")
    persons: dict[str, list[np.ndarray]] = {}
    for index, entry in enumerate(entries):
        try:
            joints = np.asarray(entry["joints"], dtype=np.float32).reshape(NUM_JOINTS, 2) - 1.0
            visible = np.asarray(entry["joints_vis"], dtype=np.float32).reshape(NUM_JOINTS, 1)
            name = str(entry["image"])
        except (KeyError, ValueError, TypeError) as err:
            raise StoreFormatError(f"{path}: person {index} lacks 'image', 'joints' (16 x [x, y]) or 'joints_vis' "
                                   f"(16); the test split has no joints and cannot be trained on ({err})") from err
        persons.setdefault(name, []).append(np.concatenate([joints, visible], axis=1))
    return persons


class MPII(StoreBackedSource):
    """MPII Human Pose: several people per image with 16 2D joints; EFT SMPL pose fits where matched.

    Annotations provided: 2D keypoints in MPII's order (r/l ankle, knee, hip, pelvis, thorax, upper neck, head top,
    r/l wrist, elbow, shoulder) mapped by name (upper neck -> Neck 12, thorax -> Thorax_MPII 50, pelvis -> Pelvis 49,
    head top -> Head_top 48, hips -> the dataset hips 45/46); no track ids; vmask_2d [T, F, T] (ROMP counts every
    person as labelled). Persons matched to an EFT fit get SMPL global orient + body pose (vmask_3d
    [F, T, T, F, F, F], see `romp_hydra.data.sources.eft`).

    Official site: http://human-pose.mpi-inf.mpg.de (images); the json annotations are HRNet's conversion
    (github.com/leoxiaobin/deep-high-resolution-net.pytorch, "data/mpii/annot"); EFT fits:
    https://github.com/facebookresearch/eft (MPII_ver01.json) or ROMP's eft_annots.npz.

    Sample list: with EFT (ROMP's behaviour, `eft_images_only`), only the images that have EFT fits; persons of
    those images without a fit still supervise 2D.

    Args:
        split: 'train' or 'valid' (annot/<split>.json).
        eft, eft_file, eft_max_offset: as for COCO (eft=false: 2D only, every image).
        eft_images_only: with EFT, keep only the images that have fits (ROMP).
    """

    homepage: ClassVar[str] = (
        "images: http://human-pose.mpi-inf.mpg.de/#download; annot/{train,valid}.json: HRNet's MPII annotations "
        "(github.com/leoxiaobin/deep-high-resolution-net.pytorch, data/mpii); EFT fits: "
        "https://github.com/facebookresearch/eft (MPII_ver01.json) or ROMP's eft_annots.npz (docs/dataset.md)"
    )
    expected_layout: ClassVar[str] = """
        images/<name>.jpg
        annot/train.json, annot/valid.json     HRNet-style person list
        MPII_ver01.json or eft_fit/MPII_ver01.json or eft_annots.npz   EFT fits (eft=true)
    """
    provides: ClassVar[str] = "2D keypoints (MPII-16), EFT SMPL global orient + body pose where matched"
    eft_json_name: ClassVar[str] = "MPII_ver01.json"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, eft: bool = True, eft_file: str | Path | None = None,
                 eft_max_offset: float | None = DEFAULT_MAX_OFFSET, eft_images_only: bool = True):
        if split not in SPLITS:
            raise ValueError(f"mpii split={split!r}: use one of {', '.join(SPLITS)} (HRNet's annot/<split>.json)")
        super().__init__(root, split, key=key or "mpii", store_dir=store_dir)
        self.eft = {**eft_options(eft, eft_file, eft_max_offset, self.key), "eft_images_only": bool(eft_images_only)}
        self.eft_path = located_or_packed(self, self._find_eft_file) if eft else None

    def _find_eft_file(self) -> Path:
        return find_eft_file(self.root, self.eft_json_name, self.eft["eft_file"], self.not_found)

    @property
    def store_path(self) -> Path:
        return self.store_dir / f"{self.key}_{self.split}_{options_tag(**self.eft)}.npz"

    def annotation_files(self) -> list[Path]:
        files = [self.root / "annot" / f"{self.split}.json"]
        return files + ([self.eft_path] if self.eft_path is not None else [])

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        persons = read_mpii_json(self.require(f"annot/{self.split}.json", "HRNet's MPII annotation json"))
        if self.eft["eft"]:  # packing needs the fits, even if the store was found without them
            self.eft_path = self.eft_path or self._find_eft_file()
        fits = load_eft_fits(self.eft_path) if self.eft_path is not None else {}
        sizes = ImageSizes(self.root, self.key)
        images = matched = 0
        for name, raw in persons.items():
            image_fits = fits.get(Path(name).name, [])
            if self.eft_path is not None and self.eft["eft_images_only"] and not image_fits:
                continue
            imgpath = f"images/{name}"
            size = sizes(imgpath)
            if size is None:
                continue
            kp2ds = np.stack([joints_to_54(joints, "mpii_16") for joints in raw])
            params, vmask_3d = attach_fits(kp2ds, image_fits, self.eft["eft_max_offset"])
            count = len(kp2ds)
            images, matched = images + 1, matched + int(vmask_3d[:, 1].sum())
            yield {
                "imgpath": imgpath,
                "img_size": size,
                "kp2ds": kp2ds,
                "track_ids": None,
                "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=False, all_labelled=True),
                "vmask_3d": vmask_3d,
                "params": params,
            }
        sizes.report()
        log.info("%s %s: %d images, %d persons matched to an EFT fit", self.key, self.split, images, matched)
