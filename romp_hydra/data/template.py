"""Template for your own dataset. Copy this file, fill in the places marked FILL IN, register it with two YAML
files, and look at the result with the check CLI. Nothing in the romp_hydra package needs editing.

As it stands it is a working example for the simplest real format:

    <root>/images/<name>.jpg
    <root>/annotations.json     {"<name>.jpg": [person, person, ...], ...}
                                person = [[x, y, v], ...] one triple per joint, in JOINT_ORDER;
                                x, y in pixels, v > 0 labelled, v = 0 not labelled (COCO's convention)

Try it:

    python -m romp_hydra.data.template /tmp/mydata        # writes a tiny example dataset + prints the YAML

Your own dataset, step by step:

1. Copy this file somewhere importable (your package, or a folder on PYTHONPATH), e.g. my_datasets/mine.py,
   and rename the class.
2. FILL IN the class attributes: the joint order of your annotations (names of the 54-joint set in
   romp_hydra/body/joint_sets.py), what the root folder holds, where the data comes from, whether every person
   in an image is labelled.
3. FILL IN read_annotations() if your annotation file looks different: yield one record per image with the
   keys shown there. 3D data adds kp3ds (N, 54, 3) metres and/or params (N, 76) SMPL and sets vmask_3d.
4. Register it in a config folder of your own (outside the package):
       <your_conf>/source/mine.yaml:       _target_: my_datasets.mine.MyDataset
                                           root: /data/mine
                                           split: train
       <your_conf>/dataset/mine.yaml:      defaults:
                                             - /source@members.mine: mine
                                             - _self_
                                           name: mine
5. Look at what training will see:
       python -m romp_hydra.data.check dataset=mine hydra.searchpath=[file:///abs/path/to/your_conf]
6. Mix it into training: add `- /source@members.mine: mine` to a mixture's defaults and give it a weight.

The first use packs the annotations into <root>/<key>_<split>.npz (romp_hydra.data.store); it is packed again
whenever annotations.json changes. `python -m romp_hydra.data.pack dataset=mine` does it explicitly.
"""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from romp_hydra.body.joint_sets import convert_to_54
from romp_hydra.data.base import UnreadableImageError, load_image
from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.store import StoreBackedSource

log = logging.getLogger(__name__)

IMAGE_FOLDER = "images"
ANNOTATION_FILE = "annotations.json"


class MyDataset(StoreBackedSource):
    """2D keypoints from a JSON file {image name: [persons x joints x (x, y, v)]} (no 3D, no track ids)."""

    # FILL IN: your joint order, as names of the 54-joint set (romp_hydra/body/joint_sets.py, SMPL_ALL_54).
    # Joints the 54-joint set does not have are dropped; 54-joint set joints you do not have stay missing.
    JOINT_ORDER: tuple[str, ...] = (
        "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
        "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle",
    )  # this example: COCO's 17 keypoints. NB: 'L_Hip'/'R_Hip' are the dataset-style hips (45/46)
    # FILL IN: True only if *every* person in every image is annotated (it enables the centre-map loss).
    ALL_PERSONS_LABELLED = True

    # FILL IN: shown in the error message when the data is missing.
    expected_layout = f"""
{IMAGE_FOLDER}/<name>.jpg
{ANNOTATION_FILE}     {{"<name>.jpg": [[[x, y, v], ...one per joint], ...one per person]}}
"""
    homepage = "the example: python -m romp_hydra.data.template <folder> writes one"
    provides = "2D keypoints (COCO-17 order), all persons labelled; no 3D, no SMPL, no track ids"
    # FILL IN: a 3D dataset sets is_3d = True (crop augmentation uses data.augment.crop_prob_3d);
    # a dataset with one person per image sets multi_person = False; scale_range is the crop enlargement range.
    is_3d = False
    multi_person = True
    scale_range = (1.2, 2.4)

    def annotation_files(self) -> list[Path]:
        # FILL IN: every file read_annotations() reads (a change to one of them triggers a repack).
        return [self.root / ANNOTATION_FILE]

    def read_annotations(self) -> Iterator[dict[str, Any]]:
        """One record per image: the img_info fields without the image itself (read once, when packing)."""
        with open(self.root / ANNOTATION_FILE) as file:
            annotations: dict[str, list] = json.load(file)
        for name, persons in sorted(annotations.items()):
            imgpath = f"{IMAGE_FOLDER}/{name}"  # relative to root, so the dataset folder can move
            try:
                # FILL IN: if your annotations give the image size, use it: decoding every image is slow.
                height, width = load_image(self.root / imgpath).shape[:2]
            except UnreadableImageError as err:
                self.leave_out(imgpath, err.reason)  # logged, and kept in the store for the check CLI
                continue
            kp2ds = np.stack([self.joints_to_54(person, name) for person in persons]) if persons \
                else np.zeros((0, 54, 3), np.float32)
            count = len(kp2ds)
            yield {
                "imgpath": imgpath,
                "img_size": (height, width),
                "kp2ds": kp2ds,  # (N, 54, 3) [x, y, vis], -2 for joints not annotated
                # per person: a 54-joint pose (False: a (4, 2) box), track id valid, all persons labelled
                "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=False, all_labelled=self.ALL_PERSONS_LABELLED),
                # per person: kp3d, global_orient, body_pose, betas, verts, depth (root translation): none here
                "vmask_3d": vmask_3d_rows(count),
                "track_ids": None,
                "kp3ds": None,   # 3D datasets: (N, 54, 3) metres, camera axes (x right, y down, z forward)
                "params": None,  # SMPL fits: (N, 76) = 66 axis-angle (orient + 21 joints) + 10 betas
            }

    def joints_to_54(self, person: list, image_name: str) -> np.ndarray:
        """(K, 3) [x, y, v] in JOINT_ORDER -> (54, 3) with -2 for joints that are not labelled."""
        for index, joint in enumerate(person):
            if not isinstance(joint, (list, tuple)) or len(joint) != 3:
                name = self.JOINT_ORDER[index] if index < len(self.JOINT_ORDER) else f"#{index}"
                raise ValueError(
                    f"{self.root / ANNOTATION_FILE}: image {image_name}, joint {index} ({name}) is {joint!r}; every "
                    f"joint is [x, y, v] (v = 0: not labelled, e.g. [0, 0, 0]); fix that entry")
        joints = np.asarray(person, dtype=np.float32)
        if joints.shape != (len(self.JOINT_ORDER), 3):
            raise ValueError(f"{ANNOTATION_FILE}: a person of {image_name} has joints of shape {joints.shape}, "
                             f"expected ({len(self.JOINT_ORDER)}, 3) [x, y, v] in {type(self).__name__}.JOINT_ORDER")
        joints[joints[:, 2] <= 0] = -2.0
        return convert_to_54(joints, self.JOINT_ORDER)


# -- the example data ---------------------------------------------------------------------------------------------

# A person standing, facing the camera, in COCO-17 order: (x, y) in units of body height, origin at the head.
_STANDING_PERSON = np.array([
    (0.00, 0.08), (0.03, 0.06), (-0.03, 0.06), (0.06, 0.07), (-0.06, 0.07), (0.14, 0.20), (-0.14, 0.20),
    (0.20, 0.36), (-0.20, 0.36), (0.22, 0.50), (-0.22, 0.50), (0.09, 0.52), (-0.09, 0.52), (0.10, 0.73),
    (-0.10, 0.73), (0.10, 0.95), (-0.10, 0.95),
])  # fmt: skip
_BONES = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (11, 12), (5, 11), (6, 12), (11, 13), (13, 15), (12, 14),
          (14, 16), (0, 1), (0, 2), (1, 3), (2, 4)]


def write_example(folder: str | Path, num_images: int = 6, seed: int = 0) -> Path:
    """Write a tiny example dataset in the format above: stick figures drawn where the annotation says they are.

    Image i shows 1 + i % 2 persons; one person in three has an unlabelled (v = 0) left wrist.
    """
    folder = Path(folder)
    (folder / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    annotations: dict[str, list] = {}
    for index in range(num_images):
        height, width = 240, 320
        image = np.full((height, width, 3), (200, 190 + 10 * (index % 3), 170), np.uint8)
        persons = []
        for person_index in range(1 + index % 2):
            body_height = rng.uniform(120, 200)
            top_left = (rng.uniform(50, width - 50), rng.uniform(5, height - body_height - 5))
            joints = _STANDING_PERSON * body_height + top_left
            visible = np.full(len(joints), 2.0)
            if (index + person_index) % 3 == 0:
                visible[9] = 0.0  # left wrist not labelled
            for a, b in _BONES:
                cv2.line(image, tuple(int(v) for v in joints[a]), tuple(int(v) for v in joints[b]), (60, 60, 60), 3)
            persons.append([[float(x), float(y), float(v)] for (x, y), v in zip(joints, visible)])
        name = f"img_{index:03d}.jpg"
        cv2.imwrite(str(folder / IMAGE_FOLDER / name), image)
        annotations[name] = persons
    (folder / ANNOTATION_FILE).write_text(json.dumps(annotations, indent=1))
    return folder


def _main(argv: list[str]) -> None:
    if len(argv) != 1:
        print("usage: python -m romp_hydra.data.template OUT_FOLDER   (writes a tiny example dataset)")
        sys.exit(2)
    folder = write_example(argv[0]).resolve()
    print(f"""wrote an example dataset to {folder}. To look at it through the training pipeline, create
  <your_conf>/source/mydataset.yaml:
    _target_: romp_hydra.data.template.MyDataset
    root: {folder}
    split: train
  <your_conf>/dataset/mydataset.yaml:
    defaults:
      - /source@members.mydataset: mydataset
      - _self_
    name: mydataset
and run
  python -m romp_hydra.data.check dataset=mydataset hydra.searchpath=[file:///abs/path/to/your_conf]""")


if __name__ == "__main__":
    _main(sys.argv[1:])
