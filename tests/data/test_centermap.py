"""Person centres, radii, the Gaussian heatmap and CAR (romp_hydra.data.centermap)."""

from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.augment import build_affine
from romp_hydra.data.centermap import (
    box_person_centers,
    center_radii,
    center_to_cell,
    collision_aware_push,
    draw_centermap,
    gaussian_kernel,
    pose_centers,
)


def pose_center(kp):
    centers, _, found = pose_centers(kp[None])
    return centers[0] if found[0] else None


def box_person_center(box, affine, size):
    centers, hw, found = box_person_centers(box[None], affine, size)
    return (centers[0], hw[0]) if found[0] else None


@pytest.mark.parametrize("hw,expected", [((0.0, 0.0), 2), ((0.5, 0.25), 3), ((1.0, 1.0), 4), ((2.0, 2.0), 7)])
def test_radius_formula_for_c64(hw, expected):
    # int(||hw/2|| * 64/16 + 64/32): (1, 1) -> 0.707 * 4 + 2 = 4.83 -> 4; (2, 2) -> 1.414 * 4 + 2 = 7.66 -> 7.
    assert center_radii(np.array([hw]), 64).tolist() == [expected]


def test_radius_grows_with_person_size():
    radii = center_radii(np.array([[h, h / 2] for h in (0.1, 0.6, 1.2, 1.9)]), 64).tolist()
    assert radii == sorted(radii) and radii[0] < radii[-1]


def test_gaussian_kernel_shape_peak_and_sigma():
    kernel = gaussian_kernel(2)
    sigma = 5.0 / 6.0
    assert kernel.shape == (5, 5) and kernel[2, 2] == 1.0
    assert kernel[2, 3] == pytest.approx(np.exp(-1.0 / (2 * sigma**2)))
    assert kernel[0, 0] == pytest.approx(np.exp(-8.0 / (2 * sigma**2)))
    np.testing.assert_allclose(kernel, kernel.T)


def test_center_to_cell():
    assert center_to_cell(np.array([0.0, 0.0]), 64).tolist() == [32, 32]
    assert center_to_cell(np.array([-1.0, 0.99]), 64).tolist() == [0, 63]
    np.testing.assert_array_equal(center_to_cell(np.array([[-0.5, 0.25], [1.0, -1.01]]), 8), [[2, 5], [8, -1]])


def test_heatmap_peak_is_exactly_one_at_the_centre():
    heatmap = draw_centermap(np.array([[0.1, -0.3]]), [3], 64)
    assert heatmap.shape == (1, 64, 64) and heatmap.dtype == np.float32
    col, row = int((0.1 + 1) / 2 * 64), int((-0.3 + 1) / 2 * 64)
    assert (col, row) == (35, 22)
    assert heatmap[0, row, col] == 1.0
    assert np.count_nonzero(heatmap == 1.0) == 1
    # Support is the (2r+1)^2 square around the peak.
    rows, cols = np.nonzero(heatmap[0])
    assert rows.min() == row - 3 and rows.max() == row + 3 and cols.min() == col - 3 and cols.max() == col + 3


def test_heatmap_max_merges_and_keeps_every_peak():
    centers = np.array([[0.0, 0.0], [0.06, 0.0]])  # cells 32 and 33 in x, same row
    heatmap = draw_centermap(centers, [4, 4], 64)[0]
    assert heatmap[32, 32] == 1.0 and heatmap[32, 33] == 1.0
    single = draw_centermap(centers[:1], [4], 64)[0]
    assert np.all(heatmap >= single)


def test_heatmap_clips_at_borders_and_skips_outside():
    heatmap = draw_centermap(np.array([[-0.99, 0.99], [1.5, 0.0]]), [5, 5], 64)[0]
    assert heatmap[63, 0] == 1.0
    assert np.count_nonzero(heatmap == 1.0) == 1


def test_larger_radius_covers_more_cells():
    small = np.count_nonzero(draw_centermap(np.zeros((1, 2)), [2], 64))
    large = np.count_nonzero(draw_centermap(np.zeros((1, 2)), [6], 64))
    assert large > small


def test_pose_center_uses_torso_then_all_visible():
    kp = np.full((54, 2), -2.0)
    kp[JOINT54["L_Hip"]] = (0.2, 0.4)
    kp[JOINT54["R_Hip"]] = (0.0, 0.4)
    kp[JOINT54["Neck"]] = (0.1, -0.2)
    kp[JOINT54["L_Ankle"]] = (0.5, 0.9)  # not torso: ignored while a torso joint is visible
    np.testing.assert_allclose(pose_center(kp), [0.1, 0.2])
    limbs_only = np.full((54, 2), -2.0)
    limbs_only[JOINT54["L_Ankle"]] = (0.5, 0.9)
    limbs_only[JOINT54["R_Wrist"]] = (-0.1, 0.1)
    np.testing.assert_allclose(pose_center(limbs_only), [0.2, 0.5])
    assert pose_center(np.full((54, 2), -2.0)) is None


def test_pose_box_is_the_box_of_visible_joints_zero_without_any():
    kp = np.full((54, 2), -2.0)
    kp[0], kp[5], kp[9] = (-0.5, -0.2), (0.1, 0.6), (0.0, 0.0)
    _, hw, found = pose_centers(np.stack([kp, np.full((54, 2), -2.0)]))
    np.testing.assert_allclose(hw, [[0.8, 0.6], [0.0, 0.0]])  # (h, w)
    np.testing.assert_array_equal(found, [True, False])


def test_box_person_center_full_then_visible_box():
    identity = build_affine((64.0, 64.0), 128.0, 0.0, False, 128)
    # Visible box taller than wide, full-box centre inside: the full box, 0.7 * top + 0.3 * bottom.
    box = np.array([[20.0, 10.0], [60.0, 110.0], [25.0, 20.0], [55.0, 100.0]])
    center, hw = box_person_center(box, identity, 128)
    np.testing.assert_allclose(center, [40.0 / 64 - 1, 40.0 / 64 - 1])
    np.testing.assert_allclose(hw, [100.0 / 64, 40.0 / 64])
    # Wide visible box: the visible box, 0.6 * top + 0.4 * bottom.
    wide = np.array([[20.0, 10.0], [60.0, 110.0], [20.0, 50.0], [60.0, 70.0]])
    center, hw = box_person_center(wide, identity, 128)
    np.testing.assert_allclose(center, [40.0 / 64 - 1, 58.0 / 64 - 1])
    np.testing.assert_allclose(hw, [20.0 / 64, 40.0 / 64])
    # Full-box centre above the image: falls back to the visible box.
    cut = np.array([[20.0, -300.0], [60.0, 110.0], [25.0, 0.0], [55.0, 100.0]])
    center, _ = box_person_center(cut, identity, 128)
    np.testing.assert_allclose(center, [40.0 / 64 - 1, 40.0 / 64 - 1])
    # Entirely outside: dropped.
    assert box_person_center(box + 500.0, identity, 128) is None


def test_box_person_center_follows_the_flip():
    box = np.array([[20.0, 10.0], [60.0, 110.0], [25.0, 20.0], [55.0, 100.0]])
    mirror = build_affine((64.0, 64.0), 128.0, 0.0, True, 128)
    center, hw = box_person_center(box, mirror, 128)
    np.testing.assert_allclose(center, [(128 - 40.0) / 64 - 1, 40.0 / 64 - 1])
    assert np.all(hw > 0)  # ROMP's un-reordered corners would give a negative width


def test_car_pushes_close_centres_apart_by_the_expected_amount():
    centers = np.array([[0.0, 0.0], [0.1, 0.0]])
    radii = [4, 4]
    pushed = collision_aware_push(centers, radii, 64, 0.2)
    least = (4 + 4 + 1) / 64 * 2  # 0.28125
    shift = (least - 0.1) * 0.2
    np.testing.assert_allclose(pushed, [[-shift / 2, 0.0], [0.1 + shift / 2, 0.0]])


def test_car_leaves_far_centres_alone():
    centers = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.8]])
    np.testing.assert_array_equal(collision_aware_push(centers, [4, 4, 4], 64, 0.2), centers)


def test_car_separates_coincident_centres_and_ignores_order():
    pushed = collision_aware_push(np.array([[0.2, 0.2], [0.2, 0.2]]), [3, 3], 64, 0.2)
    assert pushed[0, 0] < 0.2 < pushed[1, 0]
    np.testing.assert_allclose(pushed[:, 1], 0.2)
    centers = np.array([[0.0, 0.0], [0.05, 0.02], [0.1, -0.03], [0.9, 0.9]])
    radii = [3, 4, 5, 2]
    forward = collision_aware_push(centers, radii, 64, 0.2)
    order = [2, 3, 0, 1]
    shuffled = collision_aware_push(centers[order], [radii[i] for i in order], 64, 0.2)
    np.testing.assert_allclose(shuffled, forward[order], atol=1e-12)
    np.testing.assert_array_equal(forward[3], centers[3])
