"""The vectorised targets stage against a readable per-person reference (the pipeline before vectorisation).

The reference below builds every sample person by person, the way ROMP's HEAD does and the way this pipeline
did before it worked on whole arrays. On generated crowds (overlapping people, coincident centres, CAR pushes),
people cut by the border, box-only persons, missing hips, partial SMPL labels, flips, rotations, person crops
and more persons than slots, every key of the sample must match it: exactly for masks, ids and the image,
to float32 rounding for coordinates and the heatmap. The reference reproduced the recorded outputs of the
pre-vectorisation pipeline bit for bit on these cases (240 samples, 3 input sizes, train and eval).
"""
from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import FLIP54, ROOT_JOINTS, TORSO_JOINTS
from romp_hydra.data import masks
from romp_hydra.data.augment import (
    apply_affine,
    build_affine,
    color_jitter,
    crop_offsets,
    rotate_flip_points3d,
    synthetic_occlusion,
    warp_image,
)
from romp_hydra.data.pipeline import SamplePipeline, transform_poses
from romp_hydra.data.sample import validate_img_info
from romp_hydra.geometry.rotations import flip_smpl_pose_np, rotate_global_orient_np
from tests.data.pipeline_cases import cases

KP3D, TRACK_ID, GLOBAL_ORIENT, BODY_POSE, BETAS = 1, 2, 3, 4, 5  # valid_masks columns, spelled out


# ---- the per-person reference -------------------------------------------------------------------------------
def ref_pose_center(kp2d):
    visible = np.all(kp2d > -1.0, axis=-1)
    torso = np.zeros_like(visible)
    torso[list(TORSO_JOINTS)] = True
    for subset in (visible & torso, visible):
        if subset.any():
            return kp2d[subset].mean(axis=0)
    return None


def ref_pose_box_hw(kp2d):
    points = kp2d[np.all(kp2d > -1.0, axis=-1)]
    extent = points.max(axis=0) - points.min(axis=0)
    return extent[::-1].copy()


def ref_box_person_center(box, affine, size):
    box = np.asarray(box, dtype=np.float64)
    candidates = []
    width, height = box[3] - box[2]
    if height > width:
        candidates.append((box[0], box[1], 0.7))
    candidates.append((box[2], box[3], 0.6))
    for (x0, y0), (x1, y1), top_weight in candidates:
        anchor = np.array([(x0 + x1) / 2.0, top_weight * y0 + (1.0 - top_weight) * y1])
        center = apply_affine(anchor, affine) * (2.0 / size) - 1.0
        if np.all(np.abs(center) < 1.0):
            corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            mapped = apply_affine(corners, affine) * (2.0 / size)
            return center, (mapped.max(axis=0) - mapped.min(axis=0))[::-1].copy()
    return None


def ref_radius(hw, map_size):
    return int(float(np.linalg.norm(np.asarray(hw, dtype=np.float64) / 2.0)) * map_size / 16.0 + map_size / 32.0)


def ref_kernel(radius):
    sigma = (2 * radius + 1) / 6.0
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2.0 * sigma**2))
    kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0.0
    return kernel


def ref_centermap(centers, radii, map_size):
    heatmap = np.zeros((map_size, map_size), dtype=np.float32)
    peaks = []
    for center, radius in zip(centers, radii):
        col, row = (int(v) for v in np.floor((np.asarray(center, dtype=np.float64) + 1.0) / 2.0 * map_size))
        if not (0 <= col < map_size and 0 <= row < map_size):
            continue
        kernel = ref_kernel(radius)
        left, right = min(col, radius), min(map_size - col, radius + 1)
        top, bottom = min(row, radius), min(map_size - row, radius + 1)
        patch = heatmap[row - top:row + bottom, col - left:col + right]
        np.maximum(patch, kernel[radius - top:radius + bottom, radius - left:radius + right], out=patch)
        peaks.append((row, col))
    for row, col in peaks:
        heatmap[row, col] = 1.0
    return heatmap[None]


def ref_car(centers, radii, map_size, factor):
    pushed = centers.copy()
    for i in range(len(centers)):
        for j in range(i + 1, len(centers)):
            delta = centers[j] - centers[i]
            dist = float(np.linalg.norm(delta))
            least = (radii[i] + radii[j] + 1) / map_size * 2.0
            if dist >= least:
                continue
            direction = delta / dist if dist > 1e-9 else np.array([1.0, 0.0])
            shift = (least - dist) * factor * direction
            pushed[i] -= shift / 2.0
            pushed[j] += shift / 2.0
    return pushed


def ref_kp3d(kp3d, rotation_deg, flip):
    kp3d = np.asarray(kp3d, dtype=np.float64)
    present = ~np.any(kp3d == -2.0, axis=-1)
    if not present[list(ROOT_JOINTS)].all():
        return None
    turned = rotate_flip_points3d(kp3d - kp3d[list(ROOT_JOINTS)].mean(axis=0), rotation_deg, flip)
    if flip:
        turned, present = turned[list(FLIP54)], present[list(FLIP54)]
    return np.where(present[:, None], turned, -2.0).astype(np.float32)


def ref_params(params, valid, rotation_deg, flip):
    out = np.full(76, -10.0, dtype=np.float32)
    theta = np.asarray(params[:66], dtype=np.float64).copy()
    if valid[GLOBAL_ORIENT] and rotation_deg != 0.0:
        theta[:3] = rotate_global_orient_np(theta[:3], rotation_deg)
    if flip and (valid[GLOBAL_ORIENT] or valid[BODY_POSE]):
        theta = flip_smpl_pose_np(theta)
    if valid[GLOBAL_ORIENT]:
        out[:3] = theta[:3]
    if valid[BODY_POSE]:
        out[3:66] = theta[3:]
    if valid[BETAS]:
        out[66:] = params[66:]
    return out


def reference_sample(settings, train, info, augment):
    size, max_person, map_size = settings.input_size, settings.max_person, settings.centermap_size
    affine = build_affine(augment.crop_center, augment.crop_side, augment.rotation_deg, augment.flip, size)
    image = warp_image(info.image, affine, size, augment.visible)
    kp2d_all = transform_poses(info.kp2ds, affine, augment.flip, size)
    slots = []  # (person, center, hw, is_pose)
    for person in np.flatnonzero(info.is_pose):
        center = ref_pose_center(kp2d_all[person])
        if center is not None:
            slots.append((int(person), center, ref_pose_box_hw(kp2d_all[person]), True))
    for person in np.flatnonzero(~info.is_pose):
        found = ref_box_person_center(info.boxes[person], affine, size)
        if found is not None:
            slots.append((int(person), found[0], found[1], False))
    slots = slots[:max_person]

    sample = {
        "kp2d": np.full((max_person, 54, 2), -2.0, np.float32), "kp3d": np.full((max_person, 54, 3), -2.0, np.float32),
        "params": np.full((max_person, 76), -10.0, np.float32), "centers": np.full((max_person, 2), -2.0, np.float32),
        "person_mask": np.zeros(max_person, bool), "valid_masks": np.zeros((max_person, 8), bool),
        "track_ids": np.full(max_person, -1, np.int64),
    }
    for slot, (person, _, _, is_pose) in enumerate(slots):
        sample["person_mask"][slot] = True
        valid = masks.valid_masks_from_vmasks(info.vmask_2d[person:person + 1], info.vmask_3d[person:person + 1])[0]
        sample["track_ids"][slot] = info.track_ids[person] if valid[TRACK_ID] else -1
        if is_pose:
            sample["kp2d"][slot] = kp2d_all[person]
        if valid[KP3D]:
            joints = ref_kp3d(info.kp3ds[person], augment.rotation_deg, augment.flip)
            if joints is None:
                valid[KP3D] = False
            else:
                sample["kp3d"][slot] = joints
        sample["valid_masks"][slot] = valid
        sample["params"][slot] = ref_params(info.params[person], valid, augment.rotation_deg, augment.flip)

    centers = np.array([s[1] for s in slots], dtype=np.float64).reshape(-1, 2)
    radii = [ref_radius(s[2], map_size) for s in slots]
    pose = np.array([s[3] for s in slots], dtype=bool)
    if train and settings.collision_aware_centermap and pose.sum() > 1:
        centers[pose] = ref_car(centers[pose], [r for r, p in zip(radii, pose) if p], map_size,
                                settings.collision_factor)
        centers = np.clip(centers, -(1.0 - 1e-4), 1.0 - 1e-4)
    sample["centers"][: len(slots)] = centers
    sample["centermap"] = ref_centermap(centers.astype(np.float32), radii, map_size)

    if augment.occlusion_seed is not None:
        boxes = []
        for joints in sample["kp2d"][sample["person_mask"]]:
            visible = joints[np.all(joints > -1.0, axis=-1)]
            if len(visible):
                pixels = (visible + 1.0) * (size / 2.0)
                boxes.append(np.concatenate([pixels.min(axis=0), pixels.max(axis=0)]))
        image = synthetic_occlusion(image, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), augment.occlusion_seed)
    if augment.jitter is not None:
        image = color_jitter(image, augment.jitter, augment.jitter_order)
    sample["image"] = np.ascontiguousarray(image.transpose(2, 0, 1))
    sample["offsets"] = crop_offsets(augment.crop_center, augment.crop_side, info.height, info.width)
    return sample


# ---- the comparison -------------------------------------------------------------------------------------------
SETTINGS = [
    pytest.param({"input_size": 128, "centermap_size": 16, "max_person": 8}, id="128px-8slots"),
    pytest.param({"input_size": 256, "centermap_size": 32, "max_person": 64}, id="256px-64slots"),
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("data_cfg", SETTINGS)
def test_vectorised_targets_match_the_per_person_reference(data_cfg, train):
    pipeline = SamplePipeline(data_cfg, train=train)
    pushed = 0
    for index, (raw, augment) in enumerate(cases(40, seed=data_cfg["input_size"] + train)):
        info = validate_img_info(raw, "cases", index)
        sample = pipeline.build_sample(info, augment, index=index)
        expected = reference_sample(pipeline.settings, train, info, augment)
        for key, value in expected.items():
            got = sample[key]
            assert got.dtype == value.dtype and got.shape == value.shape, (index, key)
            if value.dtype.kind == "f":
                np.testing.assert_allclose(got, value, rtol=0, atol=1e-6, err_msg=f"case {index}, {key}")
            else:
                np.testing.assert_array_equal(got, value, err_msg=f"case {index}, {key}")
        pushed += int(train and not np.allclose(
            sample["centers"], reference_sample(pipeline.settings, False, info, augment)["centers"]))
    assert (pushed > 0) == train  # the cases do make CAR move centres
