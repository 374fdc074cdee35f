"""MuPoTS-3D: the multi-person 3D test set (20 sequences TS1-TS20, indoor and outdoor)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from romp_hydra.data.sources._shared_3d import intrinsics
from romp_hydra.data.sources.muco import group_annotations, multi_person_record, person_arrays
from romp_hydra.data.store import StoreBackedSource

__all__ = ["MuPoTS"]

NUM_JOINTS = 17
ANNOTATION_FILE = "MuPoTS-3D.json"
VAL_STRIDE = 10  # ROMP's 'val' split: every 10th image of the test set


class MuPoTS(StoreBackedSource):
    """MuPoTS-3D: several people per image, 2D + 3D joints (17), root translations, intrinsics. Every person
    in an image is labelled; no track ids.

    Annotations: `MuPoTS-3D.json` (the 3DMPPE / RootNet release, COCO-style): `images` {id, file_name
    (`TS<k>/img_<n:06d>.jpg`), width, height, intrinsic [fx, fy, cx, cy]}, `annotations` {image_id,
    keypoints_img (17 x 2 px), keypoints_cam (17 x 3 mm)}. Splits: 'test' (every image) and 'val' (every 10th
    image, in id order). 2D joints outside the image are marked missing.
    """

    is_3d: ClassVar[bool] = True
    homepage: ClassVar[str] = (
        "images: https://vcai.mpi-inf.mpg.de/projects/SingleShotMultiPerson/ (MultiPersonTestSet.zip); "
        "MuPoTS-3D.json: the 3DMPPE release (github.com/mks0601/3DMPPE_POSENET_RELEASE)"
    )
    expected_layout: ClassVar[str] = """
        MuPoTS-3D.json
        TS<k>/img_<n:06d>.jpg         (k = 1..20)
    """
    provides: ClassVar[str] = "2D + 3D joints (17), root translations, intrinsics; several people per image"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        *,
        key: str | None = None,
        store_dir: str | Path | None = None,
    ):
        if split not in ("test", "val"):
            raise ValueError(
                f"mupots split={split!r}: use 'test' (all images) or 'val' (every {VAL_STRIDE}th)"
            )
        super().__init__(root, split, key=key or "mupots", store_dir=store_dir)

    def annotation_files(self) -> list[Path]:
        return [self.root / ANNOTATION_FILE]

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        path = self.require(ANNOTATION_FILE)
        data = json.loads(path.read_text())
        by_image = group_annotations(data.get("annotations", []), path)
        images = sorted(data.get("images", []), key=lambda item: int(item["id"]))
        if self.split == "val":
            images = images[::VAL_STRIDE]
        for image in images:
            people = by_image.get(int(image["id"]))
            if not people:
                continue
            kp2d, kp3d = person_arrays(people, NUM_JOINTS, path)
            fx, fy, cx, cy = (float(v) for v in image["intrinsic"])
            yield multi_person_record(
                image["file_name"],
                (int(image["height"]), int(image["width"])),
                kp2d,
                kp3d,
                "mupots_17",
                intrinsics(fx, fy, cx, cy),
            )
