"""CrowdPose (14 keypoints, COCO-format json) and CrowdHuman (box-only persons, .odgt)."""
from __future__ import annotations

import numpy as np
import pytest

from romp_hydra import batch as masks
from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.crowdhuman import CrowdHuman
from romp_hydra.data.sources.crowdpose import CrowdPose
from romp_hydra.data.store import StoreFormatError
from tests.data.sources.fixtures_2d import (
    CROWDPOSE_ORDER,
    assert_valid_batch,
    pipeline_batch,
    save_romp_npz,
    write_crowdhuman_fixture,
    write_crowdpose_fixture,
)


def test_crowdpose_json(tmp_path):
    fixture = write_crowdpose_fixture(tmp_path)
    source = CrowdPose(fixture.root)
    assert len(source) == 2 and source.store.num_persons == 4  # the 36 px person's image is filtered out

    info = source.get_image_info(0)
    first, second, third = fixture.people[fixture.images[0]]
    assert info["imgpath"].endswith("crowdpose/images/100000.jpg") and info["kp2ds"].shape == (3, 54, 3)
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [*first["left_wrist"], 1])
    np.testing.assert_allclose(info["kp2ds"][2, JOINT54["R_Ankle"]], [*third["right_ankle"], 1])
    np.testing.assert_allclose(info["kp2ds"][1, JOINT54["Head_top"]], [*second["head_top"], 1])  # occluded: kept
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Neck_LSP"]], [*first["neck"], 1])
    np.testing.assert_array_equal(info["kp2ds"][2, JOINT54["L_Ankle"]], [-2, -2, -2])  # unlabelled
    np.testing.assert_array_equal(info["kp2ds"][0, JOINT54["Nose"]], [-2, -2, -2])  # CrowdPose has no nose
    assert info["vmask_2d"].all() and not info["vmask_3d"].any() and info["params"] is None
    assert info["track_ids"].tolist() == [0, 1, 2] and source.get_image_info(1)["track_ids"].tolist() == [3]


def test_crowdpose_filter_limit_and_evaluation_setting(tmp_path):
    fixture = write_crowdpose_fixture(tmp_path)
    assert len(CrowdPose(fixture.root, min_image_height=70)) == 1  # the 62 px person's image goes too
    every = CrowdPose(fixture.root, filter_images=False)
    assert [every.store.image_record(i)["imgpath"] for i in range(len(every))] == fixture.extra["all_images"]


def test_crowdpose_romp_archive(tmp_path):
    fixture = write_crowdpose_fixture(tmp_path)
    json_store = CrowdPose(fixture.root).store
    raw = {"100000.jpg": np.zeros((1, 14, 3)), "100001.jpg": np.zeros((1, 14, 3))}
    person = fixture.people["images/100001.jpg"][0]
    raw["100001.jpg"][0, :, :2] = person.raw(CROWDPOSE_ORDER)
    raw["100001.jpg"][0, :, 2] = 2
    save_romp_npz(fixture.root / "annots_train.npz", annot=raw)
    source = CrowdPose(fixture.root, annotations="romp")
    assert len(source) == 1  # 100000.jpg's only person has no labelled joint
    record = source.store.image_record(0)
    np.testing.assert_array_equal(record["kp2ds"], json_store.image_record(1)["kp2ds"])
    assert record["img_size"] == (240, 320)


def test_crowdpose_rejects_an_unknown_split(tmp_path):
    write_crowdpose_fixture(tmp_path)
    with pytest.raises(ValueError, match="split='training'"):
        CrowdPose(tmp_path / "crowdpose", split="training")
    with pytest.raises(DatasetNotFoundError, match=r"crowdpose_val\.json"):
        CrowdPose(tmp_path / "crowdpose", split="val")


def test_crowdhuman_boxes(tmp_path):
    fixture = write_crowdhuman_fixture(tmp_path)
    source = CrowdHuman(fixture.root)
    assert len(source) == 2 and source.store.num_persons == 3  # the 'mask' box and the ignored box are left out
    for index, imgpath in enumerate(fixture.images):
        info = source.get_image_info(index)
        assert info["imgpath"] == str(fixture.root / imgpath)
        expected = fixture.extra["boxes"][imgpath]
        assert len(info["kp2ds"]) == len(expected)
        for box, want in zip(info["kp2ds"], expected):
            assert box.shape == (4, 2)
            np.testing.assert_allclose(box, want)
        assert info["vmask_2d"].tolist() == [[False, False, True]] * len(expected)
        assert not info["vmask_3d"].any()
    first = source.get_image_info(0)["kp2ds"][0]
    np.testing.assert_allclose(first, [[-10, 20], [90, 220], [5, 25], [85, 175]])  # [x, y, w, h] -> corners


def test_crowdhuman_romp_archive_and_bad_lines(tmp_path):
    fixture = write_crowdhuman_fixture(tmp_path)
    name = "273271,c9db000d5146c16.jpg"
    save_romp_npz(fixture.root / "annots_train.npz",
                  annots={name: {"fbox": [[60, 10, 110, 220]], "vbox": [[60, 10, 110, 200]], "hbox": [[0, 0, 1, 1]]}})
    source = CrowdHuman(fixture.root, annotations="romp")
    assert len(source) == 1
    np.testing.assert_allclose(source.get_image_info(0)["kp2ds"][0], [[60, 10], [170, 230], [60, 10], [170, 210]])

    (fixture.root / "annotation_val.odgt").write_text('{"ID": "x", "gtboxes": [{"tag": "person"}]}\n')
    (fixture.root / "images" / "val").mkdir(parents=True)
    with pytest.raises(StoreFormatError, match="line 1"):
        CrowdHuman(fixture.root, split="val").pack_data()


def test_crowdhuman_pipeline_places_box_persons(tmp_path):
    source = CrowdHuman(write_crowdhuman_fixture(tmp_path).root)
    batch = pipeline_batch(source)
    assert_valid_batch(batch, 2)
    persons = batch["person_mask"]
    assert persons.any() and not batch["valid_masks"][persons][:, masks.KP2D].any()  # boxes, not poses
    assert (batch["kp2d"][persons] == -2).all() and batch["all_persons_labelled"].all()
    assert batch["centermap"].amax() == pytest.approx(1.0)
