"""MPI-INF-3DHP: the raw release (annot.mat + calibration + videos), ROMP's annots.npz, the v7.3 test set."""

from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.sources.mpiinf import (
    MPIINF3DHP,
    MPIINF3DHPTest,
    read_camera_calibration,
    read_v73_annotations,
)
from tests.data.sources.fixtures_3d import (
    MPIINF_FOCAL,
    MPIINF_SIZE,
    MPIINF_TEST_SIZE,
    assert_valid_batch,
    index_of,
    pipeline_batch,
    write_mpiinf_romp,
    write_mpiinf_sequence,
    write_mpiinf_test,
)

L_WRIST, R_ANKLE, PELVIS = JOINT54["L_Wrist"], JOINT54["R_Ankle"], JOINT54["Pelvis"]


def test_camera_calibration_is_read_by_keyword(tmp_path):
    write_mpiinf_sequence(tmp_path, 1, 1, cameras=())
    calibration = read_camera_calibration(tmp_path / "S1" / "Seq1" / "camera.calibration")
    assert sorted(calibration) == list(range(14))
    camera = calibration[3]
    assert (camera.width, camera.height) == (MPIINF_SIZE, MPIINF_SIZE)
    np.testing.assert_allclose(camera.intrinsic[:3, :3], [[53, 0, 32], [0, 53, 31], [0, 0, 1]])
    assert camera.extrinsic[2, 3] == 3000.0


def test_raw_sequence_extracts_frames_and_maps_joints(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    written = write_mpiinf_sequence(root, 1, 1, cameras=(0, 2), out_of_view=(2, 1))
    write_mpiinf_sequence(root, 8, 1, cameras=(0,))
    source = MPIINF3DHP(root, "train", frame_stride=1, cameras=(0, 2))
    # Camera 0: frames 0, 1, 2; camera 2: frame 1 has the right ankle out of view -> 0 and 2. S8 is 'val'.
    assert len(source) == 5
    names = [source.store.image_record(i)["imgpath"] for i in range(5)]
    assert names == [
        f"images/S1_Seq1_video_{c}_F{f:06d}.jpg" for c, f in ((0, 0), (0, 1), (0, 2), (2, 0), (2, 2))
    ]
    info = source.get_image_info(4)  # camera 2, frame 2
    assert info["image"].shape == (MPIINF_SIZE, MPIINF_SIZE, 3)
    assert abs(float(info["image"].mean()) - 200) < 8  # frame 2 of the video is grey 200
    np.testing.assert_allclose(info["kp2ds"][0, L_WRIST], [40.5 + 2, 20.25 + 2, 1.0])
    np.testing.assert_allclose(info["kp2ds"][0, R_ANKLE], [25.75, 49.5 + 2, 1.0])
    kp3d_mm = written["annot3"][2, 0][2].reshape(28, 3)
    np.testing.assert_allclose(
        info["kp3ds"][0, PELVIS], kp3d_mm[index_of("mpi_inf_28", "Pelvis")] / 1000, rtol=1e-6
    )
    hips = (kp3d_mm[index_of("mpi_inf_28", "R_Hip")] + kp3d_mm[index_of("mpi_inf_28", "L_Hip")]) / 2000
    np.testing.assert_allclose(info["root_trans"][0], hips, rtol=1e-6)
    np.testing.assert_allclose(
        info["camMats"], [[MPIINF_FOCAL + 2, 0, 32], [0, MPIINF_FOCAL + 2, 31], [0, 0, 1]]
    )
    assert info["track_ids"].tolist() == [1]
    assert info["vmask_2d"].tolist() == [[True, True, True]]
    assert info["vmask_3d"].tolist() == [[True, False, False, False, False, True]]

    validation = MPIINF3DHP(root, "val", frame_stride=1, cameras=(0,))
    assert len(validation) == 3 and validation.get_image_info(0)["track_ids"].tolist() == [8]


def test_frame_stride_keeps_romp_frames(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    write_mpiinf_sequence(root, 2, 2, cameras=(0,), frames=3)
    source = MPIINF3DHP(root, "train", frame_stride=2, cameras=(0,))
    assert [source.store.image_record(i)["imgpath"] for i in range(len(source))] == [
        "images/S2_Seq2_video_0_F000001.jpg"
    ]  # f % 2 == 1


def test_missing_video_names_it(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    write_mpiinf_sequence(root, 1, 1, cameras=(0,))
    with pytest.raises(DatasetNotFoundError, match="video_4.avi"):
        len(MPIINF3DHP(root, "train", frame_stride=1, cameras=(0, 4)))


def test_romp_npz_is_the_fallback(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    names = [
        "S2_Seq1_video_0_F000001.jpg",
        "S2_Seq1_video_0_F000005.jpg",
        "S2_Seq1_video_0_F000011.jpg",
        "S8_Seq2_video_3_F000001.jpg",
    ]
    annots = write_mpiinf_romp(root, names)
    source = MPIINF3DHP(root, "train")  # stride 10: frames 1 and 11 of S2
    assert len(source) == 2
    info = source.get_image_info(1)
    assert info["imgpath"].endswith("S2_Seq1_video_0_F000011.jpg")
    np.testing.assert_allclose(info["kp2ds"][0, L_WRIST], [40.5 + 2, 20.25, 1.0])
    np.testing.assert_allclose(
        info["kp3ds"][0, PELVIS], annots[names[2]]["kp3d"][index_of("mpi_inf_28", "Pelvis")], rtol=1e-6
    )
    np.testing.assert_allclose(info["camMats"], [[51, 0, 30], [0, 52, 29], [0, 0, 1]])
    assert len(MPIINF3DHP(root, "val")) == 1


def test_nothing_on_disk_names_both_ways_in(tmp_path):
    (tmp_path / "mpi").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        len(MPIINF3DHP(tmp_path / "mpi", "train"))
    assert "annots.npz" in str(caught.value) and "annot.mat" in str(caught.value)


def test_v73_test_set(tmp_path):
    root = tmp_path / "mpi_inf_3dhp_test_set"
    written = write_mpiinf_test(root, 1, valid=[1, 0, 1, 1], out_of_view_frame=3)
    arrays = read_v73_annotations(root / "TS1" / "annot_data.mat")
    np.testing.assert_allclose(arrays["annot2"], written["annot2"])
    assert arrays["valid_frame"].tolist() == [True, False, True, True]

    source = MPIINF3DHPTest(root)
    assert len(source) == 2  # frame 1 invalid, frame 3 out of view
    info = source.get_image_info(1)
    assert info["imgpath"] == str(root / "TS1" / "imageSequence" / "img_000003.jpg")
    assert info["img_size"] == MPIINF_TEST_SIZE
    np.testing.assert_allclose(info["kp2ds"][0, L_WRIST], [60.5 + 2, 33.25, 1.0])
    assert (info["kp2ds"][0, JOINT54["Head_top"]] == -2).all()  # the misaligned head top is not used
    np.testing.assert_allclose(
        info["kp3ds"][0, L_WRIST], [0.251, 0.0125, 4.102], rtol=1e-6
    )  # universal skeleton
    hips = (
        written["annot3"][2][index_of("mpi_inf_test_17", "R_Hip")]
        + written["annot3"][2][index_of("mpi_inf_test_17", "L_Hip")]
    ) / 2000
    np.testing.assert_allclose(info["root_trans"][0], hips, rtol=1e-6)
    np.testing.assert_allclose(
        info["camMats"], [[1499.2054687744, 0, 48], [0, 1499.2054687744, 36], [0, 0, 1]]
    )
    assert info["track_ids"].tolist() == [1]


def test_test_set_romp_npz(tmp_path):
    root = tmp_path / "mpi_inf_3dhp_test_set"
    write_mpiinf_test(root, 5, valid=[1, 1], out_of_view_frame=None)
    (root / "TS5" / "annot_data.mat").unlink()
    univ = np.full((17, 3), 0.5)
    np.savez(
        root / "annots.npz",
        annots={
            "TS5/imageSequence/img_000002.jpg": {
                "kp2d": np.full((17, 2), 10.0),
                "kp3d": np.full((17, 3), 2.0),
                "univ_kp3d": univ,
            }
        },
    )
    info = MPIINF3DHPTest(root).get_image_info(0)
    assert info["imgpath"].endswith("TS5/imageSequence/img_000002.jpg")
    np.testing.assert_allclose(info["kp3ds"][0, PELVIS], [0.5, 0.5, 0.5])
    assert info["camMats"][0, 0] == pytest.approx(1683.98345952)


def test_pipeline_batches(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    write_mpiinf_sequence(root, 1, 1, cameras=(0,))
    assert_valid_batch(
        pipeline_batch(MPIINF3DHP(root, "train", frame_stride=1, cameras=(0,))), [1, 1, 1], kp3d=True
    )
    test_root = tmp_path / "test_set"
    write_mpiinf_test(test_root, 2, valid=[1, 1], out_of_view_frame=None)
    assert_valid_batch(pipeline_batch(MPIINF3DHPTest(test_root), train=False), [1, 1], kp3d=True)
