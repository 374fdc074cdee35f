"""MuCo-3DHP: composited multi-person images made from MPI-INF-3DHP (training only)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.body.joint_sets import convert_to_54
from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.sources._shared_3d import (
    hip_centre,
    image_size,
    inside_image,
    intrinsics,
    load_romp_annots,
    with_visibility,
)
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

__all__ = ["MuCo", "multi_person_record"]

NUM_JOINTS = 21
RAW_FILE = "MuCo-3DHP.json"
ROMP_FILE = "annots_augmented.npz"


def multi_person_record(
    imgpath: str,
    size: tuple[int, int],
    kp2d: np.ndarray,
    kp3d_mm: np.ndarray,
    joint_set: str,
    cam_mat: np.ndarray,
) -> dict[str, Any]:
    """The record of an image whose every person has pixel joints and camera-frame joints in millimetres
    (MuCo, MuPoTS): 2D visibility is "inside the image", vmask_2d is [pose, no track ids, all persons
    labelled] and vmask_3d [kp3d, root translation]."""
    kp2d = np.asarray(kp2d, dtype=np.float32)
    kp3d = np.asarray(kp3d_mm, dtype=np.float32) / 1000.0
    count = len(kp2d)
    kp2ds = np.stack([convert_to_54(with_visibility(p, inside_image(p, *size)), joint_set) for p in kp2d])
    kp3ds = np.stack([convert_to_54(p, joint_set) for p in kp3d])
    return {
        "imgpath": imgpath,
        "img_size": size,
        "kp2ds": kp2ds.reshape(count, 54, 3),
        "track_ids": None,
        "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=False, all_labelled=True),
        "vmask_3d": vmask_3d_rows(count, kp3d=True, depth=True),
        "kp3ds": kp3ds.reshape(count, 54, 3),
        "root_trans": np.stack([hip_centre(p) for p in kp3ds]).reshape(count, 3),
        "camMats": cam_mat,
    }


def group_annotations(
    annotations: Sequence[Mapping[str, Any]], path: Path
) -> dict[int, list[Mapping[str, Any]]]:
    """COCO-style annotations grouped by `image_id`, in file order."""
    by_image: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for index, annotation in enumerate(annotations):
        if "image_id" not in annotation:
            raise StoreFormatError(f"{path}: annotation {index} has no image_id")
        by_image[int(annotation["image_id"])].append(annotation)
    return by_image


def person_arrays(
    people: Sequence[Mapping[str, Any]], joints: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(P, J, 2) `keypoints_img` and (P, J, 3) `keypoints_cam` of one image's annotations."""
    try:
        kp2d = np.array([np.asarray(p["keypoints_img"], dtype=np.float32).reshape(joints, 2) for p in people])
        kp3d = np.array([np.asarray(p["keypoints_cam"], dtype=np.float32).reshape(joints, 3) for p in people])
    except (KeyError, ValueError) as err:
        raise StoreFormatError(
            f"{path}: annotation without {joints} keypoints_img (x, y) and keypoints_cam (x, y, z mm): {err}"
        ) from err
    return kp2d.reshape(-1, joints, 2), kp3d.reshape(-1, joints, 3)


class MuCo(StoreBackedSource):
    """MuCo-3DHP: several people per image (composited from MPI-INF-3DHP), 2D + 3D joints (21), root
    translations, intrinsics. Every person in an image is labelled; no track ids.

    Raw: `MuCo-3DHP.json` (the 3DMPPE / RootNet release, COCO-style): `images` {id, file_name, width, height,
    f [fx, fy], c [cx, cy]}, `annotations` {image_id, keypoints_img (21 x 2 px), keypoints_cam (21 x 3 mm)}.
    ROMP's `annots_augmented.npz` ({file_name: [kp2d (N, 21, 2), kp3d (N, 21, 3) mm, [[fx, fy], [cx, cy]]]})
    is read when the json is absent (its composites all have the size of the first one). As in ROMP, only the
    augmented composites are used (`unaugmented` images are skipped). 2D joints outside the image are
    marked missing.
    """

    is_3d: ClassVar[bool] = True
    scale_range: ClassVar[tuple[float, float]] = (1.4, 2.2)
    homepage: ClassVar[str] = (
        "MuCo-3DHP.json and the augmented_set images: the 3DMPPE release "
        "(github.com/mks0601/3DMPPE_POSENET_RELEASE); annots_augmented.npz: ROMP's parsed annotations"
    )
    expected_layout: ClassVar[str] = """
        MuCo-3DHP.json                (or annots_augmented.npz, ROMP's parsed annotations)
        augmented_set/<name>.jpg      (paths as the annotation file names them)
    """
    provides: ClassVar[str] = "2D + 3D joints (21), root translations, intrinsics; several people per image"

    splits: ClassVar[tuple[str, ...]] = ("train",)
    default_key: ClassVar[str | None] = "muco"

    def annotation_files(self) -> list[Path]:
        return [self.root / (RAW_FILE if (self.root / RAW_FILE).is_file() else ROMP_FILE)]

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        if (self.root / RAW_FILE).is_file():
            yield from self._read_json(self.root / RAW_FILE)
        else:
            yield from self._read_romp_npz(self.require(ROMP_FILE))

    def _read_json(self, path: Path) -> Iterator[Mapping[str, Any]]:
        data = json.loads(path.read_text())
        by_image = group_annotations(data.get("annotations", []), path)
        for image in sorted(data.get("images", []), key=lambda item: int(item["id"])):
            if "unaugmented" in image["file_name"] or not by_image.get(int(image["id"])):
                continue
            kp2d, kp3d = person_arrays(by_image[int(image["id"])], NUM_JOINTS, path)
            (fx, fy), (cx, cy) = image["f"], image["c"]
            yield multi_person_record(
                image["file_name"],
                (int(image["height"]), int(image["width"])),
                kp2d,
                kp3d,
                "muco_21",
                intrinsics(fx, fy, cx, cy),
            )

    def _read_romp_npz(self, path: Path) -> Iterator[Mapping[str, Any]]:
        annots: dict[str, Sequence[Any]] = load_romp_annots(path)
        names = [name for name in sorted(annots) if "unaugmented" not in name]
        # All composites share one size (2048 x 2048); reading one image spares opening every file.
        size = image_size(self.root / names[0], self.not_found) if names else (0, 0)
        for name in names:
            kp2d, kp3d, cam = annots[name]
            (fx, fy), (cx, cy) = np.asarray(cam, dtype=np.float64).reshape(2, 2)
            yield multi_person_record(
                name,
                size,
                np.asarray(kp2d).reshape(-1, NUM_JOINTS, 2),
                np.asarray(kp3d).reshape(-1, NUM_JOINTS, 3),
                "muco_21",
                intrinsics(fx, fy, cx, cy),
            )
