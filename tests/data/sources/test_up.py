"""UP-3D: per-sample files, ROMP's quality / dataset filter, SMPL pose targets."""
from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.up import UP3D
from tests.data.sources.fixtures_2d import assert_valid_batch, pipeline_batch, write_up_fixture


def test_up_keeps_high_quality_non_fashionpose_samples(tmp_path):
    fixture = write_up_fixture(tmp_path)
    source = UP3D(fixture.root)
    assert len(source) == 2 and fixture.images == ["00000_image.png", "00003_image.png"]
    for index, name in enumerate(fixture.images):
        info = source.get_image_info(index)
        person = fixture.people[name][0]
        assert info["imgpath"] == str(fixture.root / name) and info["kp2ds"].shape == (1, 54, 3)
        np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [*person["left_wrist"], 1])
        np.testing.assert_allclose(info["kp2ds"][0, JOINT54["R_Ankle"]], [*person["right_ankle"], 1])
        assert info["vmask_2d"].tolist() == [[True, False, False]]
        assert info["vmask_3d"].tolist() == [[False, True, True, False, False, False]]
        np.testing.assert_allclose(info["params"][0], fixture.params[(name, 0)], atol=1e-6)
    np.testing.assert_array_equal(source.get_image_info(1)["kp2ds"][0, JOINT54["Head_top"]], [-2, -2, -2])
    assert UP3D.multi_person is False


def test_up_filter_options_and_split_all(tmp_path):
    fixture = write_up_fixture(tmp_path)
    assert len(UP3D(fixture.root, qualities=["high", "medium"])) == 3
    assert len(UP3D(fixture.root, exclude_datasets=[])) == 3
    (fixture.root / "train.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"train\.txt"):
        len(UP3D(fixture.root))
    assert len(UP3D(fixture.root, split="all")) == 2


def test_up_pipeline_batch(tmp_path):
    batch = pipeline_batch(UP3D(write_up_fixture(tmp_path).root))
    assert_valid_batch(batch, 2)
    posed = batch["valid_masks"][..., 4]
    assert posed.sum() == 2 and (batch["params"][posed][:, 3:66] != -10).all()
