"""COCO 2014 keypoints + EFT fits: official json and ROMP's archives, ROMP's filter, fit matching, the pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.coco import COCO, PersonFilter
from romp_hydra.data.store import PackedStore
from tests.data.sources.fixtures_2d import assert_valid_batch, pipeline_batch, write_coco_fixture

EFT_MASK = [False, True, True, False, False, False]


def test_official_json_and_eft_json(tmp_path):
    fixture = write_coco_fixture(tmp_path, eft="json")
    source = COCO(fixture.root)
    assert len(source) == 2 and source.store.num_persons == 3  # image 3 (95 px person) is filtered out

    info = source.get_image_info(0)
    a, b = fixture.people[fixture.images[0]]
    assert info["imgpath"] == str(fixture.root / fixture.images[0]) and info["ds"] == "coco"
    assert info["image"].shape == (240, 320, 3) and info["img_size"] == (240, 320)
    kp2ds = info["kp2ds"]
    assert kp2ds.shape == (2, 54, 3)  # the annotation without keypoints and the crowd one are dropped
    np.testing.assert_allclose(kp2ds[0, JOINT54["L_Wrist"]], [*a["left_wrist"], 1])
    np.testing.assert_allclose(kp2ds[1, JOINT54["R_Ankle"]], [*b["right_ankle"], 1])
    np.testing.assert_allclose(kp2ds[0, JOINT54["L_Hip"]], [*a["left_hip"], 1])  # dataset hips: 46, not 1
    assert a["left_wrist"][0] > a["right_wrist"][0]  # the fixture faces the camera: its left is the viewer's right
    np.testing.assert_array_equal(kp2ds[0, JOINT54["L_Ear"]], [-2, -2, -2])  # v = 0: not labelled
    np.testing.assert_allclose(kp2ds[0, JOINT54["R_Knee"]], [*a["right_knee"], 1])  # v = 1 (occluded) is kept
    np.testing.assert_array_equal(kp2ds[0, JOINT54["Head_top"]], [-2, -2, -2])  # COCO has none

    assert info["vmask_2d"].tolist() == [[True, True, True]] * 2
    assert info["track_ids"].tolist() == [0, 1]
    assert source.get_image_info(1)["track_ids"].tolist() == [2]
    # A has its EFT fit; B gets none: the only other fit of the image is far away (ROMP would give it to B).
    assert info["vmask_3d"].tolist() == [EFT_MASK, [False] * 6]
    np.testing.assert_allclose(info["params"][0], fixture.params[(fixture.images[0], 0)], atol=1e-5)
    assert (info["params"][1] == -10).all()
    second = source.get_image_info(1)
    np.testing.assert_allclose(second["params"][0], fixture.params[(fixture.images[1], 0)], atol=1e-5)


def test_romp_archives_pack_to_the_same_annotations(tmp_path):
    official = write_coco_fixture(tmp_path / "a", eft="json")
    romp = write_coco_fixture(tmp_path / "b", eft="npz", romp_archives=True)
    from_json, from_romp = COCO(official.root), COCO(romp.root, annotations="romp")
    assert from_romp.annotation_kind == "romp" and len(from_romp) == len(from_json) == 2
    for index in range(2):
        x, y = from_json.store.image_record(index), from_romp.store.image_record(index)
        assert x["img_size"] == y["img_size"]  # read from the image header for ROMP's archive
        for name in ("kp2ds", "vmask_2d", "vmask_3d", "track_ids"):
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)
        np.testing.assert_allclose(x["params"], y["params"], atol=1e-5)


def test_without_a_distance_limit_the_stray_fit_goes_to_b(tmp_path):
    """eft_max_offset=null is ROMP's unlimited assignment: B receives the far-away fit of another person."""
    fixture = write_coco_fixture(tmp_path, eft="json")
    info = COCO(fixture.root, eft_max_offset=None).get_image_info(0)
    assert info["vmask_3d"][:, 1].tolist() == [True, True]
    np.testing.assert_allclose(info["params"][1], fixture.extra["stray_params"], atol=1e-5)


def test_filter_options_change_the_selection_and_the_store(tmp_path):
    fixture = write_coco_fixture(tmp_path, eft=None)
    default = COCO(fixture.root, eft=False)
    lower = COCO(fixture.root, eft=False, min_image_height=80)
    unfiltered = COCO(fixture.root, eft=False, filter_images=False)
    assert len(default) == 2 and len(lower) == 3 and len(unfiltered) == 3
    assert default.store_path != lower.store_path  # another option, another store: no stale reuse
    assert default.get_image_info(0)["params"] is None
    assert not default.get_image_info(0)["vmask_3d"].any()


def test_person_filter_follows_romp():
    person = np.zeros((17, 3))
    person[[0, 16], 1] = [10, 150]  # nose at y=10, right ankle at y=150: 140 px tall
    person[[0, 16], 2] = [2, 1]  # visibility sum 3
    faint = np.zeros((17, 3))
    assert PersonFilter().select([faint, person]) == [1]  # sum(v) = 0 is not a person
    assert PersonFilter(min_image_height=140).select([person]) is None  # must be taller than the limit
    person[16, 2] = 0  # sum 2 < 3, and one labelled joint has no extent
    assert PersonFilter().select([person]) is None
    assert PersonFilter(filter_images=False).select([faint, person]) == [1]


def test_missing_data_names_what_belongs_there(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="coco"):
        COCO(tmp_path / "nowhere")
    fixture = write_coco_fixture(tmp_path, eft=None)
    with pytest.raises(DatasetNotFoundError, match=r"eft_annots\.npz.*eft=false") as err:
        COCO(fixture.root)
    assert "cocodataset.org" in str(err.value)
    with pytest.raises(DatasetNotFoundError, match=r"annots_val2014\.npz"):
        COCO(fixture.root, split="val2014", eft=False)


def test_a_packed_dataset_needs_no_annotation_files(tmp_path):
    fixture = write_coco_fixture(tmp_path, eft="json")
    expected = COCO(fixture.root).get_image_info(0)
    (fixture.root / "annotations" / "person_keypoints_train2014.json").unlink()
    (fixture.root / "eft_fit" / "COCO2014-All-ver01.json").unlink()
    source = COCO(fixture.root)
    info = source.get_image_info(0)
    np.testing.assert_array_equal(info["kp2ds"], expected["kp2ds"])
    np.testing.assert_array_equal(info["params"], expected["params"])
    with pytest.raises(DatasetNotFoundError, match="person_keypoints_train2014.json"):
        source.pack_data()  # packing again needs them back
    with pytest.raises(DatasetNotFoundError):
        COCO(fixture.root, min_image_height=100)  # another option: another store, which is not packed


def test_store_is_plain_arrays(tmp_path):
    fixture = write_coco_fixture(tmp_path, eft="json")
    path = COCO(fixture.root).pack_data()
    with np.load(path, allow_pickle=False) as archive:
        assert "params" in archive.files and archive["kp2d"].shape == (3, 54, 3)
    assert len(PackedStore(path)) == 2


def test_pipeline_builds_a_valid_batch(tmp_path):
    source = COCO(write_coco_fixture(tmp_path, eft="json").root)
    batch = pipeline_batch(source)
    assert_valid_batch(batch, 2)
    assert batch["dataset"] == ["coco", "coco"] and batch["all_persons_labelled"].all()
    fitted = batch["valid_masks"][..., 3]
    assert fitted.any() and (batch["params"][fitted][:, :66] != -10).all()
