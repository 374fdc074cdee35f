"""CMU Panoptic evaluation sequences in the CRMH (Jiang et al., CVPR 2020) protocol (evaluation only)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from romp_hydra.body.joint_sets import CMUP_J24_TO_H36M17, JOINT54, convert_to_54
from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.sources._shared_3d import image_size, to_metres
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

__all__ = ["BROKEN_FRAMES", "PELVIS_SHIFT", "CMUPanoptic", "image_name"]

NUM_JOINTS = 24
MIN_CONFIDENCE = 0.1
# CRMH's pelvis sits lower than the pelvis of the H36M regressor that predictions use; ROMP moves the GT
# pelvis up by 6 cm (camera y points down) before centring on it.
PELVIS_SHIFT = np.array([0.0, -0.06, 0.0], dtype=np.float32)
# Frames whose images in the release are broken (a green tint); ROMP leaves them out too.
BROKEN_FRAMES = frozenset(
    [f"160422_haggling1-00_16_{n:08d}.jpg" for n in range(2945, 2955)]
    + [f"160422_haggling1-00_30_{n:08d}.jpg" for n in (*range(1402, 1413), 1414)]
)


def image_name(filename: str) -> str:
    """Our image name for a CRMH `filename` (`<root>/<sequence>/.../<camera>_<frame>.png`):
    `<sequence>-<camera>_<frame>.jpg` in images/ (ROMP's layout)."""
    parts = filename.replace("\\", "/").split("/")
    if len(parts) < 3:
        raise StoreFormatError(f"cmup: filename {filename!r} is not <folder>/<sequence>/.../<image>")
    return f"{parts[1]}-{Path(parts[-1]).stem}.jpg"


class CMUPanoptic(StoreBackedSource):
    """CMU Panoptic (CRMH evaluation split): several people per image, 2D joints and 3D joints (the 17 H36M
    joints) for evaluation. Every visible person is labelled; no SMPL, no track ids, no intrinsics.

    Annotations: `panoptic_annot/*.pkl`, each a list of {'filename', 'width', 'height', 'kpts2d' (P, 24, 3),
    'kpts3d' (P, 24, 4)} in CRMH's 24-joint order with confidences; 2D is given at the annotation's resolution
    (832 wide) and scaled to the image's. A person is kept when more than one joint lies inside the image;
    joints below 0.1 confidence are missing. 2D joints map by name (CMU Panoptic has no head top, so that
    joint is missing); the 3D ground truth is the 17 H36M joints (`CMUP_J24_TO_H36M17`) in metres with the
    pelvis moved up by 6 cm (see PELVIS_SHIFT); the evaluation protocol centres it on the pelvis.
    Images: `images/<sequence>-<camera>_<frame>.jpg` (the image name encodes the sequence).
    """

    is_3d: ClassVar[bool] = True
    homepage: ClassVar[str] = (
        "images: http://domedb.perception.cs.cmu.edu (HD frames of the CRMH test sequences); panoptic_annot: "
        "github.com/JiangWenPL/multiperson (CRMH evaluation annotations)"
    )
    expected_layout: ClassVar[str] = """
        panoptic_annot/<sequence>.pkl
        images/<sequence>-<camera>_<frame>.jpg
    """
    provides: ClassVar[str] = "2D joints, 3D joints (17 H36M joints) for evaluation; several people per image"

    splits: ClassVar[tuple[str, ...]] = ("test",)
    default_key: ClassVar[str | None] = "cmup"

    def annotation_files(self) -> list[Path]:
        folder = self.root / "panoptic_annot"
        files = sorted(folder.glob("*.pkl"))
        if not files:
            raise self.not_found(
                folder / "<sequence>.pkl", "CRMH's CMU Panoptic annotation pickles (none found)"
            )
        return files

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        sizes: dict[
            tuple[int, int], tuple[int, int]
        ] = {}  # annotation size -> image size (one read per size)
        for path in self.annotation_files():
            with open(path, "rb") as file:
                entries = pickle.load(file, encoding="latin1")
            for entry in entries:
                name = image_name(entry["filename"])
                if name in BROKEN_FRAMES:
                    continue
                annot_size = (int(entry["height"]), int(entry["width"]))
                if annot_size not in sizes:
                    sizes[annot_size] = image_size(self.root / "images" / name, self.not_found)
                record = self._record(name, entry, annot_size, sizes[annot_size], path)
                if record is not None:
                    yield record

    @staticmethod
    def _record(
        name: str, entry: Mapping[str, Any], annot_size: tuple[int, int], size: tuple[int, int], path: Path
    ) -> dict[str, Any] | None:
        kp2d = np.asarray(entry["kpts2d"], dtype=np.float32).reshape(-1, NUM_JOINTS, 3)
        kp3d = np.asarray(entry["kpts3d"], dtype=np.float32).reshape(-1, NUM_JOINTS, 4)
        if len(kp2d) != len(kp3d):
            raise StoreFormatError(
                f"{path}: {entry['filename']} has {len(kp2d)} 2D and {len(kp3d)} 3D people"
            )
        height, width = annot_size
        inside = (kp2d[..., 0] > 0) & (kp2d[..., 0] < width) & (kp2d[..., 1] > 0) & (kp2d[..., 1] < height)
        visible = inside & (kp2d[..., 2] >= MIN_CONFIDENCE)
        people = np.flatnonzero(visible.sum(axis=1) > 1)
        if len(people) == 0:
            return None
        scale = np.array([size[1] / width, size[0] / height], dtype=np.float32)
        kp2ds, kp3ds = [], []
        for person in people:
            joints2d = np.concatenate(
                [kp2d[person, :, :2] * scale, np.ones((NUM_JOINTS, 1), np.float32)], axis=1
            )
            joints2d[~visible[person]] = -2.0
            joints2d = convert_to_54(joints2d, "cmup_j24")
            joints2d[JOINT54["Head_top"]] = -2.0
            kp2ds.append(joints2d)
            joints3d = to_metres(kp3d[person, :, :3], f"cmup {name}")
            joints3d[kp3d[person, :, 3] < MIN_CONFIDENCE] = -2.0
            h36m = joints3d[list(CMUP_J24_TO_H36M17)]
            if (h36m[0] != -2.0).all():
                h36m[0] += PELVIS_SHIFT
            kp3ds.append(convert_to_54(h36m, "h36m_17_standard"))
        count = len(people)
        return {
            "imgpath": f"images/{name}",
            "img_size": size,
            "kp2ds": np.stack(kp2ds),
            "track_ids": None,
            "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=False, all_labelled=True),
            "vmask_3d": vmask_3d_rows(count, kp3d=True),
            "kp3ds": np.stack(kp3ds),
        }
