"""The prototype pose space of the synthetic data: plausible, within the joint limits, and not one pose."""
from __future__ import annotations

import numpy as np

from romp_hydra.data.synthetic.poses import BODY_JOINT_LIMITS, POSE_PROTOTYPES, sample_prototype_pose


def test_prototype_poses_stay_within_the_joint_limits_and_spread_around_several_modes():
    rng = np.random.default_rng(0)
    poses = np.stack([sample_prototype_pose(rng) for _ in range(400)]).reshape(400, 21, 3)
    low, high = BODY_JOINT_LIMITS[..., 0], BODY_JOINT_LIMITS[..., 1]
    assert (poses >= low - 1e-9).all() and (poses <= high + 1e-9).all()
    # Every draw is near a prototype or a blend of two, and every prototype is drawn.
    prototypes = np.stack(list(POSE_PROTOTYPES.values()))
    mirrored = prototypes[:, [1, 0, 2, 4, 3, 5, 7, 6, 8, 10, 9, 11, 13, 12, 14, 16, 15, 18, 17, 20, 19]]
    mirrored = mirrored * np.array([1.0, -1.0, -1.0])
    nearest = np.concatenate([prototypes, mirrored])
    distance = np.abs(poses[:, None] - nearest[None]).mean(axis=(2, 3))  # mean |angle difference| (rad)
    assert set(distance.argmin(axis=1) % len(prototypes)) == set(range(len(prototypes)))
    # A knee bends to sit or kneel in some draws and stays straight in others: not one pose with noise.
    knee = np.rad2deg(poses[:, 3, 0])
    assert (knee > 60).mean() > 0.15 and (knee < 20).mean() > 0.3
