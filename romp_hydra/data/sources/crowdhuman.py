"""CrowdHuman: person boxes in crowded scenes (no keypoints)."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.sources._shared_2d import ImageSizes, annotation_file_or_packed, options_tag
from romp_hydra.data.sources._shared_3d import load_romp_annots
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["CrowdHuman", "box_person"]

SPLITS = ("train", "val")


def box_person(full_xywh: Any, visible_xywh: Any) -> np.ndarray:
    """(4, 2) float32 [full lt, full rb, visible lt, visible rb] from CrowdHuman's [x, y, w, h] boxes."""
    fx, fy, fw, fh = (float(v) for v in full_xywh)
    vx, vy, vw, vh = (float(v) for v in visible_xywh)
    return np.array([[fx, fy], [fx + fw, fy + fh], [vx, vy], [vx + vw, vy + vh]], np.float32)


class CrowdHuman(StoreBackedSource):
    """CrowdHuman: many people per image, each a full-body box and a visible-region box; no keypoints, no 3D.

    Annotations provided: box-only persons, stored as (4, 2) [full box left-top, full box right-bottom, visible box
    left-top, visible box right-bottom] in pixels with vmask_2d [F, F, T]: not a 54-joint pose, no track id, every
    person labelled (so the centre-map loss applies; the pipeline derives a box person's centre from its boxes).
    vmask_3d is all False. Boxes tagged 'mask' (crowds, reflections) or with extra.ignore = 1 are left out, as ROMP
    does; images left without a person are dropped.

    Official site: https://www.crowdhuman.org (images CrowdHuman_train0*.zip / CrowdHuman_val.zip, annotation_*.odgt);
    ROMP's parsed annots_<split>.npz: the Google Drive folder of ROMP's docs/dataset.md.

    Args:
        split: 'train' or 'val'.
        annotations: 'auto' | 'official' (annotation_<split>.odgt) | 'romp' (annots_<split>.npz).
    """

    homepage: ClassVar[str] = (
        "https://www.crowdhuman.org/download.html (put the images of each split into images/<split>/); ROMP's "
        "parsed annots_*.npz: the Google Drive folder of ROMP's docs/dataset.md"
    )
    expected_layout: ClassVar[str] = """
        images/<split>/<ID>.jpg
        annotation_<split>.odgt     official boxes, one json object per line (or ROMP's annots_<split>.npz)
    """
    provides: ClassVar[str] = "person boxes (full + visible), all persons labelled; no keypoints, no 3D"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, annotations: str = "auto"):
        if split not in SPLITS:
            raise ValueError(f"crowdhuman split={split!r}: use one of {', '.join(SPLITS)}")
        super().__init__(root, split, key=key or "crowdhuman", store_dir=store_dir)
        self.annotations = annotations
        self.official_file = self.root / f"annotation_{split}.odgt"
        self.annotation_kind, self.annotation_path = annotation_file_or_packed(
            self, annotations, self.official_file, self.root / f"annots_{split}.npz")

    @property
    def store_path(self) -> Path:
        return self.store_dir / f"{self.key}_{self.split}_{options_tag(annotations=self.annotations)}.npz"

    def annotation_files(self) -> list[Path]:
        return [self.annotation_path or self.official_file]

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        sizes = ImageSizes(self.root, self.key)
        reader = self._read_odgt if self.annotation_kind == "official" else self._read_romp
        images = persons = 0
        for name, boxes in reader():
            if not boxes:
                continue
            imgpath = f"images/{self.split}/{name}"
            size = sizes(imgpath)
            if size is None:
                continue
            count = len(boxes)
            images, persons = images + 1, persons + count
            yield {
                "imgpath": imgpath,
                "img_size": size,
                "kp2ds": boxes,
                "track_ids": None,
                "vmask_2d": vmask_2d_rows(count, pose=False, track_ids=False, all_labelled=True),
                "vmask_3d": vmask_3d_rows(count),
            }
        sizes.report()
        log.info("%s %s: %d images, %d persons from %s", self.key, self.split, images, persons, self.annotation_path)

    def _read_odgt(self) -> Iterator[tuple[str, list[np.ndarray]]]:
        with open(self.annotation_path) as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    name = f"{entry['ID']}.jpg"
                    boxes = [box_person(person["fbox"], person["vbox"]) for person in entry.get("gtboxes", [])
                             if is_person(person)]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise StoreFormatError(f"{self.annotation_path} line {line_number}: expected {{'ID': ..., "
                                           f"'gtboxes': [{{'tag', 'fbox' [x,y,w,h], 'vbox' [x,y,w,h], ...}}]}} "
                                           f"({type(err).__name__}: {err})") from err
                yield name, boxes

    def _read_romp(self) -> Iterator[tuple[str, list[np.ndarray]]]:
        annots = load_romp_annots(self.annotation_path, "annots")
        if not isinstance(annots, Mapping):
            raise StoreFormatError(f"{self.annotation_path}: member 'annots' is a {type(annots).__name__}, "
                                   f"expected {{'<ID>.jpg': {{'fbox': [...], 'vbox': [...], 'hbox': [...]}}}}")
        for name in sorted(annots):
            entry = annots[name]
            try:
                full = np.asarray(entry["fbox"], dtype=np.float32).reshape(-1, 4)
                visible = np.asarray(entry["vbox"], dtype=np.float32).reshape(-1, 4)
            except (KeyError, ValueError, TypeError) as err:
                raise StoreFormatError(f"{self.annotation_path}: entry {name} lacks 'fbox' / 'vbox' lists of "
                                       f"[x, y, w, h]: {err}") from err
            if len(full) != len(visible):
                raise StoreFormatError(f"{self.annotation_path}: entry {name} has {len(full)} full boxes but "
                                       f"{len(visible)} visible boxes")
            yield str(name), [box_person(f, v) for f, v in zip(full, visible)]


def is_person(box: Mapping[str, Any]) -> bool:
    """A CrowdHuman gtbox that is a real person: tag 'person' and not marked ignore."""
    extra = box.get("extra") or {}
    return box.get("tag") == "person" and int(extra.get("ignore", 0)) != 1
