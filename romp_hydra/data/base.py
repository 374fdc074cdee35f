"""The source-dataset base class: one class per dataset turns its own annotation format into `img_info` dicts.

A source knows where its files are and how to read one image's annotations. Everything after that (augmentation,
normalisation, centre maps, padding to max_person) is the shared pipeline's job (`romp_hydra.data.pipeline`).

Contract (docs/architecture.md, romp_datasets.md §3): `get_image_info(i)` returns

    imgpath    str, absolute path of the image
    image      (H, W, 3) uint8 RGB
    kp2ds      (N, 54, 3) [x_px, y_px, vis], -2 rows for missing joints; a (4, 2) box for box-only persons
               (then kp2ds may be a list of per-person arrays)
    track_ids  (N,) or None
    vmask_2d   (N, 3) bool   [54-joint pose (not a box), track id valid, all persons in the image labelled]
    vmask_3d   (N, 6) bool   [kp3d, global orient, body pose, betas, verts, root translation]
    kp3ds      (N, 54, 3) metres or None
    params     (N, 76) or None (rows of -10 where absent)
    root_trans (N, 3) or None; verts, camMats optional
    img_size   (H, W)
    ds         str, the dataset key
"""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

log = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's root folder or annotation file is missing. The message says what belongs there and where it
    comes from, so the user can fix it without reading the code."""


class UnreadableImageError(OSError):
    """An image file is missing, truncated or not an image. The loader skips and counts these."""

    def __init__(self, path: str | Path, reason: str = "OpenCV could not decode it"):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    Raises UnreadableImageError (carrying the path) when the file is missing, empty or cannot be decoded, so that
    the loader can skip it and report it instead of crashing a worker with an opaque error.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableImageError(path, "no such file")
    # imdecode on the raw bytes, not imread: imread returns None silently for unicode paths on some platforms.
    raw = np.fromfile(str(path), dtype=np.uint8)
    if raw.size == 0:
        raise UnreadableImageError(path, "the file is empty")
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class SourceDataset:
    """Base class of every source dataset.

    Subclasses set the class attributes below and implement `__len__` and `get_image_info(i)`. They may also
    implement `pack_data()`, which converts the original annotation files into our packed store once
    (`romp_hydra.data.store`); `StoreBackedSource` does the bookkeeping for that.

    Args:
        root: the dataset folder (must exist).
        split: which split to read (train / val / test, or the dataset's own split names); None = the first of
            `splits` (or 'train'). A name outside `splits` is an error naming the splits the dataset has.
        key: the registry key of this source in a mixture (the conf/source/<key>.yaml name); used as the `ds`
            tag of every sample and in error messages. Defaults to the lower-cased class name.
        options: dataset-specific options from the source config; a subclass that takes none rejects them.
    """

    # Crop enlargement range of the person-centred crop augmentation (ROMP HEAD default).
    scale_range: ClassVar[tuple[float, float]] = (1.2, 2.4)
    # 3D datasets use data.augment.crop_prob_3d, the others crop_prob_2d.
    is_3d: ClassVar[bool] = False
    # Whether images show several labelled persons (False: a single person per image, e.g. LSP).
    multi_person: ClassVar[bool] = True
    # What belongs under `root`, shown when something is missing. One path per line, relative to root.
    expected_layout: ClassVar[str] = ""
    # Where the data comes from (download page), shown when something is missing.
    homepage: ClassVar[str] = ""
    # Which annotations this source provides, in words (shown by `describe()` and the check CLI).
    provides: ClassVar[str] = ""
    # The splits the dataset has (empty: any name); the first is the default.
    splits: ClassVar[tuple[str, ...]] = ()
    # The registry key used when none is given (default: the lower-cased class name).
    default_key: ClassVar[str | None] = None

    def __init__(self, root: str | Path, split: str | None = None, *, key: str | None = None, **options: Any):
        if options:
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {sorted(options)}; "
                f"remove them from the source config or use a dataset class that takes them"
            )
        self.key = key or self.default_key or type(self).__name__.lower()
        split = split if split is not None else (self.splits[0] if self.splits else "train")
        if self.splits and split not in self.splits:
            raise ValueError(f"{self.key} split={split!r}: this dataset has the split(s) {', '.join(self.splits)}")
        self.root = Path(root).expanduser()
        self.split = split
        if not self.root.is_dir():
            raise self.not_found(self.root, "the dataset folder")

    # -- the contract ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__ (the number of images)")

    def get_image_info(self, index: int) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define get_image_info(index) -> img_info dict")

    # -- helpers for subclasses -----------------------------------------------------------------------------------
    def require(self, path: str | Path, what: str = "an annotation file") -> Path:
        """Return `path` (relative paths are under root) or raise DatasetNotFoundError if it does not exist."""
        path = Path(path)
        if not path.is_absolute():
            path = self.root / path
        if not path.exists():
            raise self.not_found(path, what)
        return path

    def not_found(self, path: Path, what: str) -> DatasetNotFoundError:
        """The error for a missing file or folder: names the path, the expected layout and where to get the data."""
        lines = [f"dataset '{self.key}' ({type(self).__name__}, split '{self.split}'): {what} {path} does not exist."]
        if self.expected_layout:
            lines.append(f"  expected under {self.root}:")
            lines.extend(f"    {line}" for line in textwrap.dedent(self.expected_layout).strip().splitlines())
        if self.homepage:
            lines.append(f"  get the data from: {self.homepage}")
        lines.append(
            f"  fix: put the data there, or point the source at it: dataset.members.{self.key}.root=/path/to/it "
            f"(or set paths.data_dir / the ROMP_DATA_DIR environment variable for all datasets)"
        )
        return DatasetNotFoundError("\n".join(lines))

    def image_paths(self) -> list[Path]:
        """Every image file of the split, without reading one (the preflight checks them). Sources that cannot
        list them cheaply return []."""
        return []

    def describe(self) -> str:
        """One line: the key, class, size and which annotations the source provides."""
        doc_lines = (type(self).__doc__ or "").strip().splitlines()
        provides = self.provides or (doc_lines[0] if doc_lines else "(not described)")
        return f"{self.key}: {type(self).__name__} split={self.split} images={len(self)} | {provides}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, key={self.key!r})"
