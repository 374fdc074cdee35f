"""3DPW: official sequence files (3D from the gendered body model, camera frame) and VIBE's joblib db."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.body.smpl import build_body_model
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.pw3d import PW3D
from tests.data.sources.fixtures_3d import (
    PW3D_IMAGE,
    assert_valid_batch,
    index_of,
    pipeline_batch,
    pw3d_camera,
    write_pw3d_sequence,
    write_vibe_db,
)

L_WRIST = JOINT54["L_Wrist"]


def expected_camera_joints(data: dict, actor: int, frame: int, body_dir, gender: str) -> np.ndarray:
    """The actor's 54 joints in the camera: body model (no root alignment) + trans, then cam_poses."""
    pose = torch.tensor(data["poses"][actor][frame], dtype=torch.float32)[None]
    betas = torch.tensor(data["betas"][actor][:10], dtype=torch.float32)[None]
    model = build_body_model("standin", body_dir, gender=gender, root_align=False)
    world = model(global_orient=pose[:, :3], body_pose=pose[:, 3:66], betas=betas).joints54[0].numpy()
    world = world + data["trans"][actor][frame]
    camera = pw3d_camera(frame)
    return world @ camera[:3, :3].T + camera[:3, 3]


def test_sequence_files_give_camera_frame_joints_and_params(tmp_path, shared_cache_dir):
    root = tmp_path / "3DPW"
    data = write_pw3d_sequence(root, "test", "downtown_walking_00")
    body_dir = shared_cache_dir / "standin_smpl"
    source = PW3D(root, "test", body_model_kind="standin", body_model_dir=body_dir)
    # Frames 0, 1: both actors; frame 2: actor 1 undetected; frame 3: actor 0's camera pose invalid.
    assert len(source) == 4 and source.store.num_persons == 6
    persons = [len(source.store.image_record(i)["kp2ds"]) for i in range(4)]
    assert persons == [2, 2, 1, 1]

    info = source.get_image_info(1)
    assert info["imgpath"] == str(root / "imageFiles" / "downtown_walking_00" / "image_00001.jpg")
    assert info["img_size"] == PW3D_IMAGE
    np.testing.assert_allclose(info["kp2ds"][:, L_WRIST], [[41.5, 50.25, 0.8], [76.5, 50.25, 0.8]], rtol=1e-6)
    coco_r_ankle = data["poses2d"][1][1][:2, index_of("coco_18", "R_Ankle")]
    np.testing.assert_allclose(info["kp2ds"][1, JOINT54["R_Ankle"], :2], coco_r_ankle, rtol=1e-6)
    for actor, gender in ((0, "female"), (1, "male")):
        expected = expected_camera_joints(data, actor, 1, body_dir, gender)
        np.testing.assert_allclose(info["kp3ds"][actor], expected, atol=1e-5)
        np.testing.assert_allclose(info["root_trans"][actor], expected[[45, 46]].mean(axis=0), atol=1e-5)
    # The global orient is rotated into the camera; body pose and betas are copied.
    orient = Rotation.from_matrix(pw3d_camera(1)[:3, :3]) * Rotation.from_rotvec(data["poses"][0][1][:3])
    np.testing.assert_allclose(
        Rotation.from_rotvec(info["params"][0, :3]).as_matrix(), orient.as_matrix(), atol=1e-5
    )
    np.testing.assert_allclose(info["params"][0, 3:66], data["poses"][0][1][3:66], rtol=1e-6)
    np.testing.assert_allclose(info["params"][1, 66:], data["betas"][1], rtol=1e-6)
    np.testing.assert_allclose(info["camMats"], data["cam_intrinsics"])
    assert info["vmask_2d"].tolist() == [[True, False, False]] * 2  # only the tracked people are labelled
    assert info["vmask_3d"].all()

    frame3 = source.get_image_info(3)  # only actor 1 (male) left
    np.testing.assert_allclose(
        frame3["kp3ds"][0], expected_camera_joints(data, 1, 3, body_dir, "male"), atol=1e-5
    )


def test_frame_stride_and_store_names(tmp_path, shared_cache_dir):
    root = tmp_path / "3DPW"
    write_pw3d_sequence(root, "train", "courtyard_basketball_00")
    body_dir = shared_cache_dir / "standin_smpl"
    source = PW3D(root, "train", frame_stride=2, body_model_kind="standin", body_model_dir=body_dir)
    assert [source.store.image_record(i)["imgpath"][-9:] for i in range(len(source))] == [
        "00000.jpg",
        "00002.jpg",
    ]
    assert source.store_path.name == "pw3d_train_sequence_stride2_standin.npz"


def test_vibe_test_db(tmp_path):
    root = tmp_path / "3DPW"
    rows = [
        ("office_phoneCall_00_0", 0),
        ("office_phoneCall_00_1", 0),
        ("office_phoneCall_00_0", 5),
        ("office_phoneCall_00_1", 5),
    ]  # the last row is flagged not valid
    db = write_vibe_db(root, "test", rows, joints3d=14)
    source = PW3D(root, "test", gt_source="vibe")
    assert len(source) == 2 and source.store.num_persons == 3
    info = source.get_image_info(0)
    assert info["imgpath"] == str(root / "imageFiles" / "office_phoneCall_00" / "image_00000.jpg")
    np.testing.assert_allclose(info["kp2ds"][:, L_WRIST], [[55.5, 60.25, 1], [56.5, 60.25, 1]])
    np.testing.assert_allclose(info["kp3ds"][1, L_WRIST], [0.31, 0.02, 0.1], rtol=1e-6)
    assert (info["kp3ds"][0, JOINT54["Pelvis"]] == -2).all()  # LSP-14 has no pelvis
    np.testing.assert_allclose(
        info["params"][1], np.concatenate([db["pose"][1, :66], db["shape"][1]]), rtol=1e-6
    )
    assert info["vmask_3d"].tolist() == [[True, True, True, True, True, False]] * 2
    assert info["root_trans"] is None and "camMats" not in info
    assert len(source.get_image_info(1)["kp2ds"]) == 1


def test_vibe_train_db_slices_the_lsp_joints(tmp_path):
    root = tmp_path / "3DPW"
    write_vibe_db(root, "train", [("outdoors_climbing_00_0", 3), ("outdoors_climbing_00_0", 4)], joints3d=49)
    info = PW3D(root, "train", gt_source="vibe").get_image_info(0)
    np.testing.assert_allclose(info["kp3ds"][0, L_WRIST], [0.3, 0.02, 0.1], rtol=1e-6)


def test_errors_name_what_is_missing(tmp_path):
    (tmp_path / "3DPW").mkdir()
    with pytest.raises(DatasetNotFoundError, match="sequenceFiles/validation"):
        len(PW3D(tmp_path / "3DPW", "val", body_model_kind="standin", body_model_dir=tmp_path / "body"))
    with pytest.raises(DatasetNotFoundError, match="3dpw_test_db.pt"):
        len(PW3D(tmp_path / "3DPW", "test", gt_source="vibe"))
    with pytest.raises(ValueError, match="gt_source"):
        PW3D(tmp_path / "3DPW", "test", gt_source="eft")


def test_pipeline_batch(tmp_path):
    root = tmp_path / "3DPW"
    write_vibe_db(
        root, "test", [("flat_guitar_01_0", 0), ("flat_guitar_01_1", 0), ("flat_guitar_01_0", 1)], joints3d=14
    )
    batch = pipeline_batch(PW3D(root, "test", gt_source="vibe"), train=True)
    assert_valid_batch(batch, [2], kp3d=True)
    assert batch["all_persons_labelled"].tolist() == [False]
    assert batch["valid_masks"][0, :2, 3:6].all()  # SMPL pose and shape supervise
