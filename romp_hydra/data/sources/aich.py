"""AI Challenger keypoints (2017 human skeletal system keypoint detection)."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.sources._shared_2d import (
    ImageSizes,
    annotation_file_or_packed,
    joints_to_54,
    options_tag,
)
from romp_hydra.data.sources._shared_3d import load_romp_annots
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["AIChallenger", "aic_visibility"]

NUM_JOINTS = 14
# Our split name -> the word in AI Challenger's folder and file names.
SPLIT_WORDS = {"train": "train", "val": "validation"}
ROMP_FILE = "annots.npz"


def aic_visibility(flags: np.ndarray) -> np.ndarray:
    """AI Challenger's flags (1 visible, 2 occluded, 3 not labelled) -> ROMP's visibility (3 - v) / 2: 1, 0.5, 0."""
    return (3.0 - np.asarray(flags, dtype=np.float32)) / 2.0


class AIChallenger(StoreBackedSource):
    """AI Challenger: several people per image with 14 2D joints; no 3D, no track ids.

    Annotations provided: 2D keypoints in AI Challenger's order (right/left shoulder, elbow, wrist, right/left hip,
    knee, ankle, head top, neck), mapped by name (head top -> Head_top 48, neck -> Neck_LSP 47, hips -> the dataset
    hips 45/46). Visible and occluded joints are both used; persons whose visibility sum ((3 - v) / 2 per joint, as
    ROMP) is below `min_person_vis_sum` (3) are dropped. vmask_2d [T, F, T], vmask_3d all False.

    Official site: https://challenger.ai (2017 keypoint challenge; the site is offline, mirrors exist);
    ROMP's parsed annots.npz: the Google Drive folder of ROMP's docs/dataset.md.

    Args:
        split: 'train' or 'val' (the release's 'validation').
        annotations: 'auto' | 'official' (the release's json) | 'romp' (annots.npz, already in 54-joint order).
        image_stride: keep every n-th image. ROMP reads a random one of each 8 consecutive images per index
            (an epoch 1/8 of the dataset long); our sampler's epoch length already decides how much of a source an
            epoch sees, so 1 (every image, drawn over the epochs) matches ROMP, while 8 keeps a fixed eighth.
        min_person_vis_sum: the least visibility sum a person needs (ROMP: 3).
    """

    homepage: ClassVar[str] = (
        "https://challenger.ai (AI Challenger 2017 keypoint data: ai_challenger_keypoint_train_20170909.zip, "
        "ai_challenger_keypoint_validation_20170911.zip); ROMP's parsed annots.npz: the Google Drive folder of "
        "ROMP's docs/dataset.md"
    )
    expected_layout: ClassVar[str] = """
        ai_challenger_keypoint_train_<date>/keypoint_train_annotations_<date>.json
        ai_challenger_keypoint_train_<date>/keypoint_train_images_<date>/<image_id>.jpg
        ai_challenger_keypoint_validation_<date>/...   the same for split=val
        annots.npz                  optional: ROMP's parsed annotations instead of the json
    """
    provides: ClassVar[str] = "2D keypoints (AI Challenger 14); all persons labelled; no 3D"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, annotations: str = "auto", image_stride: int = 1,
                 min_person_vis_sum: float = 3.0):
        if split not in SPLIT_WORDS:
            raise ValueError(f"aich split={split!r}: use one of {', '.join(SPLIT_WORDS)}")
        if int(image_stride) < 1:
            raise ValueError(f"aich image_stride={image_stride}: must be a positive integer")
        super().__init__(root, split, key=key or "aich", store_dir=store_dir)
        self.image_stride = int(image_stride)
        self.min_person_vis_sum = float(min_person_vis_sum)
        word = SPLIT_WORDS[split]
        self.set_dir = _single_match(self.root, f"ai_challenger_keypoint_{word}_*")
        # A placeholder path when nothing matches: it is what the not-found message shows.
        json_name = f"keypoint_{word}_annotations_<date>.json"
        official = self.root / f"ai_challenger_keypoint_{word}_<date>" / json_name
        if self.set_dir is not None:
            official = _single_match(self.set_dir, f"keypoint_{word}_annotations_*.json") or self.set_dir / json_name
        self.annotations = annotations
        self.official_file = official
        self.annotation_kind, self.annotation_path = annotation_file_or_packed(
            self, annotations, official, self.root / ROMP_FILE)

    @property
    def store_path(self) -> Path:
        tag = options_tag(annotations=self.annotations, image_stride=self.image_stride,
                          min_person_vis_sum=self.min_person_vis_sum)
        return self.store_dir / f"{self.key}_{self.split}_{tag}.npz"

    def annotation_files(self) -> list[Path]:
        return [self.annotation_path or self.official_file]

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        reader = self._read_official if self.annotation_kind == "official" else self._read_romp
        sizes = ImageSizes(self.root, self.key)
        images = persons = 0
        for position, (imgpath, kp2ds) in enumerate(reader()):
            if position % self.image_stride or not len(kp2ds):
                continue
            size = sizes(imgpath)
            if size is None:
                continue
            count = len(kp2ds)
            images, persons = images + 1, persons + count
            yield {
                "imgpath": imgpath,
                "img_size": size,
                "kp2ds": kp2ds,
                "track_ids": None,
                "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=False, all_labelled=True),
                "vmask_3d": vmask_3d_rows(count),
            }
        sizes.report()
        log.info("%s %s: %d images, %d persons (image stride %d) from %s", self.key, self.split, images, persons,
                 self.image_stride, self.annotation_path)

    def _read_official(self) -> Iterator[tuple[str, np.ndarray]]:
        """(image path relative to root, (N, 54, 3)) per image; the stride counts images in file order."""
        word = SPLIT_WORDS[self.split]
        image_dir = _single_match(self.annotation_path.parent, f"keypoint_{word}_images_*")
        if image_dir is None:
            raise self.not_found(self.annotation_path.parent / f"keypoint_{word}_images_<date>", "the image folder")
        with open(self.annotation_path) as file:
            entries = json.load(file)
        if not isinstance(entries, list):
            raise StoreFormatError(f"{self.annotation_path}: expected a list of {{'image_id', "
                                   f"'keypoint_annotations': {{'human1': [x, y, v] x 14, ...}}}}")
        folder = image_dir.relative_to(self.root).as_posix()
        for index, entry in enumerate(entries):
            try:
                name = f"{entry['image_id']}.jpg"
                raw = [np.asarray(values, dtype=np.float32).reshape(NUM_JOINTS, 3)
                       for _, values in sorted(entry["keypoint_annotations"].items())]
            except (KeyError, ValueError, TypeError, AttributeError) as err:
                raise StoreFormatError(f"{self.annotation_path}: entry {index} lacks 'image_id' or "
                                       f"'keypoint_annotations' {{human: 14 x [x, y, v]}}: {err}") from err
            kept = []
            for joints in raw:
                joints[:, 2] = aic_visibility(joints[:, 2])
                if joints[:, 2].sum() >= self.min_person_vis_sum:
                    kept.append(joints_to_54(joints, "aich_14"))
            yield f"{folder}/{name}", _stack(kept)

    def _read_romp(self) -> Iterator[tuple[str, np.ndarray]]:
        """ROMP's archive keys images by '<set dir>/<image dir>/<id>.jpg' and stores (54, 3) persons whose third
        column is already (3 - v) / 2; both splits share the file, the set dir tells them apart."""
        annots = load_romp_annots(self.annotation_path, "annots")
        if not isinstance(annots, Mapping):
            raise StoreFormatError(f"{self.annotation_path}: member 'annots' is a {type(annots).__name__}, "
                                   f"expected {{'<set dir>/<image dir>/<id>.jpg': [(54, 3) per person]}}")
        word = f"_{SPLIT_WORDS[self.split]}_"
        for name in sorted(annots):
            if word not in str(name).split("/")[0]:
                continue
            kept = []
            for person in annots[name]:
                joints = np.asarray(person, dtype=np.float32).reshape(54, 3).copy()
                if joints[joints[:, 2] > 0, 2].sum() >= self.min_person_vis_sum:
                    joints[joints[:, 2] > 0.03, 2] = 1.0
                    joints[~(joints[:, 2] > 0.03)] = -2.0
                    kept.append(joints)
            yield str(name), _stack(kept)


def _stack(persons: list[np.ndarray]) -> np.ndarray:
    return np.stack(persons) if persons else np.zeros((0, 54, 3), np.float32)


def _single_match(folder: Path, pattern: str) -> Path | None:
    """The one entry of `folder` matching `pattern` (the release's names carry dates); None if there is none."""
    if not folder.is_dir():
        return None
    matches = sorted(folder.glob(pattern))
    if len(matches) > 1:
        log.warning("%s: several entries match %s (%s); using %s", folder, pattern,
                    ", ".join(m.name for m in matches), matches[-1].name)
    return matches[-1] if matches else None
