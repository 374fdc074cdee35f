"""Tests of the embedded synthetic dataset (romp_hydra.data.synthetic, romp_hydra.data.sources.synthetic)."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from romp_hydra.body.joint_sets import ROOT_JOINTS, TORSO_JOINTS
from romp_hydra.body.smpl import build_body_model
from romp_hydra.data.sample import validate_img_info
from romp_hydra.data.sources.synthetic import SyntheticCrowd, SyntheticSolo
from romp_hydra.data.synthetic import cache
from romp_hydra.data.synthetic.generator import VARIANTS, SceneGenerator
from romp_hydra.data.synthetic.poses import (
    BODY_JOINT_LIMITS,
    POSE_PROTOTYPES,
    sample_body_pose,
    sample_global_orient,
    sample_prototype_mode,
)

SMALL_IMAGES = (96, 128)


@pytest.fixture(scope="module")
def body_model_dir(shared_cache_dir: Path) -> Path:
    return shared_cache_dir / "standin_smpl"  # the same place as ${paths.cache_dir}/standin_smpl


@pytest.fixture(scope="module")
def make_source(tmp_path_factory, body_model_dir):
    """make_source(cls, root=None, **options): a small synthetic source generated in this process."""
    default_root = tmp_path_factory.mktemp("synthetic")

    def _make(cls, root: Path | None = None, **options):
        settings = {"num_samples": 8, "seed": 3, "image_size_range": SMALL_IMAGES, "num_workers": 0}
        settings.update(options)
        return cls(root or default_root, "train", body_model_dir=body_model_dir, **settings)

    return _make


@pytest.fixture(scope="module")
def solo(make_source) -> SyntheticSolo:
    return make_source(SyntheticSolo)


@pytest.fixture(scope="module")
def crowd(make_source) -> SyntheticCrowd:
    return make_source(SyntheticCrowd, num_samples=12)


def _all_infos(source):
    return [source.get_image_info(i) for i in range(len(source))]


def test_img_info_follows_the_contract(solo, crowd):
    for source, key in ((solo, "synth_solo"), (crowd, "synth_crowd")):
        assert len(source) == source.num_samples
        for index, info in enumerate(_all_infos(source)):
            checked = validate_img_info(info, source.key, index)
            count = checked.num_persons
            assert info["ds"] == key and Path(info["imgpath"]).is_file()
            assert SMALL_IMAGES[0] <= checked.height <= SMALL_IMAGES[1]
            assert SMALL_IMAGES[0] <= checked.width <= SMALL_IMAGES[1]
            assert checked.vmask_2d.all() and checked.vmask_3d.all()
            np.testing.assert_array_equal(checked.track_ids, np.arange(count))
            assert info["root_trans"].shape == (count, 3) and info["camMats"].shape == (3, 3)
    assert all(len(info["kp2ds"]) == 1 for info in _all_infos(solo))
    crowd_counts = [len(info["kp2ds"]) for info in _all_infos(crowd)]
    assert min(crowd_counts) >= 1 and max(crowd_counts) <= 8 and np.mean(crowd_counts) > 2


def test_same_seed_gives_identical_data_and_another_seed_does_not(solo, make_source, tmp_path):
    again = make_source(SyntheticSolo, root=tmp_path / "again")
    other = make_source(SyntheticSolo, root=tmp_path / "other", seed=4)
    for index in range(len(solo)):
        first, second = solo.get_image_info(index), again.get_image_info(index)
        for key in ("kp2ds", "kp3ds", "params", "root_trans", "camMats"):
            np.testing.assert_array_equal(first[key], second[key])
        assert Path(first["imgpath"]).read_bytes() == Path(second["imgpath"]).read_bytes()
    assert not np.array_equal(solo.get_image_info(0)["params"], other.get_image_info(0)["params"])


def test_kp3ds_are_the_body_model_of_the_stored_params(crowd, body_model_dir):
    body_model = build_body_model("standin", body_model_dir, root_align=False)
    for info in _all_infos(crowd):
        params = torch.from_numpy(info["params"])
        with torch.no_grad():
            joints = body_model(params[:, :3], params[:, 3:66], params[:, 66:]).joints54.numpy()
        joints = joints - joints[:, list(ROOT_JOINTS)].mean(axis=1, keepdims=True)
        np.testing.assert_allclose(info["kp3ds"], joints, atol=1e-5)
        # Camera axes (y down): the head is above the ankles, and the root is the mid-hip.
        assert np.all(info["kp3ds"][:, 15, 1] < info["kp3ds"][:, [7, 8], 1].min(axis=1))
        np.testing.assert_allclose(info["kp3ds"][:, list(ROOT_JOINTS)].mean(axis=1), 0.0, atol=1e-6)


def test_people_face_the_camera_unless_turned_away(solo):
    # Solo yaw is within +-60 degrees (5 % seen from behind): the nose is nearer the camera than the head.
    facing = [bool(info["kp3ds"][0, 24, 2] < info["kp3ds"][0, 15, 2]) for info in _all_infos(solo)]
    assert np.mean(facing) >= 0.75


def test_kp2ds_are_the_projection_of_the_camera_frame_joints(crowd):
    for info in _all_infos(crowd):
        camera_joints = info["kp3ds"].astype(np.float64) + info["root_trans"][:, None]
        projected = camera_joints @ info["camMats"].astype(np.float64).T
        pixels = projected[..., :2] / projected[..., 2:]
        assert np.abs(pixels - info["kp2ds"][..., :2]).max() < 1e-2  # far below one pixel
        height, width = info["img_size"]
        x, y, vis = info["kp2ds"][..., 0], info["kp2ds"][..., 1], info["kp2ds"][..., 2]
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        np.testing.assert_array_equal(vis, inside.astype(np.float32))


def test_crowd_has_people_partly_outside_but_every_torso_centre_inside(crowd):
    partly_outside = 0
    for info in _all_infos(crowd):
        vis = info["kp2ds"][..., 2]
        partly_outside += int(((vis == 0).any(axis=1) & (vis == 1).any(axis=1)).sum())
        centres = info["kp2ds"][:, list(TORSO_JOINTS), :2].mean(axis=1)
        height, width = info["img_size"]
        assert np.all((centres >= -1) & (centres <= [width, height]))
    assert partly_outside >= 2


def test_every_person_shows_its_torso_in_the_image(body_model_dir):
    # Straight from the generator, which also returns which person each pixel shows.
    generator = SceneGenerator(dataclasses.replace(VARIANTS["crowd"], image_size_range=SMALL_IMAGES),
                               build_body_model("standin", body_model_dir))  # fmt: skip
    for index in range(4):
        sample = generator.generate(cache.sample_rng(0, "train", "crowd", index))
        assert sample.person_index.shape == sample.image.shape[:2]
        for person, joints in enumerate(sample.kp2ds):
            torso = np.rint(joints[list(TORSO_JOINTS), :2]).astype(int)
            height, width = sample.person_index.shape
            inside = (torso[:, 0] >= 0) & (torso[:, 0] < width) & (torso[:, 1] >= 0) & (torso[:, 1] < height)
            shown = sample.person_index[torso[inside, 1], torso[inside, 0]]
            hidden_by_others = (shown == person).sum() < 2 and ((shown >= 0) & (shown != person)).any()
            assert not hidden_by_others, (
                f"sample {index}: person {person}'s torso is hidden but still labelled"
            )
        assert set(range(len(sample.kp2ds))) <= set(np.unique(sample.person_index))


def test_second_construction_reuses_the_cache(solo, make_source):
    annotations = solo.folder / cache.ANNOTATION_FILE
    before = annotations.stat().st_mtime_ns
    again = make_source(SyntheticSolo)
    assert again.folder == solo.folder and annotations.stat().st_mtime_ns == before


def test_changed_options_generate_their_own_cache_and_keep_the_other(make_source, tmp_path):
    first = make_source(SyntheticSolo, root=tmp_path, num_samples=2)
    old_hash = json.loads((first.folder / "meta.json").read_text())["hash"]
    second = make_source(SyntheticSolo, root=tmp_path, num_samples=2, image_size_range=(64, 72))
    # Two runs with different scene settings must not evict (or read) each other's images.
    assert second.folder != first.folder and (first.folder / cache.ANNOTATION_FILE).is_file()
    assert json.loads((second.folder / "meta.json").read_text())["hash"] != old_hash
    assert 64 <= second.get_image_info(0)["image"].shape[0] <= 72


def test_train_and_val_draw_different_samples(solo, body_model_dir):
    val = SyntheticSolo(solo.root, "val", num_samples=2, seed=3, image_size_range=SMALL_IMAGES,
                        body_model_dir=body_model_dir, num_workers=0)  # fmt: skip
    assert not np.array_equal(val.get_image_info(0)["params"], solo.get_image_info(0)["params"])
    with pytest.raises(ValueError, match="split must be one of"):
        SyntheticSolo(solo.root, "trian", num_samples=2, body_model_dir=body_model_dir, num_workers=0)


def test_concurrent_requests_generate_once(tmp_path, body_model_dir, monkeypatch):
    calls = []
    original = cache._generate_indices

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cache, "_generate_indices", counting)
    config = dataclasses.replace(VARIANTS["solo"], image_size_range=(64, 64))
    folders = []

    def request():
        folders.append(cache.ensure_synthetic_split(tmp_path, "solo", "train", 0, 3, config,
                                                    body_model_dir=body_model_dir, num_workers=0))  # fmt: skip

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(folders) == 2 and folders[0] == folders[1] and len(calls) == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name or ".stale" in p.name]


def test_worker_processes_give_the_same_data_as_one_process(tmp_path, make_source):
    # 64 samples are split between two forked workers; every sample has its own seed.
    single = make_source(SyntheticSolo, root=tmp_path / "one", num_samples=64, image_size_range=(48, 56))
    multi = make_source(SyntheticSolo, root=tmp_path / "two", num_samples=64, image_size_range=(48, 56),
                        num_workers=2)  # fmt: skip
    for index in (0, 31, 32, 63):
        np.testing.assert_array_equal(
            single.get_image_info(index)["params"], multi.get_image_info(index)["params"]
        )
        assert (
            Path(single.get_image_info(index)["imgpath"]).read_bytes()
            == Path(multi.get_image_info(index)["imgpath"]).read_bytes()
        )


def test_sampled_poses_respect_the_joint_limits():
    rng = np.random.default_rng(0)
    poses = np.stack([sample_body_pose(rng) for _ in range(200)]).reshape(200, 21, 3)
    assert np.all(poses >= BODY_JOINT_LIMITS[..., 0] - 1e-12) and np.all(
        poses <= BODY_JOINT_LIMITS[..., 1] + 1e-12
    )
    knees, elbows = poses[:, [3, 4], 0], poses[:, [17, 18], 1]  # SMPL joints 4/5 (x) and 18/19 (y)
    assert np.all(knees >= 0) and np.all(elbows[:, 0] <= 0) and np.all(elbows[:, 1] >= 0)


def test_zero_yaw_orientation_is_smpl_turned_into_camera_axes():
    rotvec = sample_global_orient(np.random.default_rng(0), yaw_range_deg=0.0, max_tilt_deg=0.0)
    np.testing.assert_allclose(
        Rotation.from_rotvec(rotvec).as_matrix(), np.diag([1.0, -1.0, -1.0]), atol=1e-12
    )


def test_scene_options_reach_the_images(make_source, tmp_path, body_model_dir):
    plain = make_source(SyntheticSolo, root=tmp_path, num_samples=3, background="plain", yaw_range_deg=0.0,
                        back_facing_prob=0.0)
    assert (plain.scene_config.background, plain.scene_config.yaw_range_deg) == ("plain", 0.0)
    for info in _all_infos(plain):
        assert info["kp3ds"][0, 24, 2] < info["kp3ds"][0, 15, 2]  # yaw 0, none from behind: the nose is nearer
    generator = SceneGenerator(dataclasses.replace(VARIANTS["crowd"], image_size_range=SMALL_IMAGES,
                                                   background="plain"), build_body_model("standin", body_model_dir))
    sample = generator.generate(cache.sample_rng(0, "train", "crowd", 0))
    background = sample.image[sample.person_index < 0]
    assert len(background) and (background == background[0]).all()  # one flat colour wherever nobody is
    with pytest.raises(ValueError, match="background must be one of"):
        dataclasses.replace(VARIANTS["solo"], background="noise")
    with pytest.raises(ValueError, match="back_facing_prob=2"):
        dataclasses.replace(VARIANTS["solo"], back_facing_prob=2)
    with pytest.raises(ValueError, match="pose_noise_deg=-1 must be >= 0"):
        dataclasses.replace(VARIANTS["solo"], pose_noise_deg=-1)


def test_pose_and_placement_options_reach_the_scene(make_source, tmp_path):
    exact = make_source(SyntheticSolo, root=tmp_path, num_samples=4, pose_noise_deg=0.0, pose_blend_prob=0.0,
                        person_height_range=[0.5, 0.5], outside_prob=0.0)
    config = exact.scene_config
    assert (config.pose_noise_deg, config.pose_blend_prob, config.person_height_range, config.outside_prob) == (
        0.0, 0.0, (0.5, 0.5), 0.0)
    # The prototypes and their mirror images (every mode an unblended draw can give; symmetric ones mirror onto
    # themselves).
    rng = np.random.default_rng(0)
    modes = np.stack([sample_prototype_mode(rng, blend_prob=0.0)[0].reshape(-1) for _ in range(400)])
    assert len(POSE_PROTOTYPES) < len(np.unique(modes.round(6), axis=0)) < 2 * len(POSE_PROTOTYPES)
    for info in _all_infos(exact):
        # No noise, no blending: every body pose is one of the modes.
        assert np.abs(modes - info["params"][0, 3:66]).max(1).min() < 1e-5
        # The joints lie inside the body's box, drawn half the image tall (perspective: a few %), and inside the image.
        assert np.ptp(info["kp2ds"][0, :, 1]) < 0.5 * info["image"].shape[0] * 1.1
        assert info["kp2ds"][0, :, 2].all()
    noisy = make_source(SyntheticSolo, root=tmp_path, num_samples=2, pose_noise_deg=10.0, pose_blend_prob=0.0)
    for info in _all_infos(noisy):
        assert np.abs(modes - info["params"][0, 3:66]).max(1).min() > 1e-3
    with pytest.raises(ValueError, match=r"person_height_range must be \[min, max\]"):
        make_source(SyntheticSolo, root=tmp_path, num_samples=1, person_height_range=[0.6, 0.3])
    with pytest.raises(ValueError, match="pose_blend_prob=2"):
        make_source(SyntheticSolo, root=tmp_path, num_samples=1, pose_blend_prob=2)


def test_min_center_distance_keeps_group_members_apart(make_source, tmp_path):
    apart = make_source(SyntheticCrowd, root=tmp_path, num_samples=6, people_range=[2, 3],
                        person_height_range=[0.4, 0.4], min_center_distance=1.0, outside_prob=0.0)
    pairs = 0
    for info in _all_infos(apart):
        centres = info["kp2ds"][:, list(TORSO_JOINTS), :2].mean(axis=1)
        height = 0.4 * info["image"].shape[0]  # every body is drawn this tall
        for i in range(len(centres)):
            for j in range(i):
                pairs += 1
                assert np.linalg.norm(centres[i] - centres[j]) >= height - 1.0
    assert pairs  # some images hold two or more people
    with pytest.raises(ValueError, match="min_center_distance=-1"):
        make_source(SyntheticCrowd, root=tmp_path, num_samples=1, min_center_distance=-1)
