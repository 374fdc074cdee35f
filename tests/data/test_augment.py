"""The affine warp, the crop box, offsets, colour jitter and synthetic occlusion (romp_hydra.data.augment)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from romp_hydra.data.augment import (
    AugmentParams,
    AugmentSettings,
    apply_affine,
    build_affine,
    color_jitter,
    crop_offsets,
    draw_augment_params,
    person_crop_box,
    rotate_flip_points3d,
    synthetic_occlusion,
    warp_image,
)
from romp_hydra.geometry.camera import normalized_to_original_image


def test_affine_maps_points_by_hand_computed_crop_rotate_scale():
    # Box centred at (100, 75), side 100, into a 50 x 50 input: scale 0.5, then +25.
    # OpenCV's 90 deg: R = [[0, 1], [-1, 0]], so (dx, dy) -> (dy, -dx).
    affine = build_affine((100.0, 75.0), 100.0, 90.0, False, 50)
    points = np.array([[110.0, 75.0], [100.0, 85.0], [100.0, 75.0]])
    expected = np.array([[25.0, 20.0], [30.0, 25.0], [25.0, 25.0]])
    np.testing.assert_allclose(apply_affine(points, affine), expected, atol=1e-9)
    # The flip mirrors the rotated result about the input's vertical centre line.
    flipped = build_affine((100.0, 75.0), 100.0, 90.0, True, 50)
    np.testing.assert_allclose(apply_affine(points, flipped), [[25.0, 20.0], [20.0, 25.0], [25.0, 25.0]], atol=1e-9)


def test_image_pixel_lands_where_its_point_lands():
    # A single white pixel (col 110, row 75) has its centre at (110.5, 75.5). With side 100 -> 100 (scale 1)
    # and 90 deg, the point goes to (50.5, 39.5): the centre of pixel (col 50, row 39).
    image = np.zeros((150, 200, 3), dtype=np.uint8)
    image[75, 110] = 255
    affine = build_affine((100.0, 75.0), 100.0, 90.0, False, 100)
    np.testing.assert_allclose(apply_affine(np.array([110.5, 75.5]), affine), [50.5, 39.5], atol=1e-9)
    warped = warp_image(image, affine, 100)
    assert warped.shape == (100, 100, 3)
    rows, cols = np.nonzero(warped[..., 0])
    assert rows.tolist() == [39] and cols.tolist() == [50]
    assert warped[39, 50, 0] == 255


def test_flip_is_the_true_mirror_of_image_and_points():
    # Letterbox of a square 64 x 64 image into 64: the identity, and with flip x -> W - x exactly.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    identity = build_affine((32.0, 32.0), 64.0, 0.0, False, 64)
    mirror = build_affine((32.0, 32.0), 64.0, 0.0, True, 64)
    np.testing.assert_array_equal(warp_image(image, identity, 64), image)
    np.testing.assert_array_equal(warp_image(image, mirror, 64), image[:, ::-1])
    np.testing.assert_allclose(apply_affine(np.array([10.25, 7.0]), mirror), [64 - 10.25, 7.0])


def test_warp_pads_with_black_outside_the_image():
    image = np.full((150, 200, 3), 200, dtype=np.uint8)
    params = AugmentParams.letterbox(150, 200)
    affine = build_affine(params.crop_center, params.crop_side, 0.0, False, 100)
    warped = warp_image(image, affine, 100)
    # 150 rows scaled by 0.5 -> 75 rows centred: 12.5 black rows above and below.
    assert warped[:12].max() == 0 and warped[88:].max() == 0
    assert warped[14:86].min() == 200


def test_person_crop_box_is_square_around_points_and_clamped():
    points = np.array([[40.0, 50.0], [60.0, 100.0]])
    center, side, _ = person_crop_box(points, height=150, width=200, scale=2.0)
    assert center == (50.0, 75.0) and side == 100.0
    # Points outside the image are clipped first; the box is cut to the image and re-centred (ROMP).
    center, side, _ = person_crop_box(np.array([[-50.0, 10.0], [150.0, 140.0]]), 150, 200, scale=2.4)
    assert center == (100.0, 75.0) and side == 200.0
    # A single joint still gives a usable box (1/8 of the longer side).
    _, side, _ = person_crop_box(np.array([[30.0, 30.0]]), 150, 200, scale=1.5)
    assert side == 25.0


def test_offsets_describe_crop_and_padding():
    np.testing.assert_allclose(
        crop_offsets((100.0, 75.0), 100.0, height=150, width=200), [100, 100, 25, 50, 25, 50, 0, 0, 0, 0]
    )
    np.testing.assert_allclose(
        crop_offsets((100.0, 75.0), 200.0, height=150, width=200), [200, 200, 0, 0, 0, 0, 25, 0, 25, 0]
    )


@pytest.mark.parametrize("center,side", [((100.0, 75.0), 100.0), ((100.0, 75.0), 200.0), ((30.0, 120.0), 90.0)])
def test_offsets_and_affine_agree_on_the_way_back(center, side):
    size = 64
    affine = build_affine(center, side, 0.0, False, size)
    original = np.array([[37.0, 61.5], [120.25, 90.0]])
    normalised = apply_affine(original, affine) * 2.0 / size - 1.0
    offsets = torch.from_numpy(crop_offsets(center, side, 150, 200))[None]
    back = normalized_to_original_image(torch.from_numpy(normalised)[None], offsets)[0].numpy()
    np.testing.assert_allclose(back, original, atol=1e-4)
    inverse = cv2.invertAffineTransform(affine)
    np.testing.assert_allclose(apply_affine((normalised + 1.0) * size / 2.0, inverse), original, atol=1e-9)


def test_rotate_flip_points3d_uses_the_image_rotation():
    # 90 deg: (x, y) -> (y, -x) like the 2D points; flip then negates x.
    point = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(rotate_flip_points3d(point, 90.0, False), [2.0, -1.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(rotate_flip_points3d(point, 90.0, True), [-2.0, -1.0, 3.0], atol=1e-12)


def test_draw_augment_params_disabled_is_letterbox():
    settings = AugmentSettings(enabled=False)
    params = draw_augment_params(np.random.default_rng(0), settings, 150, 200, [np.array([[10.0, 10.0]])],
                                 (1.2, 2.4), True)
    assert params == AugmentParams.letterbox(150, 200)


def test_draw_augment_params_with_certain_events():
    settings = AugmentSettings(flip_prob=1.0, rotate_prob=1.0, max_rotate_deg=30.0, crop_prob_3d=1.0,
                               color_jitter_prob=1.0, color_jitter_strength=0.1, occlusion_prob=1.0)
    points = [np.array([[40.0, 50.0], [60.0, 100.0]])]
    params = draw_augment_params(np.random.default_rng(3), settings, 150, 200, points, (2.0, 2.0), True)
    assert params.flip and params.person_crop
    assert -30.0 <= params.rotation_deg <= 30.0 and params.rotation_deg != 0.0
    assert params.crop_center == (50.0, 75.0) and params.crop_side == 100.0
    assert params.jitter is not None and all(0.9 <= f <= 1.1 for f in params.jitter)
    assert sorted(params.jitter_order) == [0, 1, 2]
    assert params.occlusion_seed is not None
    # The 2D crop probability is separate from the 3D one.
    no_crop = draw_augment_params(np.random.default_rng(3), settings, 150, 200, points, (2.0, 2.0), False)
    assert not no_crop.person_crop and no_crop.crop_side == 200.0


def test_color_jitter_factors():
    image = np.array([[[100, 50, 200], [20, 40, 60]]], dtype=np.uint8)
    np.testing.assert_array_equal(color_jitter(image, (1.0, 1.0, 1.0)), image)
    np.testing.assert_array_equal(color_jitter(image, (0.5, 1.0, 1.0)), [[[50, 25, 100], [10, 20, 30]]])
    desaturated = color_jitter(image, (1.0, 1.0, 0.0)).astype(int)
    assert np.all(desaturated.max(axis=-1) - desaturated.min(axis=-1) <= 1)
    flat = color_jitter(image, (1.0, 0.0, 1.0))
    assert np.all(flat == flat[0, 0, 0])
    assert np.all(color_jitter(image, (3.0, 1.0, 1.0)) <= 255)


def test_synthetic_occlusion_stays_inside_the_person_and_is_seeded():
    image = np.full((64, 64, 3), 7, dtype=np.uint8)
    box = np.array([[10.0, 20.0, 30.0, 60.0]])
    occluded = synthetic_occlusion(image, box, seed=5)
    changed = np.argwhere(np.any(occluded != image, axis=-1))
    assert len(changed) > 0
    # The occluder is centred in the box and at most half its size per side.
    assert changed[:, 1].min() >= 10 - 5 and changed[:, 1].max() < 30 + 5
    assert changed[:, 0].min() >= 20 - 10 and changed[:, 0].max() < 60 + 10
    np.testing.assert_array_equal(synthetic_occlusion(image, box, seed=5), occluded)
    np.testing.assert_array_equal(synthetic_occlusion(image, np.zeros((0, 4)), seed=5), image)
