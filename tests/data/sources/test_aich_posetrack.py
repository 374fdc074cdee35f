"""AI Challenger (visibility 1/2/3, image stride) and PoseTrack 2018 (per-video json, global track ids)."""
from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.aich import AIChallenger, aic_visibility
from romp_hydra.data.sources.posetrack import PoseTrack
from tests.data.sources.fixtures_2d import (
    assert_valid_batch,
    pipeline_batch,
    save_romp_npz,
    write_aich_fixture,
    write_posetrack_fixture,
)


def test_aic_visibility_levels():
    np.testing.assert_allclose(aic_visibility(np.array([1, 2, 3])), [1.0, 0.5, 0.0])


def test_aich_official_json(tmp_path):
    fixture = write_aich_fixture(tmp_path)
    source = AIChallenger(fixture.root)
    assert len(source) == 2 and source.store.num_persons == 3  # the person with 2 labelled joints is dropped

    info = source.get_image_info(0)
    a, b = fixture.people[fixture.images[0]]
    assert info["imgpath"] == str(fixture.root / fixture.images[0]) and info["kp2ds"].shape == (2, 54, 3)
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [*a["left_wrist"], 1])
    np.testing.assert_allclose(info["kp2ds"][1, JOINT54["R_Ankle"]], [*b["right_ankle"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Head_top"]], [*a["head_top"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Neck_LSP"]], [*a["neck"], 1])
    np.testing.assert_array_equal(info["kp2ds"][1, JOINT54["R_Wrist"]], [-2, -2, -2])  # v = 3: not labelled
    assert info["vmask_2d"].tolist() == [[True, False, True]] * 2 and not info["vmask_3d"].any()

    c = fixture.people[fixture.images[1]][0]
    second = source.get_image_info(1)["kp2ds"][0]
    np.testing.assert_allclose(second[JOINT54["L_Knee"]], [*c["left_knee"], 1])  # v = 2 (occluded) is used


def test_aich_image_stride_and_split(tmp_path):
    fixture = write_aich_fixture(tmp_path)
    strided = AIChallenger(fixture.root, image_stride=2)
    assert len(strided) == 1 and strided.store.image_record(0)["imgpath"] == fixture.images[0]
    with pytest.raises(DatasetNotFoundError, match="ai_challenger_keypoint_validation"):
        AIChallenger(fixture.root, split="val")
    with pytest.raises(ValueError, match="image_stride=0"):
        AIChallenger(fixture.root, image_stride=0)


def test_aich_romp_archive(tmp_path):
    fixture = write_aich_fixture(tmp_path)
    person = np.full((54, 3), -2.0)
    person[JOINT54["L_Wrist"]] = [200.5, 120.0, 1.0]
    person[JOINT54["R_Ankle"]] = [150.0, 210.0, 0.5]
    person[JOINT54["Head_top"]] = [160.0, 20.0, 1.0]
    person[JOINT54["Neck_LSP"]] = [160.0, 45.0, 1.0]  # visibility sum 3.5
    faint = np.full((54, 3), -2.0)
    faint[JOINT54["Head_top"]] = [10.0, 10.0, 1.0]
    save_romp_npz(fixture.root / "annots.npz", annots={
        fixture.images[1]: [person, faint],
        "ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911/x.jpg": [person],
    })
    source = AIChallenger(fixture.root, annotations="romp")
    assert len(source) == 1  # the validation entry belongs to the other split
    kp2ds = source.get_image_info(0)["kp2ds"]
    assert kp2ds.shape == (1, 54, 3)  # faint: visibility sum 1 < 3
    np.testing.assert_allclose(kp2ds[0, JOINT54["R_Ankle"]], [150, 210, 1])  # occluded (0.5) is used


def test_aich_pipeline_batch(tmp_path):
    assert_valid_batch(pipeline_batch(AIChallenger(write_aich_fixture(tmp_path).root)), 2)


def test_posetrack_official_json(tmp_path):
    fixture = write_posetrack_fixture(tmp_path)
    source = PoseTrack(fixture.root)
    assert len(source) == 4 and source.store.num_persons == 7  # unlabelled frame 2 is left out

    records = [source.store.image_record(i) for i in range(len(source))]
    assert [r["imgpath"] for r in records] == fixture.images
    # Video 1's tracks 7 and 9 -> global ids 0 and 1 in every frame; video 2's track 7 is someone else: 2.
    assert [r["track_ids"].tolist() for r in records] == [[0, 1], [0, 1], [0, 1], [2]]
    assert all(r["vmask_2d"].tolist() == [[True, True, False]] * len(r["track_ids"]) for r in records)

    info = source.get_image_info(1)
    first, second = fixture.people[fixture.images[1]]
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [*first["left_wrist"], 1])
    np.testing.assert_allclose(info["kp2ds"][1, JOINT54["R_Ankle"]], [*second["right_ankle"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Head_top"]], [*first["head_top"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Neck"]], [*first["upper_neck"], 1])  # head_bottom
    np.testing.assert_array_equal(info["kp2ds"][0, JOINT54["L_Ear"]], [-2, -2, -2])  # never annotated


def test_posetrack_frame_stride(tmp_path):
    fixture = write_posetrack_fixture(tmp_path)
    source = PoseTrack(fixture.root, frame_stride=2)
    names = [source.store.image_record(i)["imgpath"] for i in range(len(source))]
    assert names == [fixture.images[0], fixture.images[2], fixture.images[3]]  # labelled frames 0 and 3, video 2


def test_posetrack_romp_archive(tmp_path):
    fixture = write_posetrack_fixture(tmp_path)
    joints = np.zeros((1, 17, 3))
    joints[0, 9] = [150.0, 100.0, 1]  # COCO-style index 9: left wrist
    joints[0, 2] = [140.0, 20.0, 1]  # head top
    save_romp_npz(fixture.root / "annots_train.npz",
                  annot={fixture.images[0]: [joints, np.array([5])]},
                  sequence_dict={"000001_bonn_train": [0]}, person_ids={"map_dict": {}, "id_number": 6})
    source = PoseTrack(fixture.root, annotations="romp")
    info = source.get_image_info(0)
    assert len(source) == 1 and info["track_ids"].tolist() == [5]
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [150, 100, 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Head_top"]], [140, 20, 1])


def test_posetrack_pipeline_batch(tmp_path):
    batch = pipeline_batch(PoseTrack(write_posetrack_fixture(tmp_path).root))
    assert_valid_batch(batch, 4)
    tracked = batch["valid_masks"][..., 2]
    assert tracked.any() and (batch["track_ids"][tracked] >= 0).all() and not batch["all_persons_labelled"].any()
