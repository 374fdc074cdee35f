"""MuCo-3DHP and MuPoTS-3D: COCO-style json of the 3DMPPE release, ROMP's npz for MuCo, several people."""

from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.muco import MuCo
from romp_hydra.data.sources.mupots import MuPoTS
from tests.data.sources.fixtures_3d import (
    assert_valid_batch,
    index_of,
    pipeline_batch,
    write_coco3d,
    write_image,
)

L_WRIST, R_ANKLE, HEAD_TOP = JOINT54["L_Wrist"], JOINT54["R_Ankle"], JOINT54["Head_top"]
MUCO_SIZE = (90, 120)
MUCO_IMAGES = [
    ("augmented_set/000001.jpg", 2),
    ("unaugmented_set/000002.jpg", 1),
    ("augmented_set/000003.jpg", 3),
]


def check_people(info, kp2d: np.ndarray, kp3d_mm: np.ndarray, joint_set: str, image_index: int, width: int):
    """Every person's joints by name, visibility of the out-of-view ankle, root translations and masks."""
    count = len(kp2d)
    assert info["kp2ds"].shape == (count, 54, 3)
    for person in range(count):
        np.testing.assert_allclose(
            info["kp2ds"][person, L_WRIST], [30.5 + 30 * person, 41.25 + image_index, 1]
        )
        np.testing.assert_allclose(
            info["kp3ds"][person, L_WRIST],
            [0.123 + person / 1000, 0.045, 5.1 + image_index / 1000],
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            info["kp2ds"][person, HEAD_TOP, :2], kp2d[person, index_of(joint_set, "Head_top")]
        )
        hips = (
            kp3d_mm[person, index_of(joint_set, "R_Hip")] + kp3d_mm[person, index_of(joint_set, "L_Hip")]
        ) / 2000
        np.testing.assert_allclose(info["root_trans"][person], hips, rtol=1e-6)
    assert (info["kp2ds"][count - 1, R_ANKLE] == -2).all()  # outside the image: missing
    assert (info["kp2ds"][: count - 1, R_ANKLE, 2] == 1).all()
    assert info["vmask_2d"].tolist() == [[True, False, True]] * count
    assert info["vmask_3d"].tolist() == [[True, False, False, False, False, True]] * count


def test_muco_json_skips_unaugmented_images(tmp_path):
    root = tmp_path / "MuCo"
    written = write_coco3d(root, "MuCo-3DHP.json", "muco_21", MUCO_IMAGES, MUCO_SIZE, "f_c")
    source = MuCo(root)
    assert len(source) == 2 and source.store.num_persons == 5
    info = source.get_image_info(1)
    assert info["imgpath"] == str(root / "augmented_set" / "000003.jpg")
    check_people(info, *written["augmented_set/000003.jpg"], "muco_21", 2, MUCO_SIZE[1])
    assert (info["kp2ds"][:, JOINT54["Neck"]] == -2).all()  # MuCo's thorax is not SMPL's neck: unused
    np.testing.assert_allclose(info["camMats"], [[62, 0, 60], [0, 61, 45], [0, 0, 1]])
    assert info["track_ids"].tolist() == [-1, -1, -1]


def test_muco_romp_npz(tmp_path):
    root = tmp_path / "MuCo"
    kp2d = np.zeros((2, 21, 2))
    kp2d[:, index_of("muco_21", "L_Wrist")] = [(10.5, 20.5), (130.0, 20.0)]  # the second is outside 120 x 90
    kp3d = np.full((2, 21, 3), 1500.0)
    write_image(root / "augmented_set" / "a.jpg", *MUCO_SIZE)
    np.savez(
        root / "annots_augmented.npz",
        annots={
            "augmented_set/a.jpg": [kp2d, kp3d, [[70.0, 71.0], [60.0, 45.0]]],
            "unaugmented_set/b.jpg": [kp2d, kp3d, [[70.0, 71.0], [60.0, 45.0]]],
        },
    )
    info = MuCo(root).get_image_info(0)
    np.testing.assert_allclose(info["kp2ds"][:, L_WRIST], [[10.5, 20.5, 1], [-2, -2, -2]])
    np.testing.assert_allclose(info["kp3ds"][0, JOINT54["Pelvis"]], [1.5, 1.5, 1.5])
    np.testing.assert_allclose(info["camMats"], [[70, 0, 60], [0, 71, 45], [0, 0, 1]])
    assert len(MuCo(root)) == 1


def test_muco_has_only_a_training_split(tmp_path):
    with pytest.raises(ValueError, match="has the split.s. train"):
        MuCo(tmp_path, "test")
    with pytest.raises(DatasetNotFoundError, match="annots_augmented.npz"):
        len(MuCo(tmp_path))


def test_mupots_test_and_val_splits(tmp_path):
    root = tmp_path / "MultiPersonTestSet"
    images = [("TS1/img_000000.jpg", 2), ("TS1/img_000001.jpg", 3), ("TS2/img_000000.jpg", 2)]
    written = write_coco3d(root, "MuPoTS-3D.json", "mupots_17", images, (80, 100), "intrinsic")
    source = MuPoTS(root)
    assert len(source) == 3 and source.store.num_persons == 7
    info = source.get_image_info(1)
    assert info["imgpath"] == str(root / "TS1" / "img_000001.jpg")
    check_people(info, *written["TS1/img_000001.jpg"], "mupots_17", 1, 100)
    np.testing.assert_allclose(info["camMats"], [[61, 0, 50], [0, 61, 40], [0, 0, 1]])
    val = MuPoTS(root, "val")  # every 10th image: the first
    assert len(val) == 1 and val.get_image_info(0)["imgpath"].endswith("TS1/img_000000.jpg")
    with pytest.raises(DatasetNotFoundError, match="MuPoTS-3D.json"):
        len(MuPoTS(tmp_path))


def test_pipeline_batches(tmp_path):
    write_coco3d(tmp_path / "MuCo", "MuCo-3DHP.json", "muco_21", MUCO_IMAGES, MUCO_SIZE, "f_c")
    assert_valid_batch(pipeline_batch(MuCo(tmp_path / "MuCo")), [2, 3], kp3d=True)
    write_coco3d(
        tmp_path / "MuPoTS",
        "MuPoTS-3D.json",
        "mupots_17",
        [("TS1/img_000000.jpg", 2)],
        (80, 100),
        "intrinsic",
    )
    batch = pipeline_batch(MuPoTS(tmp_path / "MuPoTS"), train=False)
    assert_valid_batch(batch, [2], kp3d=True)
    assert batch["all_persons_labelled"].tolist() == [True]
