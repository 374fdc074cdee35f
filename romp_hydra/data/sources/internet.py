"""A folder of unlabelled images (ROMP's 'internet' dataset): for demos and visualisation, never for losses."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.base import SourceDataset, load_image
from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows

__all__ = ["IMAGE_EXTENSIONS", "Internet"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Internet(SourceDataset):
    """Every image of a folder, without annotations.

    Each sample has zero persons: kp2ds (0, 54, 3), vmask_2d (0, 3), vmask_3d (0, 6). With no person, the image
    counts as not fully labelled (all_persons_labelled False), so no loss term uses it, the centre map included;
    it is there to run the model on arbitrary pictures (demo, visualisation). ROMP builds the same from a list of
    image paths (`file_list`).

    Args:
        split: not used (a folder has no splits); kept for the common source signature.
        recursive: also take images from subfolders.
        extensions: the file suffixes that count as images (case-insensitive).
    """

    homepage: ClassVar[str] = "any images of your own (jpg / png)"
    expected_layout: ClassVar[str] = """
        <any name>.jpg / .png     images (subfolders too with recursive=true)
    """
    provides: ClassVar[str] = "images only, no annotations (demo / visualisation)"

    def __init__(self, root: str | Path, split: str = "all", *, key: str | None = None, recursive: bool = False,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS):
        super().__init__(root, split, key=key or "internet")
        suffixes = {str(e).lower() if str(e).startswith(".") else f".{str(e).lower()}" for e in extensions}
        candidates = self.root.rglob("*") if recursive else self.root.iterdir()
        self.image_paths = sorted(path for path in candidates if path.is_file() and path.suffix.lower() in suffixes)
        if not self.image_paths:
            raise self.not_found(self.root / f"*{{{','.join(sorted(suffixes))}}}", "any image")

    def __len__(self) -> int:
        return len(self.image_paths)

    def get_image_info(self, index: int) -> dict[str, Any]:
        path = self.image_paths[index]
        image = load_image(path)
        return {
            "imgpath": str(path),
            "image": image,
            "img_size": image.shape[:2],
            "kp2ds": np.zeros((0, 54, 3), np.float32),
            "track_ids": None,
            "vmask_2d": vmask_2d_rows(0, pose=False, track_ids=False, all_labelled=False),
            "vmask_3d": vmask_3d_rows(0),
            "kp3ds": None,
            "params": None,
            "ds": self.key,
        }
