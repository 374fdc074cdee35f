"""Human3.6M from ROMP's annots.npz: splits, joints by name, SMPL-regressed vs mocap 3D, errors, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.body.smpl import build_body_model
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.h36m import H36M, parse_image_name
from tests.data.sources.fixtures_3d import (
    H36M_IMAGE,
    H36M_TEST_NAMES,
    assert_valid_batch,
    index_of,
    pipeline_batch,
    write_h36m,
)

L_WRIST, R_ANKLE = JOINT54["L_Wrist"], JOINT54["R_Ankle"]


@pytest.fixture
def h36m_root(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "h36m"
    return root, write_h36m(root)


def test_image_names_give_subject_camera_and_frame():
    assert parse_image_name("S1_Directions 1_0_0.jpg") == (1, 0, 0)
    assert parse_image_name("S11_Walking_Dog 1_3_17.jpg") == (11, 3, 17)  # underscore inside the action
    with pytest.raises(ValueError, match="S1_Directions 1_0_0.jpg"):
        parse_image_name("Directions.jpg")


def test_test_split_reads_mocap_joints_by_name(h36m_root):
    root, annots = h36m_root
    source = H36M(root, "test", frame_stride=1)
    assert len(source) == 2 and source.store.num_persons == 2
    info = source.get_image_info(0)
    raw = annots[H36M_TEST_NAMES[0]]
    kp2d = raw["kp2d"].reshape(32, 2)
    kp3d = raw["kp3d_mono"].reshape(32, 3)
    assert info["imgpath"] == str(root / "images" / H36M_TEST_NAMES[0])
    assert info["image"].shape == (*H36M_IMAGE, 3) and info["img_size"] == H36M_IMAGE
    np.testing.assert_allclose(info["kp2ds"][0, L_WRIST], [70.25 + 3, 55.5, 1.0])  # fixture image 3
    np.testing.assert_allclose(info["kp2ds"][0, R_ANKLE], [30.5, 100.75 + 3, 1.0])
    np.testing.assert_allclose(info["kp2ds"][0, R_ANKLE, :2], kp2d[index_of("h36m_32", "R_Ankle")])
    assert (info["kp2ds"][0, JOINT54["Nose"]] == -2).all()  # H36M has no nose
    np.testing.assert_allclose(info["kp3ds"][0, L_WRIST], [0.31 + 0.3, 0.05, 4.2], rtol=1e-6)
    hips = (kp3d[index_of("h36m_32", "R_Hip")] + kp3d[index_of("h36m_32", "L_Hip")]) / 2
    np.testing.assert_allclose(info["root_trans"][0], hips, rtol=1e-6)
    # Camera 1 of 'S9_Walking 1_1_0.jpg': fx 1149.68, cx 508.85.
    np.testing.assert_allclose(info["camMats"][[0, 0], [0, 2]], [1149.6756591796875, 508.8486328125])
    # Params: the global orient is cam[1], the body pose poses[1][3:66], then 10 betas.
    np.testing.assert_allclose(info["params"][0, :3], raw["cam"][1], rtol=1e-6)
    np.testing.assert_allclose(info["params"][0, 3:66], raw["poses"][1][3:66], rtol=1e-6)
    np.testing.assert_allclose(info["params"][0, 66:], raw["betas"], rtol=1e-6)
    assert info["track_ids"].tolist() == [9]
    assert info["vmask_2d"].tolist() == [[True, True, True]] and info["vmask_3d"].all()
    assert source.get_image_info(1)["track_ids"].tolist() == [11]


def test_train_split_regresses_joints_from_gendered_smpl(h36m_root, shared_cache_dir):
    root, annots = h36m_root
    body_dir = shared_cache_dir / "standin_smpl"
    source = H36M(root, "train", frame_stride=2, body_model_kind="standin", body_model_dir=body_dir)
    assert len(source) == 2  # frames 0 and 2 of S1's three
    info = source.get_image_info(1)
    assert info["imgpath"].endswith("S1_Directions 1_0_2.jpg")
    raw = annots["S1_Directions 1_0_2.jpg"]
    mocap = raw["kp3d_mono"].reshape(32, 3)
    hips = (mocap[index_of("h36m_32", "R_Hip")] + mocap[index_of("h36m_32", "L_Hip")]) / 2
    np.testing.assert_allclose(info["root_trans"][0], hips, rtol=1e-6)
    kp3d = info["kp3ds"][0]
    np.testing.assert_allclose(kp3d[[45, 46]].mean(axis=0), hips, atol=1e-6)
    params = torch.from_numpy(info["params"])
    expected = {}
    for gender in ("female", "male"):  # S1 is female
        model = build_body_model("standin", body_dir, gender=gender, root_align=True)
        expected[gender] = (
            model(global_orient=params[:, :3], body_pose=params[:, 3:66], betas=params[:, 66:])
            .joints54[0]
            .numpy()
        )
    np.testing.assert_allclose(kp3d - hips, expected["female"], atol=1e-5)
    assert np.abs(kp3d - hips - expected["male"]).max() > 1e-3


def test_missing_annotations_name_the_file_and_the_source(tmp_path):
    (tmp_path / "h36m").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        len(H36M(tmp_path / "h36m", "test"))
    message = str(caught.value)
    assert "annots.npz" in message and "vision.imar.ro" in message and "images/" in message


def test_options_are_checked_and_stored_apart(h36m_root):
    root, _ = h36m_root
    with pytest.raises(ValueError, match="kp3d_source"):
        H36M(root, "test", kp3d_source="vicon")
    with pytest.raises(ValueError, match="body_model_dir"):
        H36M(root, "train")
    assert H36M(root, "test", frame_stride=1).store_path != H36M(root, "test", frame_stride=5).store_path


def test_pipeline_batch(h36m_root):
    root, _ = h36m_root
    batch = pipeline_batch(H36M(root, "test"))
    assert_valid_batch(batch, [1, 1], kp3d=True)
    assert batch["valid_masks"][:, 0].all() and batch["track_ids"][:, 0].tolist() == [9, 11]
    assert batch["all_persons_labelled"].all()
