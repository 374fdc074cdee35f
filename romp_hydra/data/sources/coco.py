"""COCO 2014 person keypoints (+ EFT SMPL fits), and the COCO-format reading that CrowdPose shares.

The COCO keypoint json (cocodataset.org/#format-data, romp_datasets.md §11.1) is read with the standard library: a
pycocotools dependency would buy nothing for a one-time pass over the file.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.masks import vmask_2d_rows
from romp_hydra.data.sources._shared_2d import (
    ImageSizes,
    annotation_file_or_packed,
    empty_poses,
    joints_to_54,
    located_or_packed,
    options_tag,
)
from romp_hydra.data.sources._shared_3d import load_romp_annots
from romp_hydra.data.sources.eft import (
    DEFAULT_MAX_OFFSET,
    EftFit,
    attach_fits,
    eft_options,
    find_eft_file,
    load_eft_fits,
)
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["COCO", "CocoStyleSource", "PersonFilter", "read_keypoint_json"]


@dataclass(frozen=True)
class PersonFilter:
    """ROMP's selection of COCO-style persons and images (`pack_annots` of coco14.py / crowdpose.py).

    A person is kept when the sum of its visibility flags v (0 unlabelled, 1 occluded, 2 visible) is at least
    `min_person_vis_sum`. An image is kept when its best person (largest sum) reaches `min_image_vis_sum` and its
    labelled keypoints span more than `min_image_height` pixels vertically. ROMP: 1, 3 (its "> 2") and 128 px for
    COCO, 40 px for CrowdPose. `filter_images=False` keeps every image (evaluation sets must not lose images).
    """

    min_person_vis_sum: float = 1
    min_image_vis_sum: float = 3
    min_image_height: float = 128.0
    filter_images: bool = True

    def select(self, persons: Sequence[np.ndarray]) -> list[int] | None:
        """Indices of the persons to keep (raw (K, 3) [x, y, v] arrays), or None to leave the image out."""
        sums = [float(np.asarray(p)[:, 2].sum()) for p in persons]
        kept = [i for i, total in enumerate(sums) if total >= self.min_person_vis_sum]
        if not self.filter_images:
            return kept
        if not kept:
            return None
        best = max(kept, key=lambda i: sums[i])
        joints = np.asarray(persons[best])
        ys = joints[joints[:, 2] > 0, 1]
        height = float(ys.max() - ys.min()) if len(ys) else 0.0
        if sums[best] < self.min_image_vis_sum or height <= self.min_image_height:
            return None
        return kept

    def as_dict(self) -> dict[str, Any]:
        return {"min_person_vis_sum": self.min_person_vis_sum, "min_image_vis_sum": self.min_image_vis_sum,
                "min_image_height": self.min_image_height, "filter_images": self.filter_images}


def read_keypoint_json(path: Path, num_joints: int) -> list[tuple[Mapping[str, Any], list[np.ndarray]]]:
    """A COCO-format keypoint json -> [(image entry, [(K, 3) keypoints per annotation])] in file order.

    Every image of the file is listed, also those without annotations. Annotations without keypoints (e.g.
    category other than person) are skipped.
    """
    with open(path) as file:
        content = json.load(file)
    if not isinstance(content, Mapping) or "images" not in content or "annotations" not in content:
        raise StoreFormatError(f"{path}: expected a COCO-format json with 'images' and 'annotations'")
    persons: dict[Any, list[np.ndarray]] = defaultdict(list)
    for index, annotation in enumerate(content["annotations"]):
        if "keypoints" not in annotation:
            continue
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float32)
        if keypoints.size != num_joints * 3:
            raise StoreFormatError(f"{path}: annotation {index} (id {annotation.get('id')}) has {keypoints.size} "
                                   f"keypoint values, expected {num_joints} x (x, y, v)")
        persons[annotation["image_id"]].append(keypoints.reshape(num_joints, 3))
    return [(image, persons.get(image["id"], [])) for image in content["images"]]


class CocoStyleSource(StoreBackedSource):
    """Base of the sources whose annotations are COCO-format keypoint json files or ROMP's `annot` archives of
    raw (N, K, 3) arrays keyed by file name. Subclasses set the class attributes and the file names.

    Each person becomes a 54-joint pose (joints with v > 0, mapped by name) with a track id unique within the
    split (every annotated person of an image dataset is a distinct identity); every person of the image is
    labelled (ROMP's vmask_2d [T, T, T]).

    Args:
        annotations: 'auto' (the official json if present, else ROMP's archive), 'official' or 'romp'.
        filter_images, min_person_vis_sum, min_image_vis_sum, min_image_height: see `PersonFilter`.
        store_dir: where to write the packed store (default: the dataset folder).
    """

    joint_set: ClassVar[str]
    num_joints: ClassVar[int]
    default_min_image_height: ClassVar[float] = 128.0
    romp_member: ClassVar[str] = "annot"

    def __init__(self, root: str | Path, split: str, *, key: str | None = None, store_dir: str | Path | None = None,
                 annotations: str = "auto", filter_images: bool = True, min_person_vis_sum: float = 1,
                 min_image_vis_sum: float = 3, min_image_height: float | None = None):
        super().__init__(root, split, key=key, store_dir=store_dir)
        height = self.default_min_image_height if min_image_height is None else float(min_image_height)
        self.person_filter = PersonFilter(float(min_person_vis_sum), float(min_image_vis_sum), height,
                                          bool(filter_images))
        self.annotations = annotations
        self.annotation_kind, self.annotation_path = annotation_file_or_packed(
            self, annotations, self.official_file(), self.romp_file())

    # -- what a subclass names ----------------------------------------------------------------------------------
    def official_file(self) -> Path | None:
        raise NotImplementedError

    def romp_file(self) -> Path | None:
        raise NotImplementedError

    def image_path(self, file_name: str) -> str:
        """An image's path relative to root, from the file name in the annotations."""
        raise NotImplementedError

    def attach_3d(self, file_name: str, kp2ds: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """SMPL params (N, 76) or None, and vmask_3d (N, 6), for one image's persons. Default: no 3D."""
        return None, np.zeros((len(kp2ds), 6), bool)

    def store_options(self) -> dict[str, Any]:
        """The options that shape the store's content (they go into its file name)."""
        return {"annotations": self.annotations, **self.person_filter.as_dict()}

    # -- packing ----------------------------------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        return self.store_dir / f"{self.key}_{self.split}_{options_tag(**self.store_options())}.npz"

    def annotation_files(self) -> list[Path]:
        # Without a located file (the store was packed before it went) packing needs the official one back.
        return [self.annotation_path or self.official_file()]

    def raw_images(self) -> Iterator[tuple[str, tuple[int, int] | None, list[np.ndarray]]]:
        """(file name, (H, W) or None if unknown, raw (K, 3) persons) per image of the annotation file."""
        if self.annotation_kind == "official":
            for image, persons in read_keypoint_json(self.annotation_path, self.num_joints):
                yield str(image["file_name"]), (int(image["height"]), int(image["width"])), persons
            return
        annots = load_romp_annots(self.annotation_path, self.romp_member)
        if not isinstance(annots, Mapping):
            raise StoreFormatError(f"{self.annotation_path}: member '{self.romp_member}' is a "
                                   f"{type(annots).__name__}, expected {{file name: (N, {self.num_joints}, 3)}}")
        for file_name in sorted(annots):
            joints = np.asarray(annots[file_name], dtype=np.float32).reshape(-1, self.num_joints, 3)
            yield str(file_name), None, list(joints)

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        sizes = ImageSizes(self.root, self.key)
        next_track_id = 0
        images = kept_persons = 0
        for file_name, size, persons in self.raw_images():
            kept = self.person_filter.select(persons)
            if kept is None:
                continue
            imgpath = self.image_path(file_name)
            size = size if size is not None else sizes(imgpath)
            if size is None:
                continue
            kp2ds = np.stack([joints_to_54(persons[i], self.joint_set) for i in kept]) if kept else empty_poses()
            count = len(kp2ds)
            params, vmask_3d = self.attach_3d(file_name, kp2ds)
            images, kept_persons = images + 1, kept_persons + count
            yield {
                "imgpath": imgpath,
                "img_size": size,
                "kp2ds": kp2ds,
                "track_ids": np.arange(next_track_id, next_track_id + count),
                "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=True, all_labelled=True),
                "vmask_3d": vmask_3d,
                "params": params,
            }
            next_track_id += count
        sizes.report()
        log.info("%s %s: %d images, %d persons kept from %s", self.key, self.split, images, kept_persons,
                 self.annotation_path)


class COCO(CocoStyleSource):
    """COCO 2014 person keypoints: several people per image with 17 2D joints; EFT SMPL pose fits where matched.

    Annotations provided: 2D keypoints (COCO-17 mapped to the 54-joint set by name: nose, eyes, ears, shoulders,
    elbows, wrists, dataset hips 45/46, knees, ankles), a per-person track id, and for persons with a matched EFT
    fit the SMPL global orient and body pose (vmask_3d [F, T, T, F, F, F]; see `romp_hydra.data.sources.eft` for
    why shape, 3D joints and depth stay unsupervised). vmask_2d is [T, T, T]: every person counts as labelled, so
    the centre-map loss applies (ROMP).

    Official site: https://cocodataset.org (images and annotations, 2014 release); EFT fits:
    https://github.com/facebookresearch/eft; ROMP's parsed archives: the Google Drive folder of ROMP's
    docs/dataset.md.

    Selection (ROMP's): persons with at least one labelled keypoint; images whose best person has a visibility sum
    of at least 3 and spans more than 128 px vertically (options, see `PersonFilter`).

    Args:
        split: 'train2014' or 'val2014' (the image folder and annotation file names).
        annotations: 'auto' | 'official' (annotations/person_keypoints_<split>.json) | 'romp' (annots_<split>.npz).
        eft: attach EFT fits (needs an EFT file); False trains on 2D keypoints only.
        eft_file: an explicit EFT file (EFT's COCO2014-All-ver01.json or ROMP's eft_annots.npz).
        eft_max_offset: largest centre distance of a match, in person sizes (null: ROMP's unlimited matching).
    """

    joint_set: ClassVar[str] = "coco_17"
    num_joints: ClassVar[int] = 17
    eft_json_name: ClassVar[str] = "COCO2014-All-ver01.json"
    homepage: ClassVar[str] = (
        "images + annotations: https://cocodataset.org/#download (2014 train/val images, 2014 train/val "
        "annotations); EFT fits: https://github.com/facebookresearch/eft (eft_fit_ver01.zip); ROMP's parsed "
        "annots_*.npz / eft_annots.npz: the Google Drive folder of ROMP's docs/dataset.md"
    )
    expected_layout: ClassVar[str] = """
        images/<split>/COCO_<split>_<id>.jpg
        annotations/person_keypoints_<split>.json   official keypoints (or ROMP's annots_<split>.npz)
        COCO2014-All-ver01.json or eft_fit/COCO2014-All-ver01.json or eft_annots.npz   EFT fits (eft=true)
    """
    provides: ClassVar[str] = ("2D keypoints (COCO-17), track ids, EFT SMPL global orient + body pose where "
                               "matched; all persons labelled")

    def __init__(self, root: str | Path, split: str = "train2014", *, key: str | None = None,
                 store_dir: str | Path | None = None, annotations: str = "auto", eft: bool = True,
                 eft_file: str | Path | None = None, eft_max_offset: float | None = DEFAULT_MAX_OFFSET,
                 filter_images: bool = True, min_person_vis_sum: float = 1, min_image_vis_sum: float = 3,
                 min_image_height: float | None = None):
        # Set first: the base class locates the annotation file, which needs the store name these options shape.
        self.eft = eft_options(eft, eft_file, eft_max_offset, key or "coco")
        super().__init__(root, split, key=key or "coco", store_dir=store_dir, annotations=annotations,
                         filter_images=filter_images, min_person_vis_sum=min_person_vis_sum,
                         min_image_vis_sum=min_image_vis_sum, min_image_height=min_image_height)
        self.eft_path = located_or_packed(self, self._find_eft_file) if eft else None
        self._fits: dict[str, list[EftFit]] = {}

    def _find_eft_file(self) -> Path:
        return find_eft_file(self.root, self.eft_json_name, self.eft["eft_file"], self.not_found)

    def official_file(self) -> Path:
        return self.root / "annotations" / f"person_keypoints_{self.split}.json"

    def romp_file(self) -> Path:
        return self.root / f"annots_{self.split}.npz"

    def image_path(self, file_name: str) -> str:
        return f"images/{self.split}/{file_name}"

    def store_options(self) -> dict[str, Any]:
        return {**super().store_options(), **self.eft}

    def annotation_files(self) -> list[Path]:
        return super().annotation_files() + ([self.eft_path] if self.eft_path is not None else [])

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        if self.eft["eft"]:  # packing needs the fits, even if the store was found without them
            self.eft_path = self.eft_path or self._find_eft_file()
        self._fits = load_eft_fits(self.eft_path) if self.eft_path is not None else {}
        matched = 0
        for record in super().read_annotations():
            matched += int(np.asarray(record["vmask_3d"])[:, 1].sum())
            yield record
        if self.eft_path is not None:
            log.info("%s %s: %d persons matched to an EFT fit", self.key, self.split, matched)
        self._fits = {}

    def attach_3d(self, file_name: str, kp2ds: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        fits = self._fits.get(Path(file_name).name, [])
        if not fits:
            return None, np.zeros((len(kp2ds), 6), bool)
        return attach_fits(kp2ds, fits, self.eft["eft_max_offset"])
