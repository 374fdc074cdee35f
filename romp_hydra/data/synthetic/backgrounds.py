"""Procedural background images: varied enough that people are not found just by "the non-flat pixels".

Each background is one base texture (gradient, smooth noise, stripes, checkerboard or a clutter of
rectangles), optionally split by a horizon into a "wall" and a "floor", with distractor blobs in
body-like colours and a little pixel noise on top. Everything is drawn from the given generator, so a
background is a pure function of the generator state.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["BACKGROUNDS", "BACKGROUND_KINDS", "plain_background", "random_background", "random_color"]


def random_color(
    rng: np.random.Generator,
    saturation: tuple[float, float] = (0.1, 0.9),
    value: tuple[float, float] = (0.2, 1.0),
) -> np.ndarray:
    """A random RGB colour (float, 0..255) drawn in HSV space, so saturation and brightness are controlled."""
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32
    )
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def _blend(weight: np.ndarray, color_a: np.ndarray, color_b: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two colours; weight (H, W) in [0, 1] selects color_b."""
    weight = weight.astype(np.float32)[..., None]
    return color_a.astype(np.float32) + weight * (color_b - color_a).astype(np.float32)


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    xs, ys = _pixel_grid(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return _blend(ramp, random_color(rng), random_color(rng))


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cells = int(rng.integers(3, 14))
    coarse = rng.random((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    low, high = random_color(rng), random_color(rng)
    return _blend(field, low, high)


def _stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    xs, ys = _pixel_grid(height, width)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 60)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / period)
    wave = 0.5 + 0.5 * np.sin(phase)
    if rng.random() < 0.5:
        wave = (wave > 0.5).astype(np.float32)  # hard-edged bands
    return _blend(wave, random_color(rng), random_color(rng))


def _checkerboard(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    xs, ys = _pixel_grid(height, width)
    tile = rng.uniform(8, 48)
    board = ((np.floor(xs / tile) + np.floor(ys / tile)) % 2).astype(np.float32)
    return _blend(board, random_color(rng), random_color(rng))


def _rectangles(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:] = random_color(rng)
    for _ in range(int(rng.integers(8, 40))):
        x0, x1 = np.sort(rng.integers(0, width, size=2))
        y0, y1 = np.sort(rng.integers(0, height, size=2))
        canvas[y0 : y1 + 1, x0 : x1 + 1] = random_color(rng)
    return canvas


BACKGROUND_KINDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "gradient": _gradient,
    "smooth_noise": _smooth_noise,
    "stripes": _stripes,
    "checkerboard": _checkerboard,
    "rectangles": _rectangles,
}


def _add_blobs(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Ellipses in random (often skin- or cloth-like) colours: round shapes that are not people."""
    height, width = canvas.shape[:2]
    for _ in range(int(rng.integers(1, 7))):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(4, max(5, width // 5))), int(rng.integers(4, max(5, height // 4))))
        color = tuple(float(c) for c in random_color(rng))
        cv2.ellipse(
            canvas,
            center,
            axes,
            float(rng.uniform(0, 180)),
            0.0,
            360.0,
            color,
            thickness=-1,
            lineType=cv2.LINE_AA,
        )


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB procedural background."""
    kinds = list(BACKGROUND_KINDS)
    canvas = BACKGROUND_KINDS[kinds[int(rng.integers(len(kinds)))]](rng, height, width)
    if rng.random() < 0.4:
        # A horizon: the lower part becomes a floor with its own texture.
        horizon = int(rng.uniform(0.35, 0.8) * height)
        floor_kind = kinds[int(rng.integers(len(kinds)))]
        canvas[horizon:] = BACKGROUND_KINDS[floor_kind](rng, height - horizon, width)
    canvas = np.ascontiguousarray(canvas, dtype=np.float32)
    if rng.random() < 0.6:
        _add_blobs(rng, canvas)
    canvas += rng.standard_normal(size=canvas.shape, dtype=np.float32) * np.float32(rng.uniform(0.0, 6.0))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def plain_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB background of one random colour: people are the only structure in the image."""
    color = np.rint(random_color(rng)).astype(np.uint8)
    return np.broadcast_to(color, (height, width, 3)).copy()


# SceneConfig.background -> the function that draws it.
BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "procedural": random_background,
    "plain": plain_background,
}
