"""CMU Panoptic (CRMH pickles): visible people, 2D scaled to the image, 17 H36M joints as 3D ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import H36M_17_STANDARD, JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.cmup import CMUPanoptic, image_name
from tests.data.sources.fixtures_3d import (
    CMUP_IMAGE,
    assert_valid_batch,
    index_of,
    pipeline_batch,
    write_cmup,
)

L_WRIST = JOINT54["L_Wrist"]


def test_image_names_follow_romp_layout():
    assert (
        image_name("panoptic/160422_mafia2/hdImgs/00_16/00_16_00001234.png")
        == "160422_mafia2-00_16_00001234.jpg"
    )
    with pytest.raises(ValueError, match="sequence"):
        image_name("00_16_00001234.png")


def test_people_joints_and_ground_truth(tmp_path):
    root = tmp_path / "cmu_panoptic"
    entries = write_cmup(root)
    source = CMUPanoptic(root)
    # Frame 100: the third person has one joint in view and is left out; frame 2945 is a known broken frame.
    assert len(source) == 2 and source.store.num_persons == 3
    info = source.get_image_info(0)
    assert info["imgpath"] == str(root / "images" / "160422_haggling1-00_16_00000100.jpg")
    assert info["img_size"] == CMUP_IMAGE
    # 2D doubled: the images have twice the annotation's resolution.
    np.testing.assert_allclose(info["kp2ds"][:, L_WRIST], [[61.0, 56.5, 1], [141.0, 56.5, 1]])
    assert (info["kp2ds"][:, JOINT54["Head_top"]] == -2).all()  # CMU Panoptic has no head top
    # 3D: only the 17 H36M joints, by name; the right ankle of person 0 is below the confidence threshold.
    kp3d = info["kp3ds"][0]
    np.testing.assert_allclose(kp3d[L_WRIST], [0.41, 0.05, 3.2], rtol=1e-6)
    assert (kp3d[JOINT54["R_Ankle"]] == -2).all() and (info["kp3ds"][1, JOINT54["R_Ankle"]] != -2).all()
    present = {JOINT54[name] for name in H36M_17_STANDARD} - {JOINT54["R_Ankle"]}
    assert {int(j) for j in np.flatnonzero((kp3d != -2).all(axis=1))} == present
    raw_pelvis = entries[0]["kpts3d"][0, index_of("cmup_j24", "Pelvis"), :3]
    np.testing.assert_allclose(
        kp3d[JOINT54["Pelvis"]], raw_pelvis + [0, -0.06, 0], rtol=1e-6
    )  # moved up 6 cm
    assert info["vmask_2d"].tolist() == [[True, False, True]] * 2
    assert info["vmask_3d"].tolist() == [[True, False, False, False, False, False]] * 2
    assert info["params"] is None or (info["params"] == -10).all()


def test_missing_annotations_say_where_they_come_from(tmp_path):
    (tmp_path / "cmu").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        len(CMUPanoptic(tmp_path / "cmu"))
    assert "panoptic_annot" in str(caught.value) and "JiangWenPL/multiperson" in str(caught.value)
    with pytest.raises(ValueError, match="has the split.s. test"):
        CMUPanoptic(tmp_path / "cmu", "train")


def test_pipeline_batch(tmp_path):
    write_cmup(tmp_path / "cmu_panoptic")
    batch = pipeline_batch(CMUPanoptic(tmp_path / "cmu_panoptic"), train=False)
    assert_valid_batch(batch, [2, 1], kp3d=True)
