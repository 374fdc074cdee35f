"""CrowdPose: crowded scenes, 14 keypoints per person (COCO-format json)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from romp_hydra.data.sources.coco import CocoStyleSource

__all__ = ["CrowdPose"]

SPLITS = ("train", "val", "test", "trainval")


class CrowdPose(CocoStyleSource):
    """CrowdPose: several, often overlapping people per image with 14 2D joints; no 3D.

    Annotations provided: 2D keypoints in CrowdPose's order (left/right shoulder, elbow, wrist, hip, knee, ankle,
    head top, neck), mapped to the 54-joint set by name (head -> Head_top 48, neck -> Neck_LSP 47, hips -> the
    dataset hips 45/46); a per-person track id; every person counts as labelled (vmask_2d [T, T, T], vmask_3d all
    False). The images' `crowdIndex` is not used.

    Official site: https://github.com/Jeff-sjtu/CrowdPose (images and json on Google Drive); ROMP's parsed
    annots_<split>.npz: the Google Drive folder of ROMP's docs/dataset.md.

    Selection (ROMP's): as COCO, but an image's best person must span more than 40 px vertically. The evaluation
    configs (dataset=crowdpose_val / crowdpose_test) set filter_images=false, so every image of the split is
    evaluated, as the CrowdPose AP protocol scores them all.

    Args:
        split: 'train', 'val', 'test' or 'trainval' (json/crowdpose_<split>.json).
        annotations: 'auto' | 'official' (json/crowdpose_<split>.json) | 'romp' (annots_<split>.npz).
        filter_images, min_person_vis_sum, min_image_vis_sum, min_image_height: see `coco.PersonFilter`.
    """

    joint_set: ClassVar[str] = "crowdpose_14"
    num_joints: ClassVar[int] = 14
    default_min_image_height: ClassVar[float] = 40.0
    homepage: ClassVar[str] = (
        "https://github.com/Jeff-sjtu/CrowdPose (images.zip and the json annotations); ROMP's parsed "
        "annots_*.npz: the Google Drive folder of ROMP's docs/dataset.md"
    )
    expected_layout: ClassVar[str] = """
        images/<id>.jpg
        json/crowdpose_<split>.json     official annotations (or ROMP's annots_<split>.npz)
    """
    provides: ClassVar[str] = "2D keypoints (CrowdPose-14), track ids; all persons labelled; no 3D"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, annotations: str = "auto", filter_images: bool = True,
                 min_person_vis_sum: float = 1, min_image_vis_sum: float = 3, min_image_height: float | None = None):
        if split not in SPLITS:
            raise ValueError(f"crowdpose split={split!r}: use one of {', '.join(SPLITS)}")
        super().__init__(root, split, key=key or "crowdpose", store_dir=store_dir, annotations=annotations,
                         filter_images=filter_images, min_person_vis_sum=min_person_vis_sum,
                         min_image_vis_sum=min_image_vis_sum, min_image_height=min_image_height)

    def official_file(self) -> Path:
        return self.root / "json" / f"crowdpose_{self.split}.json"

    def romp_file(self) -> Path:
        return self.root / f"annots_{self.split}.npz"

    def image_path(self, file_name: str) -> str:
        return f"images/{file_name}"
