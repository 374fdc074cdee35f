"""Augmentation of one image: the geometric warp, colour jitter and synthetic occlusion.

Geometry. ROMP crops, rotates, flips, pads to a square and resizes in four steps (romp_datasets.md §2.2).
Here the four are one affine map from the original image to the S x S network input:

    u_in = s * F @ R(deg) @ (u_org - c) + (S/2, S/2),       s = S / side

* ``c`` and ``side``: a square box in the original image (the whole image letterboxed, or a box around
  some persons); whatever the box covers outside the image comes out black. A person crop is ROMP's
  (``utils/augments.py``): a square around the persons, cut to the image, and that cut padded back to a
  centred square; the padding is black even where the original image has content (``AugmentParams.visible``).
* ``R(deg)``: OpenCV's in-plane rotation (``cv2.getRotationMatrix2D``; content turns counter-clockwise on
  screen for deg > 0), the convention of ``romp_hydra.geometry.rotations`` so that 3D joints and the SMPL
  root turn with the image. ROMP's imgaug angle ``rot`` is ``-deg``.
* ``F``: ``diag(-1, 1)`` when flipping, else the identity. Rotation comes first, then the flip (as ROMP).

Pixel coordinates are continuous (the image spans [0, W] x [0, H]; pixel (col, row) has its centre at
(col + 0.5, row + 0.5)), so the flip is the true mirror ``x -> W - x`` and the normalised coordinates are
``2 * u_in / S - 1``. :func:`affine_for_opencv` converts the map to OpenCV's pixel-centre convention for
``cv2.warpAffine``; nothing else needs that form.

All random choices come from the ``numpy.random.Generator`` handed in, so an augmentation is a pure
function of (annotations, generator state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from romp_hydra.config.schema import AugmentConfig
from romp_hydra.geometry.rotations import inplane_rotation_matrix_np

# A keypoint whose visibility is <= this is treated as missing (ROMP's vis_thresh).
VIS_THRESHOLD = 0.03
# A person-centred crop is never smaller than this fraction of the image's longer side: a person with one
# visible joint would otherwise be magnified to a blur.
MIN_CROP_FRACTION = 1.0 / 8.0
# Synthetic occluders cover this fraction range of the person's box, per side.
OCCLUDER_SIZE_RANGE = (0.2, 0.5)
_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as torchvision


# The options are the config schema's (one definition of names and defaults): cfg.data.augment.
AugmentSettings = AugmentConfig


@dataclass(frozen=True)
class AugmentParams:
    """Every random choice made for one sample.

    ``crop_center`` (x, y) and ``crop_side`` are in continuous pixels of the original image. ``visible`` is the
    part of the input that shows the image, ``(x0, y0, x1, y1)`` in normalised input coordinates ([-1, 1],
    before rotation, after the flip); the rest is black. ``None``: everything the box covers inside the image.
    ``jitter`` holds the (brightness, contrast, saturation) factors, applied in ``jitter_order``;
    ``None`` means no colour jitter. ``occlusion_seed`` seeds the occluder's placement; ``None`` means none.
    """

    crop_center: tuple[float, float]
    crop_side: float
    rotation_deg: float = 0.0
    flip: bool = False
    person_crop: bool = False
    jitter: tuple[float, float, float] | None = None
    jitter_order: tuple[int, int, int] = (0, 1, 2)
    occlusion_seed: int | None = None
    visible: tuple[float, float, float, float] | None = None

    @classmethod
    def letterbox(cls, height: int, width: int, *, rotation_deg: float = 0.0, flip: bool = False) -> AugmentParams:
        """The whole image, centred and padded to a square (the eval-mode warp)."""
        center, side = letterbox_box(height, width)
        return cls(crop_center=center, crop_side=side, rotation_deg=rotation_deg, flip=flip)


def letterbox_box(height: int, width: int) -> tuple[tuple[float, float], float]:
    """Square box that holds the whole image, centred on it: ((cx, cy), side)."""
    return (width / 2.0, height / 2.0), float(max(height, width))


def person_crop_box(
    points: np.ndarray, height: int, width: int, scale: float,
) -> tuple[tuple[float, float], float, tuple[float, float, float, float]]:
    """ROMP's person crop (``image_base._calc_augment_confs``, ``augments.get_image_cut_box``, ``image_crop_pad``).

    1. the bounding box of the points, clipped to the image;
    2. a square of half-side ``floor(scale * longer side / 2)`` on its (integer) centre;
    3. that square cut to the image (the part that has pixels);
    4. the cut padded to a square again, centred (imgaug's padding: the odd pixel goes right / bottom).

    Args:
        points: (K, 2) visible keypoints / box corners of the chosen persons, original pixels.
        height, width: the original image size.
        scale: the enlargement factor.

    Returns:
        ``((cx, cy), side, (x0, y0, x1, y1))``: the padded square and the cut (step 3), original pixels.

    Differences to ROMP: ROMP clips the box's top-left to [0, W] and its bottom-right to [0, H] in both
    coordinates (so persons right of x = H in a landscape image fall out of the crop); here x is clipped to
    [0, W] and y to [0, H]. A square smaller than MIN_CROP_FRACTION of the longer image side is enlarged to
    it (ROMP turns a one-joint person into an empty crop and a black image).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        raise ValueError("person_crop_box needs at least one point; use letterbox_box for an empty image")
    clipped = np.clip(points, 0.0, (width, height))
    left_top, right_bottom = clipped.min(axis=0), clipped.max(axis=0)
    centre = np.trunc((left_top + right_bottom) / 2.0)
    half = max(np.floor(scale * (right_bottom - left_top) / 2.0).max(), max(height, width) * MIN_CROP_FRACTION / 2)
    x0, y0 = max(0.0, centre[0] - half), max(0.0, centre[1] - half)
    x1, y1 = min(float(width), centre[0] + half), min(float(height), centre[1] + half)
    side = max(x1 - x0, y1 - y0)
    left = x0 - np.floor((side - (x1 - x0)) / 2.0)
    top = y0 - np.floor((side - (y1 - y0)) / 2.0)
    return (float(left + side / 2.0), float(top + side / 2.0)), float(side), (x0, y0, x1, y1)


def visible_in_input(
    box: tuple[float, float, float, float], center: tuple[float, float], side: float, flip: bool,
) -> tuple[float, float, float, float]:
    """An original-pixel rectangle in normalised input coordinates of the square (center, side), ignoring
    rotation; mirrored when flipping (the flip is about the square's centre)."""
    x0, x1 = (2.0 * (box[0] - center[0]) / side, 2.0 * (box[2] - center[0]) / side)
    y0, y1 = (2.0 * (box[1] - center[1]) / side, 2.0 * (box[3] - center[1]) / side)
    if flip:
        x0, x1 = -x1, -x0
    return (x0, y0, x1, y1)


def draw_augment_params(
    rng: np.random.Generator,
    settings: AugmentSettings,
    height: int,
    width: int,
    person_points: Sequence[np.ndarray],
    scale_range: tuple[float, float],
    is_3d: bool,
) -> AugmentParams:
    """Draw one sample's augmentation (ROMP HEAD's ``_calc_augment_confs``).

    Args:
        rng: the sample's generator; the only source of randomness.
        settings: probabilities and strengths.
        height, width: original image size.
        person_points: per person, its (K, 2) visible points in original pixels (visible joints of a pose,
            the visible-box corners of a box person); persons with K = 0 cannot anchor a crop.
        scale_range: (low, high) crop enlargement factor of the source.
        is_3d: the source is a 3D dataset (uses ``crop_prob_3d`` instead of ``crop_prob_2d``).

    The crop box is chosen around ``k ~ U{1..n}`` random persons in the *original* image and the rotation
    turns about the crop centre, so the chosen persons stay in view. (ROMP HEAD computes the box on the
    un-rotated, un-flipped points but applies it to the rotated and flipped image, so a flipped crop shows the
    mirror region instead of the chosen persons.)
    """
    if not settings.enabled:
        return AugmentParams.letterbox(height, width)
    flip = bool(rng.random() < settings.flip_prob)
    rotation_deg = 0.0
    if rng.random() < settings.rotate_prob:
        rotation_deg = float(rng.uniform(-settings.max_rotate_deg, settings.max_rotate_deg))

    center, side = letterbox_box(height, width)
    person_crop, visible = False, None
    anchors = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in person_points]
    anchors = [p for p in anchors if len(p) > 0]
    crop_prob = settings.crop_prob_3d if is_3d else settings.crop_prob_2d
    if rng.random() < crop_prob and anchors:
        scale = float(rng.uniform(scale_range[0], scale_range[1]))
        num_chosen = int(rng.integers(1, len(anchors) + 1))
        chosen = rng.choice(len(anchors), size=num_chosen, replace=False)
        center, side, cut = person_crop_box(np.concatenate([anchors[i] for i in chosen]), height, width, scale)
        visible = visible_in_input(cut, center, side, flip)
        person_crop = True

    jitter, jitter_order = None, (0, 1, 2)
    if rng.random() < settings.color_jitter_prob:
        strength = settings.color_jitter_strength
        jitter = tuple(float(f) for f in rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength, size=3))
        jitter_order = tuple(int(i) for i in rng.permutation(3))

    occlusion_seed = None
    if rng.random() < settings.occlusion_prob:
        occlusion_seed = int(rng.integers(0, 2**31 - 1))

    return AugmentParams(
        crop_center=center, crop_side=side, rotation_deg=rotation_deg, flip=flip, person_crop=person_crop,
        jitter=jitter, jitter_order=jitter_order, occlusion_seed=occlusion_seed, visible=visible,
    )


def build_affine(
    center: tuple[float, float], side: float, rotation_deg: float, flip: bool, out_size: int,
) -> np.ndarray:
    """The 2x3 map from original-image pixels to input pixels (continuous convention; module docstring).

    ``u_in = s * F @ R(rotation_deg) @ (u_org - center) + out_size / 2`` with ``s = out_size / side``.
    """
    if side <= 0:
        raise ValueError(f"crop side must be positive, got {side}")
    linear = (out_size / side) * inplane_rotation_matrix_np(rotation_deg)[:2, :2]
    if flip:
        linear = np.diag([-1.0, 1.0]) @ linear
    translation = np.full(2, out_size / 2.0) - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, translation[:, None]], axis=1)


def affine_for_opencv(affine: np.ndarray) -> np.ndarray:
    """Convert a continuous-pixel affine map to OpenCV's convention (pixel centres at integers).

    With ``p = u - 0.5`` on both sides: ``p_in = A p_org + (t + A @ (0.5, 0.5) - (0.5, 0.5))``.
    """
    linear, translation = affine[:, :2], affine[:, 2]
    half = np.full(2, 0.5)
    return np.concatenate([linear, (translation + linear @ half - half)[:, None]], axis=1)


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine matrix. Sentinels are not special-cased."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def warp_image(
    image: np.ndarray, affine: np.ndarray, out_size: int,
    visible: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Warp an (H, W, 3) uint8 image into the (S, S, 3) input: bilinear, black outside the original, and
    black outside ``visible`` (normalised input rectangle, see ``AugmentParams.visible``) when given."""
    warped = cv2.warpAffine(
        np.ascontiguousarray(image), affine_for_opencv(affine), (out_size, out_size),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )
    if visible is not None:
        # Pixel (col, row) is kept when its centre lies inside the rectangle.
        x0, y0, x1, y1 = ((np.asarray(visible) + 1.0) * out_size / 2.0).tolist()
        cols = np.arange(out_size) + 0.5
        outside_x, outside_y = (cols < x0) | (cols > x1), (cols < y0) | (cols > y1)
        warped[outside_y] = 0
        warped[:, outside_x] = 0
    return warped


def crop_offsets(center: tuple[float, float], side: float, height: int, width: int) -> np.ndarray:
    """ROMP's 10 ``offsets`` for a square box, in original pixels.

    ``(pad_h, pad_w, crop_t, crop_r, crop_b, crop_l, pad_t, pad_r, pad_b, pad_l)``: the side of the square
    (``pad_h == pad_w``), how much of the image is cut off on each side, how much black is added on each
    side. Without rotation and flip, an input point with normalised coordinates ``v`` came from original
    pixel ``(v + 1) * side / 2 + (crop_l - pad_l, crop_t - pad_t)``
    (``romp_hydra.geometry.camera.normalized_to_original_image``). With rotation or flip, the offsets
    still describe the un-rotated box; use the sample's ``affine`` to map points exactly.
    """
    left, top = center[0] - side / 2.0, center[1] - side / 2.0
    right, bottom = left + side, top + side
    return np.array(
        [
            side, side,
            max(0.0, top), max(0.0, width - right), max(0.0, height - bottom), max(0.0, left),
            max(0.0, -top), max(0.0, right - width), max(0.0, bottom - height), max(0.0, -left),
        ],
        dtype=np.float32,
    )


def rotate_flip_points3d(points: np.ndarray, rotation_deg: float, flip: bool) -> np.ndarray:
    """Turn camera-frame 3D points (..., 3) with the image: in-plane rotation, then mirror (x -> -x).

    Joint re-ordering after a flip is the caller's job (this also serves non-joint vectors).
    """
    out = np.asarray(points, dtype=np.float64) @ inplane_rotation_matrix_np(rotation_deg).T
    if flip:
        out[..., 0] *= -1.0
    return out


def color_jitter(
    image: np.ndarray, factors: tuple[float, float, float], order: Sequence[int] = (0, 1, 2),
) -> np.ndarray:
    """Brightness, contrast and saturation jitter (torchvision ``ColorJitter`` semantics, in numpy).

    Args:
        image: (H, W, 3) uint8 RGB.
        factors: (brightness, contrast, saturation); 1 leaves the image unchanged.
        order: the order in which the three adjustments are applied (0, 1, 2 as in ``factors``).

    Brightness scales the pixels, contrast blends with the mean grey level, saturation blends with the
    per-pixel grey; the result is clamped to [0, 255] after each step.

    Each step runs in place on one float32 copy with OpenCV (a third of the cost of the plain numpy
    expressions). A factor <= 1 blends towards a value inside [0, 255], so its clamp is skipped; the final
    rounding is OpenCV's (half to even, as ``np.round``). Up to float rounding this is the plain float
    computation: at most 1 grey level apart, on a few pixels in a million.
    """
    image = np.ascontiguousarray(image)
    out = image.astype(np.float32)
    for step, op in enumerate(order):
        factor = float(factors[op])
        if op == 0:
            np.multiply(out, np.float32(factor), out=out)
        elif op == 1:
            # Channel means of the uint8 input are exact and cheaper while nothing has changed it yet.
            channel_means = cv2.mean(image if step == 0 else out)[:3]
            mean = float(np.dot(channel_means, _GRAY_WEIGHTS.astype(np.float64)))
            cv2.addWeighted(out, factor, out, 0.0, (1.0 - factor) * mean, dst=out)
        else:
            to_gray = np.broadcast_to(_GRAY_WEIGHTS.astype(np.float64), (3, 3))
            blend = factor * np.eye(3) + (1.0 - factor) * to_gray
            out = cv2.transform(out, blend.astype(np.float32))
        if factor > 1.0:
            np.clip(out, 0.0, 255.0, out=out)
    # Every value is in [0, 255] (up to float rounding), so the absolute value changes nothing.
    return cv2.convertScaleAbs(out)


def synthetic_occlusion(image: np.ndarray, person_boxes: np.ndarray, seed: int) -> np.ndarray:
    """Paint a grey or noise-textured rectangle over part of one random person.

    ROMP pastes Pascal VOC object cut-outs; this needs no external files. Labels are left unchanged so
    that the network learns to infer occluded joints.

    Args:
        image: (S, S, 3) uint8 input image (not modified).
        person_boxes: (K, 4) ``[x0, y0, x1, y1]`` boxes of the persons in input pixels.
        seed: seeds the occluder's person, size, position and fill.
    """
    boxes = np.asarray(person_boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return image
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = boxes[int(rng.integers(len(boxes)))]
    occ_w = max(2.0, (x1 - x0) * rng.uniform(*OCCLUDER_SIZE_RANGE))
    occ_h = max(2.0, (y1 - y0) * rng.uniform(*OCCLUDER_SIZE_RANGE))
    cx, cy = rng.uniform(x0, max(x0, x1)), rng.uniform(y0, max(y0, y1))
    size_h, size_w = image.shape[:2]
    left, right = int(np.clip(round(cx - occ_w / 2), 0, size_w)), int(np.clip(round(cx + occ_w / 2), 0, size_w))
    top, bottom = int(np.clip(round(cy - occ_h / 2), 0, size_h)), int(np.clip(round(cy + occ_h / 2), 0, size_h))
    out = image.copy()
    if right <= left or bottom <= top:
        return out
    if rng.random() < 0.5:
        out[top:bottom, left:right] = np.uint8(rng.integers(0, 256))
    else:
        out[top:bottom, left:right] = rng.integers(0, 256, size=(bottom - top, right - left, 3), dtype=np.uint8)
    return out
