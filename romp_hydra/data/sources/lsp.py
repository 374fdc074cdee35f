"""LSP extended, high-resolution re-annotation (hr-lspet) (+ EFT SMPL fits)."""
from __future__ import annotations

import logging
import re
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

__all__ = ["LSP", "read_lsp_joints"]

NUM_JOINTS = 14
_IMAGE_NAME = re.compile(r"^im(\d+)\.png$")


def read_lsp_joints(path: Path) -> np.ndarray:
    """hr-lspet's `joints.mat` -> (N, 14, 3) [x, y, vis] in LSP order; row k belongs to image im{k+1:05d}.png."""
    from scipy.io import loadmat

    content = loadmat(str(path))
    if "joints" not in content:
        raise StoreFormatError(f"{path}: no variable 'joints' (found {sorted(k for k in content if not k.startswith('__'))})")
    joints = np.asarray(content["joints"], dtype=np.float32)
    if joints.ndim != 3 or joints.shape[:2] != (NUM_JOINTS, 3):
        hint = " (that is the original LSP layout; this source reads hr-lspet)" if joints.shape[:2] == (3, 14) else ""
        raise StoreFormatError(f"{path}: 'joints' has shape {joints.shape}, expected hr-lspet's (14, 3, N){hint}")
    return joints.transpose(2, 0, 1)


class LSP(StoreBackedSource):
    """LSP extended (hr-lspet): one person per image with 14 2D joints; EFT SMPL pose fits.

    Annotations provided: 2D keypoints in LSP's order (r/l ankle, knee, hip, wrist, elbow, shoulder, neck, head top)
    mapped by name (neck -> Neck_LSP 47, head top -> Head_top 48, hips -> the dataset hips 45/46), joints with a
    visibility flag above 0.03 only (ROMP's threshold; what the flag means in hr-lspet is not documented). The
    person with an EFT fit gets SMPL global orient + body pose (vmask_3d [F, T, T, F, F, F]). vmask_2d is
    [T, F, F]: only one person per image is labelled, so the centre-map loss is off for these images (ROMP).

    Official site: http://datasets.d2.mpi-inf.mpg.de/hr-lspet/hr-lspet.zip (images + joints.mat); EFT fits:
    https://github.com/facebookresearch/eft (LSPet_ver01.json) or ROMP's eft_annots.npz.

    Pairing: image im{k:05d}.png takes row k-1 of joints.mat. ROMP pairs the sorted image list with the rows in
    order, which is the same while no image is missing and shifts every later label by one when one is.
    Sample list: with EFT, only the images with a fit (ROMP).

    Args:
        split: 'train' (hr-lspet has no other split).
        eft, eft_file, eft_max_offset: as for COCO (eft=false: 2D only, every image).
    """

    multi_person: ClassVar[bool] = False
    scale_range: ClassVar[tuple[float, float]] = (1.6, 2.0)
    homepage: ClassVar[str] = (
        "http://datasets.d2.mpi-inf.mpg.de/hr-lspet/hr-lspet.zip; EFT fits: https://github.com/facebookresearch/eft "
        "(LSPet_ver01.json) or ROMP's eft_annots.npz (docs/dataset.md)"
    )
    expected_layout: ClassVar[str] = """
        im00001.png, im00002.png, ...
        joints.mat                  variable 'joints' (14, 3, N)
        LSPet_ver01.json or eft_fit/LSPet_ver01.json or eft_annots.npz   EFT fits (eft=true)
    """
    provides: ClassVar[str] = "2D keypoints (LSP-14) of one person per image, EFT SMPL global orient + body pose"
    eft_json_name: ClassVar[str] = "LSPet_ver01.json"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, eft: bool = True, eft_file: str | Path | None = None,
                 eft_max_offset: float | None = DEFAULT_MAX_OFFSET):
        if split != "train":
            raise ValueError(f"lsp split={split!r}: hr-lspet has only the 'train' split")
        super().__init__(root, split, key=key or "lsp", store_dir=store_dir)
        self.eft = eft_options(eft, eft_file, eft_max_offset, self.key)
        self.eft_path = located_or_packed(self, self._find_eft_file) if eft else None

    def _find_eft_file(self) -> Path:
        return find_eft_file(self.root, self.eft_json_name, self.eft["eft_file"], self.not_found)

    @property
    def store_path(self) -> Path:
        return self.store_dir / f"{self.key}_{self.split}_{options_tag(**self.eft)}.npz"

    def annotation_files(self) -> list[Path]:
        return [self.root / "joints.mat"] + ([self.eft_path] if self.eft_path is not None else [])

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        joints = read_lsp_joints(self.require("joints.mat", "hr-lspet's joints.mat"))
        if self.eft["eft"]:  # packing needs the fits, even if the store was found without them
            self.eft_path = self.eft_path or self._find_eft_file()
        fits = load_eft_fits(self.eft_path) if self.eft_path is not None else {}
        numbered = sorted((int(m.group(1)), path.name) for path in self.root.iterdir()
                          if (m := _IMAGE_NAME.match(path.name)))
        sizes = ImageSizes(self.root, self.key)
        images = 0
        for number, name in numbered:
            if not 1 <= number <= len(joints):
                log.warning("%s: %s has no row in joints.mat (%d rows); left out", self.key, name, len(joints))
                continue
            image_fits = fits.get(name, [])
            if self.eft_path is not None and not image_fits:
                continue
            size = sizes(name)
            if size is None:
                continue
            kp2ds = joints_to_54(joints[number - 1], "lsp_14")[None]
            params, vmask_3d = attach_fits(kp2ds, image_fits[:1], self.eft["eft_max_offset"])
            images += 1
            yield {
                "imgpath": name,
                "img_size": size,
                "kp2ds": kp2ds,
                "track_ids": None,
                "vmask_2d": vmask_2d_rows(1, pose=True, track_ids=False, all_labelled=False),
                "vmask_3d": vmask_3d,
                "params": params,
            }
        sizes.report()
        log.info("%s: %d images (%d rows in joints.mat)", self.key, images, len(joints))
