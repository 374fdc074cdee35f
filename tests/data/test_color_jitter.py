"""Colour jitter (OpenCV, in place) against the plain float computation it replaces, and its effect per factor."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from romp_hydra.data.augment import color_jitter

GRAY = np.array([0.299, 0.587, 0.114])


def reference_jitter(image, factors, order):
    """Each step on a float copy, clamped to [0, 255] after each, rounded at the end."""
    out = image.astype(np.float64)
    for op in order:
        factor = factors[op]
        if op == 0:
            out = out * factor
        elif op == 1:
            mean = (out @ GRAY).mean()
            out = (out - mean) * factor + mean
        else:
            gray = (out @ GRAY)[..., None]
            out = (out - gray) * factor + gray
        out = np.clip(out, 0.0, 255.0)
    return np.round(out).astype(np.uint8)


@pytest.fixture(scope="module")
def photo():
    """A smooth colourful 96 x 128 image with black and white areas (so the clamps matter)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (9, 9), 3).astype(np.int64)
    return np.clip((smooth - 128) * 6 + 128, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_matches_the_float_reference_within_one_grey_level(photo, order):
    assert 0 < np.mean(photo == 0) and 0 < np.mean(photo == 255)
    rng = np.random.default_rng(sum(d * 10**i for i, d in enumerate(order)))
    for factors in [(0.9, 0.9, 0.9), (1.1, 1.1, 1.1), (0.0, 1.1, 0.0), *rng.uniform(0.5, 1.5, size=(4, 3))]:
        factors = tuple(float(f) for f in factors)
        got = color_jitter(photo, factors, order).astype(np.int64)
        want = reference_jitter(photo, factors, order).astype(np.int64)
        assert got.shape == photo.shape
        assert np.abs(got - want).max() <= 1, (factors, order)
        assert np.mean(got != want) < 1e-3, (factors, order)  # rounding ties only, not a systematic offset


def test_each_factor_scales_what_it_should_per_channel(photo):
    image = (photo // 4 + 96).astype(np.uint8)  # in [96, 159]: no clamp, so each factor shows exactly
    pixels = image.reshape(-1, 3).astype(np.float64)
    np.testing.assert_array_equal(color_jitter(image, (1.0, 1.0, 1.0)), image)

    # Brightness: every channel times the factor.
    out = color_jitter(image, (1.2, 1.0, 1.0)).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(out.mean(0) / pixels.mean(0), 1.2, atol=0.01)

    # Contrast: each channel's distance from the image's mean grey times the factor.
    mean_gray = (pixels @ GRAY).mean()
    out = color_jitter(image, (1.0, 0.8, 1.0)).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(np.abs(out - mean_gray).mean(0) / np.abs(pixels - mean_gray).mean(0), 0.8, atol=0.01)
    assert abs((out @ GRAY).mean() - mean_gray) < 0.5

    # Saturation: each channel's distance from the pixel's grey times the factor; the grey stays.
    gray = (pixels @ GRAY)[:, None]
    out = color_jitter(image, (1.0, 1.0, 1.3)).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(np.abs(out - gray).mean(0) / np.abs(pixels - gray).mean(0), 1.3, atol=0.01)
    assert np.abs(out @ GRAY - gray[:, 0]).max() < 1.0

    # The order matters when a clamp does: brightening then desaturating is not the reverse.
    factors = (1.5, 1.0, 0.5)
    assert not np.array_equal(color_jitter(photo, factors, (0, 2, 1)), color_jitter(photo, factors, (2, 0, 1)))
