"""MPII (HRNet json, 1-based pixels) and LSP (hr-lspet joints.mat), each with EFT fits."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.lsp import LSP
from romp_hydra.data.sources.mpii import MPII
from romp_hydra.data.store import StoreFormatError
from tests.data.sources.fixtures_2d import (
    assert_valid_batch,
    pipeline_batch,
    write_lsp_fixture,
    write_mpii_fixture,
)

EFT_MASK = [False, True, True, False, False, False]


@pytest.mark.parametrize("eft_form", ["json", "npz"])
def test_mpii_with_eft(tmp_path, eft_form):
    fixture = write_mpii_fixture(tmp_path, eft=eft_form)
    source = MPII(fixture.root)
    assert len(source) == 2 and source.store.num_persons == 3  # image 3 has no fit (eft_images_only)

    info = source.get_image_info(0)
    a, b = fixture.people[fixture.images[0]]
    assert info["imgpath"] == str(fixture.root / "images/000000001.jpg") and info["kp2ds"].shape == (2, 54, 3)
    # 1-based MATLAB pixels in the json: 1 is subtracted, so the fixture's 0-based positions come back.
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [*a["left_wrist"], 1])
    np.testing.assert_allclose(info["kp2ds"][1, JOINT54["R_Ankle"]], [*b["right_ankle"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Neck"]], [*a["upper_neck"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Thorax_MPII"]], [*a["thorax"], 1])
    np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Pelvis"]], [*a["pelvis"], 1])
    np.testing.assert_array_equal(info["kp2ds"][1, JOINT54["Head_top"]], [-2, -2, -2])  # joints_vis 0
    assert info["vmask_2d"].tolist() == [[True, False, True]] * 2 and info["track_ids"].tolist() == [-1, -1]
    assert info["vmask_3d"].tolist() == [EFT_MASK, [False] * 6]
    np.testing.assert_allclose(info["params"][0], fixture.params[(fixture.images[0], 0)], atol=1e-5)
    second = source.get_image_info(1)
    np.testing.assert_allclose(second["params"][0], fixture.params[(fixture.images[1], 0)], atol=1e-5)


def test_mpii_without_eft_keeps_every_image(tmp_path):
    fixture = write_mpii_fixture(tmp_path, eft=None)
    with pytest.raises(DatasetNotFoundError, match="MPII_ver01.json"):
        MPII(fixture.root)
    source = MPII(fixture.root, eft=False)
    assert len(source) == 3 and not source.get_image_info(2)["vmask_3d"].any()
    with pytest.raises(ValueError, match="split='val'"):
        MPII(fixture.root, split="val", eft=False)


def test_mpii_pipeline_batch(tmp_path):
    assert_valid_batch(pipeline_batch(MPII(write_mpii_fixture(tmp_path).root)), 2)


def test_lsp_with_eft(tmp_path):
    fixture = write_lsp_fixture(tmp_path)
    source = LSP(fixture.root)
    assert len(source) == 2 and source.store.num_persons == 2  # im00003 has no EFT fit
    for index, name in enumerate(fixture.images):
        info = source.get_image_info(index)
        person = fixture.people[name][0]
        assert info["imgpath"] == str(fixture.root / name) and info["kp2ds"].shape == (1, 54, 3)
        assert info["image"].shape == (230, 200 + 20 * index, 3)  # im{k} pairs with row k-1 of joints.mat
        np.testing.assert_allclose(info["kp2ds"][0, JOINT54["L_Wrist"]], [*person["left_wrist"], 1])
        np.testing.assert_allclose(info["kp2ds"][0, JOINT54["R_Ankle"]], [*person["right_ankle"], 1])
        np.testing.assert_allclose(info["kp2ds"][0, JOINT54["Neck_LSP"]], [*person["neck"], 1])
        assert info["vmask_2d"].tolist() == [[True, False, False]]  # only one person labelled: no centre loss
        assert info["vmask_3d"].tolist() == [EFT_MASK]
        np.testing.assert_allclose(info["params"][0], fixture.params[(name, 0)], atol=1e-5)
    first = source.get_image_info(0)["kp2ds"][0]
    np.testing.assert_array_equal(first[JOINT54["R_Elbow"]], [-2, -2, -2])  # visibility 0
    assert LSP.multi_person is False and LSP.scale_range == (1.6, 2.0)


def test_lsp_pairs_images_by_number_when_one_is_missing(tmp_path):
    fixture = write_lsp_fixture(tmp_path, eft=None)
    (fixture.root / "im00001.png").unlink()
    source = LSP(fixture.root, eft=False)
    assert len(source) == 2
    record = source.store.image_record(0)
    assert record["imgpath"] == "im00002.png"
    np.testing.assert_allclose(record["kp2ds"][0, JOINT54["L_Wrist"], :2], fixture.people["im00002.png"][0]["left_wrist"])


def test_lsp_rejects_the_original_lsp_layout(tmp_path):
    fixture = write_lsp_fixture(tmp_path, eft=None)
    savemat(str(fixture.root / "joints.mat"), {"joints": np.zeros((3, 14, 3))})
    with pytest.raises(StoreFormatError, match="original LSP"):
        LSP(fixture.root, eft=False).pack_data()


def test_lsp_pipeline_batch(tmp_path):
    batch = pipeline_batch(LSP(write_lsp_fixture(tmp_path).root))
    assert_valid_batch(batch, 2)
    assert not batch["all_persons_labelled"].any()
