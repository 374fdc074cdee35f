"""Helpers shared by the 2D image sources (coco, crowdpose, crowdhuman, mpii, lsp, aich, posetrack, up).

Only `pack_data()` uses these: they turn raw per-dataset joint arrays into the 54-joint `[x, y, vis]` layout, read
image sizes cheaply, pick between the official annotation file and ROMP's pickled archive, and name the store
after the options that shape its content. Training reads the packed store and never gets here.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from romp_hydra.body.joint_sets import convert_to_54
from romp_hydra.data.augment import VIS_THRESHOLD
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.store import StoreBackedSource

log = logging.getLogger(__name__)

T = TypeVar("T")

# The three ways a source can be told which annotation file to read (option `annotations`).
ANNOTATION_CHOICES = ("auto", "official", "romp")


def joints_to_54(joints: np.ndarray, joint_set: str, threshold: float = VIS_THRESHOLD) -> np.ndarray:
    """(K, 3) raw `[x, y, vis]` in `joint_set` order -> (54, 3) float32 with vis 1 for usable joints.

    A joint is usable when vis > threshold; every other joint (and every 54-joint slot the dataset lacks)
    becomes a -2 row, the missing marker. Visibility is flattened to 1 because nothing downstream weighs joints
    by it: the pipeline only tests vis > VIS_THRESHOLD.
    """
    joints = np.asarray(joints, dtype=np.float32)
    out = np.concatenate([joints[:, :2], np.ones((len(joints), 1), np.float32)], axis=1)
    out[~(joints[:, 2] > threshold)] = -2.0
    return convert_to_54(out, joint_set)


def labelled(kp54: np.ndarray) -> np.ndarray:
    """(54,) bool: the joints of a 54-joint `[x, y, vis]` pose that carry a position."""
    return np.asarray(kp54)[:, 2] > VIS_THRESHOLD


def keypoint_box(kp54: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Centre (2,) and size max(w, h) in pixels of the box around a pose's labelled joints; None if it has none.

    This is how EFT defines the `bbox_center` of its fits, so it is also what fits are matched against.
    """
    points = np.asarray(kp54, dtype=np.float64)[labelled(kp54), :2]
    if len(points) == 0:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    return (low + high) / 2.0, float((high - low).max())


def image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of an image file from its header (no decoding), or None if it is missing or not an image.

    Packing AI Challenger or MPII needs the size of every image; decoding 200k JPEGs for it would take an hour.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with torchvision

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (FileNotFoundError, UnidentifiedImageError, OSError):
        return None
    return int(height), int(width)


class ImageSizes:
    """Reads image sizes during a pack, warns once per unreadable image and counts them for a summary line.

    Args:
        root: relative image paths are relative to this folder.
        key: the dataset key, for log lines.
    """

    def __init__(self, root: Path, key: str):
        self.root = root
        self.key = key
        self.missing: list[str] = []

    def __call__(self, imgpath: str) -> tuple[int, int] | None:
        size = image_size(self.root / imgpath)
        if size is None:
            self.missing.append(imgpath)
            if len(self.missing) <= 10:
                log.warning("%s: leaving out %s: the image is missing or unreadable", self.key, self.root / imgpath)
        return size

    def report(self) -> None:
        """Log how many images were left out (call once, after the pack)."""
        if self.missing:
            log.warning("%s: %d annotated image(s) were missing or unreadable and are left out (first: %s)",
                        self.key, len(self.missing), self.missing[0])


def choose_annotation_file(choice: str, official: Path | None, romp: Path | None,
                           not_found: Callable[[Path, str], Exception], key: str) -> tuple[str, Path]:
    """Which annotation file to pack: ('official' | 'romp', path).

    `auto` prefers the official file (it is the dataset's own release and lets every filter option act) and falls
    back to ROMP's pickled archive. `official` / `romp` insist on one. `None` means the dataset has no such form.
    """
    if choice not in ANNOTATION_CHOICES:
        raise ValueError(f"{key}: annotations={choice!r}; use one of {', '.join(ANNOTATION_CHOICES)}")
    candidates = {"official": official, "romp": romp}
    order = ["official", "romp"] if choice == "auto" else [choice]
    for kind in order:
        path = candidates[kind]
        if path is not None and path.is_file():
            return kind, path
    wanted = [candidates[kind] for kind in order if candidates[kind] is not None]
    if not wanted:
        raise ValueError(f"{key}: annotations={choice!r} is not available for this dataset; use 'auto'")
    what = "the official annotation file" if order[0] == "official" else "ROMP's parsed annotation archive"
    if len(wanted) > 1:
        what += f" (or ROMP's parsed archive {wanted[1]})"
    raise not_found(wanted[0], what)


def located_or_packed(source: StoreBackedSource, locate: Callable[[], T]) -> T | None:
    """`locate()`, or None when what it looks for is missing (it raised DatasetNotFoundError) but the source's store
    is already packed: a packed dataset needs its images, not its original annotation files."""
    try:
        return locate()
    except DatasetNotFoundError as err:
        if not source.store_path.is_file():
            raise
        log.info("%s: using the packed store %s (%s)", source.key, source.store_path, str(err).splitlines()[0])
        return None


def annotation_file_or_packed(source: StoreBackedSource, choice: str, official: Path | None, romp: Path | None
                              ) -> tuple[str | None, Path | None]:
    """`choose_annotation_file`, or (None, None) when the files are gone but the source's store is packed."""
    found = located_or_packed(source, lambda: choose_annotation_file(choice, official, romp, source.not_found,
                                                                     source.key))
    return found if found is not None else (None, None)


def options_tag(**options: Any) -> str:
    """A short stable hash of the options that shape a store's content, for its file name.

    A store packed with other options (another threshold, another stride) then lives in another file, so changing
    an option repacks instead of silently reusing the old content. Pass the options as configured (e.g. the
    `annotations` choice, not the file it resolved to), so the store is found again once the files are gone.
    """
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def empty_poses() -> np.ndarray:
    """(0, 54, 3) float32: the kp2ds of an image without persons."""
    return np.zeros((0, 54, 3), np.float32)
