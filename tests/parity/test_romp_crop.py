"""Person crops are ROMP's: the square around the persons is cut to the image and padded to a centred square."""

from __future__ import annotations

import numpy as np

from romp_hydra.data.augment import (
    AugmentSettings,
    build_affine,
    draw_augment_params,
    person_crop_box,
    warp_image,
)

# A person at the right border of a 200 x 100 image: points x 170..190, y 20..80.
POINTS = np.array([[170.0, 20.0], [190.0, 80.0], [180.0, 50.0]])


def test_crop_box_by_hand():
    # ROMP: centre (180, 50), half side floor(2.0 * 60 / 2) = 60 -> square [120, -10, 240, 110];
    # cut to the image -> [120, 0, 200, 100] (80 x 100); padded to 100 x 100 with 10 px on each side:
    # left = 120 - 10 = 110, top = 0, so the square's centre is (160, 50).
    center, side, cut = person_crop_box(POINTS, height=100, width=200, scale=2.0)
    assert center == (160.0, 50.0) and side == 100.0 and cut == (120.0, 0.0, 200.0, 100.0)


def test_padding_is_black_even_where_the_image_has_pixels():
    settings = AugmentSettings(flip_prob=0.0, rotate_prob=0.0, crop_prob_2d=1.0, color_jitter_prob=0.0)
    params = draw_augment_params(np.random.default_rng(0), settings, 100, 200, [POINTS], (2.0, 2.0), False)
    assert params.person_crop and params.crop_center == (160.0, 50.0) and params.crop_side == 100.0
    np.testing.assert_allclose(params.visible, (-0.8, -1.0, 0.8, 1.0))

    image = np.full((100, 200, 3), 200, dtype=np.uint8)
    warped = warp_image(image, build_affine(params.crop_center, params.crop_side, 0.0, False, 100), 100,
                        params.visible)
    # Columns 0..9 show original x 110..119 (inside the image) but ROMP pads them black; so is 90..99 (x > 200).
    assert warped[:, :10].max() == 0 and warped[:, 90:].max() == 0
    assert warped[:, 10:90].min() == 200

    flipped = draw_augment_params(
        np.random.default_rng(0), AugmentSettings(flip_prob=1.0, rotate_prob=0.0, crop_prob_2d=1.0,
                                                  color_jitter_prob=0.0), 100, 200, [POINTS], (2.0, 2.0), False)
    np.testing.assert_allclose(flipped.visible, (-0.8, -1.0, 0.8, 1.0))  # symmetric cut: same after the mirror


def test_training_samples_carry_the_black_padding():
    from romp_hydra.data.pipeline import SamplePipeline
    from tests.data.builders import make_info

    pose = np.full((54, 3), -2.0)
    pose[:3] = np.concatenate([POINTS, np.ones((3, 1))], axis=1)
    info = make_info(image=np.full((100, 200, 3), 200, dtype=np.uint8), poses=[pose])
    data = {"input_size": 64, "centermap_size": 8, "augment": {"flip_prob": 0.0, "rotate_prob": 0.0,
                                                              "crop_prob_2d": 1.0, "color_jitter_prob": 0.0}}
    sample = SamplePipeline(data, train=True)(info, np.random.default_rng(0), (2.0, 2.0), False)
    image = np.asarray(sample["image"])
    image = image if image.shape[-1] == 3 else np.moveaxis(image, 0, -1)  # HWC or CHW
    # The cut spans normalised x in [-0.8, 0.8]: pixel columns 0..5 and 58..63 of 64 are padding.
    assert image[:, :6].max() == 0 and image[:, 58:].max() == 0 and image[:, 7:57].min() == 200
