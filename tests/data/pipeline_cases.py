"""Generated img_info + augmentation cases that exercise every branch of the targets stage.

Crowds of overlapping people (CAR collisions, coincident centres), people cut by the image border, box-only
persons (full box or visible box, or dropped), 3D joints with and without both hips, SMPL params with some
segments missing, flips, rotations, person crops and more persons than slots.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from romp_hydra.data.augment import AugmentParams

HEIGHT, WIDTH = 120, 160


def _pose(rng: np.random.Generator, center: np.ndarray, scale: float) -> np.ndarray:
    """(54, 3) [x, y, vis] pixels: a cloud of joints around `center`, some missing or low-visibility."""
    joints = center + rng.normal(0.0, scale, size=(54, 2))
    vis = np.ones(54)
    vis[rng.random(54) < 0.25] = 0.0  # not annotated
    vis[rng.random(54) < 0.05] = 0.02  # below VIS_THRESHOLD
    pose = np.concatenate([joints, vis[:, None]], axis=1)
    pose[vis == 0.0] = -2.0
    return pose.astype(np.float32)


def _box(rng: np.random.Generator) -> np.ndarray:
    """(4, 2) [full_lt, full_rb, visible_lt, visible_rb] pixels; tall or wide, sometimes off the image."""
    full_lt = rng.uniform([-30, -30], [WIDTH, HEIGHT])
    full_rb = full_lt + rng.uniform([5, 5], [60, 90])
    visible_lt = full_lt + rng.uniform(0, 5, size=2)
    visible_rb = np.maximum(visible_lt + 1, full_rb - rng.uniform(0, 20, size=2))
    return np.stack([full_lt, full_rb, visible_lt, visible_rb]).astype(np.float32)


def _kp3d(rng: np.random.Generator) -> np.ndarray:
    joints = rng.normal(0.0, 0.4, size=(54, 3)) + np.array([0.0, 0.0, 4.0])
    joints[rng.random(54) < 0.15] = -2.0
    if rng.random() < 0.25:
        joints[rng.choice([45, 46])] = -2.0  # a missing hip: cannot be root-centred
    return joints.astype(np.float32)


def make_case_info(rng: np.random.Generator, num_pose: int, num_box: int, crowd: bool) -> dict[str, Any]:
    """One img_info; `crowd` packs the poses around a few nearby centres so their heatmaps collide."""
    image = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    anchors = rng.uniform([-10, -10], [WIDTH + 10, HEIGHT + 10], size=(max(num_pose, 1), 2))
    if crowd:
        anchors = anchors[0] + rng.normal(0.0, 6.0, size=anchors.shape)
        if num_pose >= 3:
            anchors[2] = anchors[1]  # two persons on the same spot
    poses = [_pose(rng, anchors[i], rng.uniform(4.0, 25.0)) for i in range(num_pose)]
    if num_pose >= 3:
        poses[2] = poses[1].copy()  # coincident centres
    boxes = [_box(rng) for _ in range(num_box)]
    num = num_pose + num_box
    vmask_2d = np.zeros((num, 3), dtype=bool)
    vmask_2d[:num_pose, 0] = True
    vmask_2d[:, 1] = rng.random(num) < 0.6
    vmask_2d[:, 2] = True
    vmask_3d = np.zeros((num, 6), dtype=bool)
    kp3ds = [_kp3d(rng) if rng.random() < 0.7 else None for _ in range(num)]
    vmask_3d[:, 0] = [k is not None for k in kp3ds]
    params = []
    for person in range(num):
        flags = rng.random(3) < 0.7
        vmask_3d[person, 1:4] = flags
        params.append(rng.uniform(-1.5, 1.5, size=76).astype(np.float32) if flags.any() else None)
    return {
        "imgpath": "/fake/cases/img.jpg", "ds": "cases", "image": image, "img_size": image.shape[:2],
        "kp2ds": poses + boxes, "track_ids": np.arange(num) * 3, "vmask_2d": vmask_2d, "vmask_3d": vmask_3d,
        "kp3ds": kp3ds, "params": params,
    }


def make_case_augment(rng: np.random.Generator, kind: str) -> AugmentParams:
    """Letterbox, rotated, flipped, rotated + flipped, or a zoomed person crop, with jitter / occlusion sometimes."""
    center, side = (WIDTH / 2.0, HEIGHT / 2.0), float(max(HEIGHT, WIDTH))
    rotation, flip = 0.0, False
    if kind in ("rotate", "rotate_flip"):
        rotation = float(rng.uniform(-60.0, 60.0))
    if kind in ("flip", "rotate_flip"):
        flip = True
    if kind == "crop":
        center = (float(rng.uniform(20, WIDTH - 20)), float(rng.uniform(20, HEIGHT - 20)))
        side = float(rng.uniform(40.0, 120.0))
        rotation, flip = float(rng.uniform(-30.0, 30.0)), bool(rng.random() < 0.5)
    jitter = tuple(float(f) for f in rng.uniform(0.9, 1.1, size=3)) if rng.random() < 0.2 else None
    occlusion = int(rng.integers(0, 2**31 - 1)) if rng.random() < 0.3 else None
    return AugmentParams(crop_center=center, crop_side=side, rotation_deg=rotation, flip=flip,
                         person_crop=kind == "crop", jitter=jitter, occlusion_seed=occlusion)


KINDS = ("letterbox", "rotate", "flip", "rotate_flip", "crop")


def cases(count: int = 40, seed: int = 0) -> Iterator[tuple[dict[str, Any], AugmentParams]]:
    """`count` (img_info, augmentation) pairs: solo, small groups, crowds of up to 14 (more than 8 slots)."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        num_pose = int(rng.choice([0, 1, 2, 3, 5, 8, 12]))
        num_box = int(rng.choice([0, 0, 1, 2, 4]))
        info = make_case_info(rng, num_pose, num_box, crowd=index % 2 == 0)
        yield info, make_case_augment(rng, KINDS[index % len(KINDS)])
