"""The per-sample pipeline end to end on hand-built img_info (romp_hydra.data.pipeline)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch

from romp_hydra import batch as masks
from romp_hydra.body.joint_sets import FLIP54, JOINT54
from romp_hydra.data.augment import AugmentParams
from romp_hydra.data.centermap import center_to_cell
from romp_hydra.data.collate import collate_samples
from romp_hydra.data.pipeline import SamplePipeline
from romp_hydra.data.sample import ImgInfoError, validate_img_info
from romp_hydra.geometry.rotations import flip_smpl_pose_np, inplane_rotation_matrix_np
from tests.data.builders import gradient_image, make_info

# A standing person seen from the front, as (x, y) offsets in units of its height from the pelvis.
BODY_LAYOUT: dict[str, tuple[float, float]] = {
    "Head_top": (0.0, -0.50), "Neck": (0.0, -0.32), "Neck_LSP": (0.0, -0.32),
    "R_Shoulder": (-0.12, -0.30), "L_Shoulder": (0.12, -0.30), "R_Elbow": (-0.16, -0.15),
    "L_Elbow": (0.16, -0.15), "R_Wrist": (-0.18, 0.0), "L_Wrist": (0.18, 0.0), "Pelvis": (0.0, 0.0),
    "R_Hip": (-0.07, 0.0), "L_Hip": (0.07, 0.0), "R_Knee": (-0.08, 0.25), "L_Knee": (0.08, 0.25),
    "R_Ankle": (-0.08, 0.50), "L_Ankle": (0.08, 0.50),
}
BOX = np.array([[150.0, 20.0], [190.0, 140.0], [155.0, 30.0], [185.0, 130.0]], dtype=np.float32)


def pose_kp2d(pelvis_xy: tuple[float, float], height: float, vis: float = 1.0) -> np.ndarray:
    """(54, 3) [x, y, vis] pixels for BODY_LAYOUT; other joints -2."""
    kp = np.full((54, 3), -2.0, dtype=np.float32)
    for name, (dx, dy) in BODY_LAYOUT.items():
        kp[JOINT54[name]] = (pelvis_xy[0] + dx * height, pelvis_xy[1] + dy * height, vis)
    return kp


def pose_kp3d() -> np.ndarray:
    """(54, 3) metres for BODY_LAYOUT (1.7 m tall, a little depth variation); other joints -2."""
    kp = np.full((54, 3), -2.0, dtype=np.float32)
    for index, (name, (dx, dy)) in enumerate(BODY_LAYOUT.items()):
        kp[JOINT54[name]] = (dx * 1.7 + 0.3, dy * 1.7 - 0.2, 3.0 + 0.01 * index)
    return kp


def smpl_params(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-0.5, 0.5, 66), rng.uniform(-1.0, 1.0, 10)]).astype(np.float32)




def data_cfg(input_size: int = 64, max_person: int = 4, car: bool = True, **augment: Any) -> dict[str, Any]:
    """A small cfg.data; every augmentation probability is 0 unless given."""
    augment_cfg = {"enabled": True, "flip_prob": 0.0, "rotate_prob": 0.0, "max_rotate_deg": 30.0,
                   "crop_prob_2d": 0.0, "crop_prob_3d": 0.0, "color_jitter_prob": 0.0,
                   "color_jitter_strength": 0.1, "occlusion_prob": 0.0}
    augment_cfg.update(augment)
    return {"input_size": input_size, "centermap_size": input_size // 8, "max_person": max_person,
            "collision_aware_centermap": car, "collision_factor": 0.2, "augment": augment_cfg}


def build(info: dict, augment: AugmentParams, train: bool = False, **cfg: Any) -> dict[str, Any]:
    pipeline = SamplePipeline(data_cfg(**cfg), train=train)
    return pipeline.build_sample(validate_img_info(info, "toy", 0), augment)


def mirror_kp(kp: np.ndarray) -> np.ndarray:
    """Mirror normalised 2D or root-centred 3D joints (..., 54, D): negate x where present, swap sides."""
    out = kp.copy()
    present = kp[..., 0] != -2
    out[..., 0] = np.where(present, -kp[..., 0], -2)
    return out[..., list(FLIP54), :]


EXPECTED_SHAPES = {
    "image": ((3, 64, 64), np.uint8), "kp2d": ((4, 54, 2), np.float32), "kp3d": ((4, 54, 3), np.float32),
    "params": ((4, 76), np.float32), "centers": ((4, 2), np.float32), "person_mask": ((4,), np.bool_),
    "valid_masks": ((4, 8), np.bool_), "track_ids": ((4,), np.int64), "centermap": ((1, 8, 8), np.float32),
    "all_persons_labelled": ((), np.bool_), "offsets": ((10,), np.float32), "affine": ((2, 3), np.float32),
    "rot_flip": ((2,), np.float32), "index": ((), np.int64),
}


def test_sample_and_batch_follow_the_contract():
    info = make_info(poses=[pose_kp2d((80, 80), 100)], boxes=[BOX], kp3ds=[pose_kp3d()], params=[smpl_params()],
                     track_ids=[3, -1])
    pipeline = SamplePipeline(data_cfg(flip_prob=0.5, rotate_prob=1.0, crop_prob_2d=1.0, color_jitter_prob=1.0,
                                       occlusion_prob=1.0), train=True)
    sample = pipeline(info, np.random.default_rng(0), index=17)
    assert set(sample) == set(EXPECTED_SHAPES) | {"dataset", "imgpath"}
    for key, (shape, dtype) in EXPECTED_SHAPES.items():
        assert np.asarray(sample[key]).shape == shape, key
        assert np.asarray(sample[key]).dtype == dtype, key
    assert sample["dataset"] == "toy" and sample["imgpath"] == "/fake/toy/img.jpg" and sample["index"] == 17
    np.testing.assert_array_equal(sample["track_ids"], [3, -1, -1, -1])
    batch = collate_samples([sample, pipeline(info, np.random.default_rng(1))])
    for key, (shape, dtype) in EXPECTED_SHAPES.items():
        assert isinstance(batch[key], torch.Tensor) and tuple(batch[key].shape) == (2, *shape), key
    assert batch["image"].dtype == torch.uint8 and batch["valid_masks"].dtype == torch.bool
    assert batch["dataset"] == ["toy", "toy"] and batch["index"].tolist() == [17, -1]


def test_collate_rejects_mismatched_samples():
    with pytest.raises(ValueError, match="different keys"):
        collate_samples([{"a": np.zeros(2)}, {"b": np.zeros(2)}])
    with pytest.raises(ValueError, match="'a'"):
        collate_samples([{"a": np.zeros(2)}, {"a": np.zeros(3)}])


def test_eval_letterbox_of_a_square_image_is_linear():
    kp = pose_kp2d((48, 40), 50)
    info = make_info(image=gradient_image(96, 96), poses=[kp])
    sample = SamplePipeline(data_cfg(), train=False)(info, np.random.default_rng(0))
    present = kp[:, 2] > 0
    np.testing.assert_allclose(sample["kp2d"][0, present], 2.0 * kp[present, :2] / 96 - 1.0, atol=1e-6)
    assert np.all(sample["kp2d"][0, ~present] == -2)
    np.testing.assert_allclose(sample["affine"], [[64 / 96, 0, 0], [0, 64 / 96, 0]], atol=1e-7)
    np.testing.assert_allclose(sample["offsets"], [96, 96, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sample["rot_flip"], [0, 0])
    expected = cv2.resize(info["image"], (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(sample["image"].transpose(1, 2, 0).astype(int) - expected).max() <= 1


def test_eval_letterbox_pads_the_short_side_evenly():
    kp = pose_kp2d((100, 75), 100)
    sample = SamplePipeline(data_cfg(), train=False)(make_info(poses=[kp]), np.random.default_rng(0))
    present = kp[:, 2] > 0
    # 200 x 150 -> square 200 with 25 rows of black above and below.
    expected = np.stack([2 * kp[present, 0] / 200 - 1, 2 * (kp[present, 1] + 25) / 200 - 1], axis=-1)
    np.testing.assert_allclose(sample["kp2d"][0, present], expected, atol=1e-6)
    assert sample["image"][:, :7].max() == 0 and sample["image"][:, -7:].max() == 0


def test_eval_mode_ignores_augmentation_settings():
    info = make_info(poses=[pose_kp2d((100, 75), 100)])
    cfg = data_cfg(flip_prob=1.0, rotate_prob=1.0, crop_prob_2d=1.0, color_jitter_prob=1.0, occlusion_prob=1.0)
    first = SamplePipeline(cfg, train=False)(info, np.random.default_rng(0))
    second = SamplePipeline(data_cfg(), train=False)(info, np.random.default_rng(9))
    for key in EXPECTED_SHAPES:
        np.testing.assert_array_equal(first[key], second[key])


def test_keypoint_lands_on_hand_computed_position_after_crop_rotate_scale():
    kp = np.full((54, 3), -2.0, dtype=np.float32)
    kp[JOINT54["Pelvis"]] = (110.0, 75.0, 1.0)
    kp[JOINT54["L_Hip"]] = (100.0, 95.0, 1.0)
    kp[JOINT54["R_Hip"]] = (10.0, 10.0, 1.0)  # outside the crop box
    # Box centre (100, 75), side 128 -> 64: scale 0.5; OpenCV 90 deg maps (dx, dy) -> (dy, -dx).
    # Pelvis: (10, 0) -> (0, -10) -> (0, -5) + 32 = (32, 27) -> normalised (0, -0.15625).
    # L_Hip: (0, 20) -> (20, 0) -> (10, 0) + 32 = (42, 32) -> normalised (0.3125, 0).
    augment = AugmentParams(crop_center=(100.0, 75.0), crop_side=128.0, rotation_deg=90.0, person_crop=True)
    sample = build(make_info(poses=[kp]), augment)
    np.testing.assert_allclose(sample["kp2d"][0, JOINT54["Pelvis"]], [0.0, -0.15625], atol=1e-6)
    np.testing.assert_allclose(sample["kp2d"][0, JOINT54["L_Hip"]], [0.3125, 0.0], atol=1e-6)
    np.testing.assert_array_equal(sample["kp2d"][0, JOINT54["R_Hip"]], [-2, -2])
    np.testing.assert_array_equal(sample["rot_flip"], [90, 0])
    # Box x in [36, 164], y in [11, 139] of a 200 x 150 image: cut 11 / 36 on every side, no padding.
    np.testing.assert_allclose(sample["offsets"], [128, 128, 11, 36, 11, 36, 0, 0, 0, 0])


def test_low_visibility_and_out_of_view_joints_are_missing():
    kp = pose_kp2d((100, 75), 100)
    kp[JOINT54["L_Wrist"], 2] = 0.03
    kp[JOINT54["R_Wrist"], 2] = 0.04
    kp[JOINT54["L_Ankle"], :2] = (100.0, 200.0)  # below the image and its padding
    sample = build(make_info(poses=[kp]), AugmentParams.letterbox(150, 200))
    assert np.all(sample["kp2d"][0, JOINT54["L_Wrist"]] == -2)
    assert np.all(sample["kp2d"][0, JOINT54["R_Wrist"]] > -1)
    assert np.all(sample["kp2d"][0, JOINT54["L_Ankle"]] == -2)


def test_flip_twice_returns_the_original_targets():
    image = gradient_image(64, 64)
    info = make_info(image=image, poses=[pose_kp2d((30, 34), 40)], kp3ds=[pose_kp3d()], params=[smpl_params(1)])
    plain = build(info, AugmentParams.letterbox(64, 64))
    flipped = build(info, AugmentParams.letterbox(64, 64, flip=True))
    np.testing.assert_array_equal(flipped["image"], plain["image"][:, :, ::-1])
    np.testing.assert_allclose(flipped["kp2d"], mirror_kp(plain["kp2d"]), atol=1e-6)
    np.testing.assert_allclose(flipped["kp3d"], mirror_kp(plain["kp3d"]), atol=1e-6)
    np.testing.assert_allclose(flipped["params"][0, :66], flip_smpl_pose_np(plain["params"][0, :66]), atol=1e-6)
    np.testing.assert_array_equal(flipped["params"][0, 66:], plain["params"][0, 66:])
    assert np.all(flipped["params"][1:] == -10)
    assert flipped["centers"][0, 0] == pytest.approx(-plain["centers"][0, 0], abs=1e-6)

    # Feed the flipped targets back in as annotations and flip again: the original targets come back.
    kp2d_px = (flipped["kp2d"][0] + 1.0) * 32.0
    kp2d_again = np.concatenate([kp2d_px, np.ones((54, 1), np.float32)], axis=-1)
    kp2d_again[flipped["kp2d"][0, :, 0] == -2] = -2
    again = make_info(image=np.ascontiguousarray(flipped["image"].transpose(1, 2, 0)), poses=[kp2d_again],
                      kp3ds=[flipped["kp3d"][0]], params=[flipped["params"][0]])
    twice = build(again, AugmentParams.letterbox(64, 64, flip=True))
    np.testing.assert_array_equal(twice["image"], plain["image"])
    for key in ("kp2d", "kp3d", "params", "centers", "centermap"):
        np.testing.assert_allclose(twice[key], plain[key], atol=1e-5, err_msg=key)


def test_rotation_and_flip_keep_2d_3d_and_orientation_consistent():
    # 2D annotations are an orthographic view of the 3D joints: pixel = (64, 64) + 40 * (x, y).
    kp3d = pose_kp3d()
    present = kp3d[:, 0] != -2
    kp2d = np.full((54, 3), -2.0, dtype=np.float32)
    kp2d[present] = np.concatenate([64.0 + 40.0 * kp3d[present, :2], np.ones((present.sum(), 1))], axis=-1)
    params = smpl_params(2)
    info = make_info(image=gradient_image(128, 128), poses=[kp2d], kp3ds=[kp3d], params=[params])
    deg = 25.0
    sample = build(info, AugmentParams.letterbox(128, 128, rotation_deg=deg, flip=True))
    out2d, out3d = sample["kp2d"][0], sample["kp3d"][0]
    visible = out2d[:, 0] != -2
    assert visible.sum() == present.sum()
    hips = [JOINT54["R_Hip"], JOINT54["L_Hip"]]
    np.testing.assert_allclose(out3d[hips].mean(axis=0), 0.0, atol=1e-6)  # root-centred
    # Scale 0.5 into 64 px, then 2 / 64 per pixel: normalised = 0.625 * metres (relative to the root).
    root2d = out2d[hips].mean(axis=0)
    np.testing.assert_allclose(out2d[visible] - root2d, 0.625 * out3d[visible, :2], atol=1e-5)
    # The root orientation turned with the same camera rotation, then mirrored: F M R F.
    mirror = np.diag([-1.0, 1.0, 1.0])
    expected = mirror @ inplane_rotation_matrix_np(deg) @ cv2.Rodrigues(params[:3].astype(np.float64))[0] @ mirror
    np.testing.assert_allclose(cv2.Rodrigues(sample["params"][0, :3].astype(np.float64))[0], expected, atol=1e-5)


def test_same_seed_same_sample_different_seed_different_augmentation():
    info = make_info(poses=[pose_kp2d((80, 80), 100), pose_kp2d((140, 70), 80)], kp3ds=[pose_kp3d()],
                     params=[smpl_params()])
    pipeline = SamplePipeline(data_cfg(flip_prob=0.5, rotate_prob=1.0, crop_prob_3d=0.5, color_jitter_prob=1.0,
                                       occlusion_prob=0.5), train=True)
    first = pipeline(info, np.random.default_rng(123), (1.2, 2.4), True)
    second = pipeline(info, np.random.default_rng(123), (1.2, 2.4), True)
    for key in EXPECTED_SHAPES:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    other = pipeline(info, np.random.default_rng(124), (1.2, 2.4), True)
    assert first["rot_flip"][0] != other["rot_flip"][0]
    assert not np.array_equal(first["image"], other["image"])
    assert not np.array_equal(first["kp2d"], other["kp2d"])


def test_box_only_person_gets_a_centre_and_no_pose():
    info = make_info(poses=[pose_kp2d((60, 75), 100)], boxes=[BOX], track_ids=[0, 5])
    sample = SamplePipeline(data_cfg(), train=False)(info, np.random.default_rng(0))
    np.testing.assert_array_equal(sample["person_mask"], [True, True, False, False])
    assert sample["valid_masks"][0, masks.KP2D] and not sample["valid_masks"][1, masks.KP2D]
    assert np.all(sample["kp2d"][1] == -2)
    # Visible box taller than wide -> full box: (170, 0.7 * 20 + 0.3 * 140) = (170, 56).
    # Letterbox 200 x 150 -> 64: u_in = 0.32 * (u - (100, 75)) + 32 = (54.4, 25.92).
    np.testing.assert_allclose(sample["centers"][1], [54.4 / 32 - 1, 25.92 / 32 - 1], atol=1e-6)
    col, row = center_to_cell(sample["centers"][1], 8)
    assert sample["centermap"][0, row, col] == 1.0
    assert sample["track_ids"][1] == 5 and sample["valid_masks"][1, masks.TRACK_ID]

    box_only = SamplePipeline(data_cfg(), train=False)(make_info(boxes=[BOX]), np.random.default_rng(0))
    assert box_only["person_mask"][0] and not box_only["valid_masks"][0, masks.KP2D]
    assert box_only["centermap"].max() == 1.0


def test_car_pushes_close_persons_apart_in_training_only():
    info = make_info(poses=[pose_kp2d((100, 75), 100), pose_kp2d((106, 75), 100)])
    eval_sample = SamplePipeline(data_cfg(), train=False)(info, np.random.default_rng(0))
    train_sample = SamplePipeline(data_cfg(), train=True)(info, np.random.default_rng(0))
    no_car = SamplePipeline(data_cfg(car=False), train=True)(info, np.random.default_rng(0))
    before, after = eval_sample["centers"][:2], train_sample["centers"][:2]
    np.testing.assert_array_equal(no_car["centers"], eval_sample["centers"])
    gap_before, gap_after = before[1, 0] - before[0, 0], after[1, 0] - after[0, 0]
    assert gap_after > gap_before
    np.testing.assert_allclose(after[:, 1], before[:, 1], atol=1e-6)  # pushed along their line (x)
    np.testing.assert_allclose(after.mean(axis=0), before.mean(axis=0), atol=1e-6)  # half each
    for center in after:
        col, row = center_to_cell(center, 8)
        assert train_sample["centermap"][0, row, col] == 1.0


def test_car_leaves_far_persons_alone():
    info = make_info(poses=[pose_kp2d((40, 75), 60), pose_kp2d((160, 75), 60)])
    eval_sample = SamplePipeline(data_cfg(), train=False)(info, np.random.default_rng(0))
    train_sample = SamplePipeline(data_cfg(), train=True)(info, np.random.default_rng(0))
    np.testing.assert_array_equal(train_sample["centers"], eval_sample["centers"])


def test_slots_pose_first_then_boxes_up_to_max_person():
    hidden = pose_kp2d((100, 75), 100, vis=0.0)  # no visible joint: no slot
    info = make_info(poses=[pose_kp2d((40, 75), 60), hidden, pose_kp2d((100, 75), 60)], boxes=[BOX, BOX],
                     track_ids=[10, 11, 12, 13, 14])
    sample = SamplePipeline(data_cfg(max_person=3), train=False)(info, np.random.default_rng(0))
    np.testing.assert_array_equal(sample["track_ids"], [10, 12, 13])
    np.testing.assert_array_equal(sample["valid_masks"][:, masks.KP2D], [True, True, False])
    assert sample["person_mask"].all()
    assert np.count_nonzero(sample["centermap"] == 1.0) == 3


def test_3d_targets_and_masks():
    no_hip = pose_kp3d()
    no_hip[JOINT54["L_Hip"]] = -2
    info = make_info(poses=[pose_kp2d((60, 75), 100), pose_kp2d((140, 75), 100)], kp3ds=[pose_kp3d(), no_hip],
                     params=[smpl_params(), None], all_labelled=False)
    sample = SamplePipeline(data_cfg(), train=False)(info, np.random.default_rng(0))
    valid = sample["valid_masks"]
    assert valid[0, masks.KP3D] and not valid[1, masks.KP3D]  # cannot root-centre without both hips
    assert np.all(sample["kp3d"][1] == -2) and np.all(sample["kp3d"][2:] == -2)
    # Pelvis, R_Hip, L_Hip are layout entries 9, 10, 11: depths 3.09, 3.10, 3.11 -> pelvis z = 3.09 - 3.105.
    np.testing.assert_allclose(sample["kp3d"][0, JOINT54["Pelvis"]], [0.0, 0.0, -0.015], atol=1e-6)
    np.testing.assert_allclose(sample["params"][0], smpl_params(), atol=1e-6)
    assert np.all(sample["params"][1] == -10)
    assert valid[0, masks.GLOBAL_ORIENT] and valid[0, masks.BODY_POSE] and valid[0, masks.BETAS]
    assert not valid[1, masks.GLOBAL_ORIENT]
    assert not sample["all_persons_labelled"]


def test_valid_global_orient_alone_is_still_flipped():
    params = smpl_params(3)
    info = make_info(image=gradient_image(64, 64), poses=[pose_kp2d((32, 32), 40)], params=[params])
    info["vmask_3d"][0, 2:4] = False  # body pose and betas not annotated
    sample = build(info, AugmentParams.letterbox(64, 64, flip=True))
    np.testing.assert_allclose(sample["params"][0, :3], params[:3] * [1, -1, -1], atol=1e-6)
    assert np.all(sample["params"][0, 3:] == -10)


def test_pipeline_accepts_a_checked_img_info_and_names_bad_fields():
    info = make_info(poses=[pose_kp2d((100, 75), 100)])
    pipeline = SamplePipeline(data_cfg(), train=False)
    from_checked = pipeline(validate_img_info(info, "toy", 0), np.random.default_rng(0))
    from_dict = pipeline(info, np.random.default_rng(0))
    np.testing.assert_array_equal(from_checked["kp2d"], from_dict["kp2d"])
    info["kp3ds"] = [pose_kp3d() * 1000]
    info["vmask_3d"][0, 0] = True
    with pytest.raises(ImgInfoError, match="dataset 'coco', index 3, field 'kp3ds'"):
        pipeline(info, np.random.default_rng(0), dataset_key="coco", index=3)
