"""Person centres and the body-centre heatmap (ROMP's ``heatmap_adaptive_scale``, romp_datasets.md §5).

All centres are normalised ``(x, y)`` in [-1, 1] over the square input (ROMP keeps (y, x); we do not).
A centre maps to the heatmap cell ``(int((x + 1) / 2 * C), int((y + 1) / 2 * C))`` (column, row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from romp_hydra.body.joint_sets import TORSO_JOINTS
from romp_hydra.data.augment import apply_affine

# Box persons: ROMP places the centre this far down from the box top (full box / visible box, HEAD).
FULL_BOX_TOP_WEIGHT = 0.7
VISIBLE_BOX_TOP_WEIGHT = 0.6


def visible_joints(kp2d: np.ndarray) -> np.ndarray:
    """(J,) bool: joints of a normalised (J, 2) pose that are present (both coordinates > -1)."""
    return np.all(kp2d > -1.0, axis=-1)


def pose_center(kp2d: np.ndarray) -> np.ndarray | None:
    """Centre of a pose person: mean of its visible torso joints, else of all its visible joints.

    Args:
        kp2d: (54, 2) normalised keypoints, -2 where missing.

    Returns:
        (2,) normalised (x, y), or None when no joint is visible (ROMP drops such persons).
    """
    visible = visible_joints(kp2d)
    torso = np.zeros_like(visible)
    torso[list(TORSO_JOINTS)] = True
    for subset in (visible & torso, visible):
        if subset.any():
            return kp2d[subset].mean(axis=0)
    return None


def pose_box_hw(kp2d: np.ndarray) -> np.ndarray:
    """(h, w) of the bounding box of a pose's visible joints, in normalised units (at most 2)."""
    points = kp2d[visible_joints(kp2d)]
    if len(points) == 0:
        return np.zeros(2)
    extent = points.max(axis=0) - points.min(axis=0)
    return extent[::-1].copy()


def _box_corners(left_top: np.ndarray, right_bottom: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = left_top, right_bottom
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def box_person_center(box: np.ndarray, affine: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and (h, w) of a box-only person in the network input (ROMP's ``parse_bboxes``).

    Args:
        box: (4, 2) ``[full_lt, full_rb, visible_lt, visible_rb]`` in original pixels.
        affine: (2, 3) original -> input pixel map.
        input_size: side S of the input.

    The anchor ``(mid-x, w_top * top + (1 - w_top) * bottom)`` is placed in the original image and then
    mapped through ``affine``, so rotation and flip move it with the body; ``hw`` is the extent of the
    mapped box corners. ROMP flips the corners without re-ordering them (negative widths) and ignores
    rotation; mapping the points avoids both. The full box is used when the visible box is taller than
    wide and the full-box centre lies inside the image, else the visible box when its centre lies
    inside, else the person is dropped (returns None).
    """
    box = np.asarray(box, dtype=np.float64)
    candidates = []
    visible_w, visible_h = box[3] - box[2]
    if visible_h > visible_w:
        candidates.append((box[0], box[1], FULL_BOX_TOP_WEIGHT))
    candidates.append((box[2], box[3], VISIBLE_BOX_TOP_WEIGHT))
    for left_top, right_bottom, top_weight in candidates:
        anchor = np.array([
            (left_top[0] + right_bottom[0]) / 2.0,
            top_weight * left_top[1] + (1.0 - top_weight) * right_bottom[1],
        ])
        center = apply_affine(anchor, affine) * (2.0 / input_size) - 1.0
        if np.all(np.abs(center) < 1.0):
            corners = apply_affine(_box_corners(left_top, right_bottom), affine) * (2.0 / input_size)
            extent = corners.max(axis=0) - corners.min(axis=0)
            return center, extent[::-1].copy()
    return None


def center_radius(hw: np.ndarray, map_size: int) -> int:
    """Gaussian radius in cells for a person whose box is ``hw`` (normalised): ``int(||hw/2|| * C/16 + C/32)``.

    For C = 64 this is ``int(4 * ||hw/2|| + 2)``, between 2 and 7.
    """
    scale = float(np.linalg.norm(np.asarray(hw, dtype=np.float64) / 2.0))
    return int(scale * map_size / 16.0 + map_size / 32.0)


def gaussian_kernel(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) Gaussian with sigma = (2r+1)/6, peak 1; values below eps * peak set to 0 (as ROMP)."""
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2.0 * sigma**2))
    kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0.0
    return kernel


def center_to_cell(center: np.ndarray, map_size: int) -> tuple[int, int]:
    """Map cell (column, row) of a normalised centre: ``int((c + 1) / 2 * C)``; may fall outside the map."""
    col, row = np.floor((np.asarray(center, dtype=np.float64) + 1.0) / 2.0 * map_size).astype(int)
    return int(col), int(row)


def draw_centermap(centers: np.ndarray, radii: Sequence[int], map_size: int) -> np.ndarray:
    """Render the (1, C, C) float32 centre heatmap.

    Each person adds a Gaussian of its own radius, merged with element-wise max; the centre cell is then
    set to exactly 1 (the positives of the focal loss). Centres outside the map are skipped.
    """
    heatmap = np.zeros((map_size, map_size), dtype=np.float32)
    peaks = []
    for center, radius in zip(np.asarray(centers).reshape(-1, 2), radii):
        col, row = center_to_cell(center, map_size)
        if not (0 <= col < map_size and 0 <= row < map_size):
            continue
        kernel = gaussian_kernel(int(radius))
        left, right = min(col, radius), min(map_size - col, radius + 1)
        top, bottom = min(row, radius), min(map_size - row, radius + 1)
        patch = heatmap[row - top:row + bottom, col - left:col + right]
        np.maximum(patch, kernel[radius - top:radius + bottom, radius - left:radius + right], out=patch)
        peaks.append((row, col))
    for row, col in peaks:
        heatmap[row, col] = 1.0
    return heatmap[None]


def collision_aware_push(
    centers: np.ndarray, radii: Sequence[int], map_size: int, factor: float,
) -> np.ndarray:
    """ROMP's collision-aware representation (CAR): push apart centres whose Gaussians collide.

    Two persons collide when their centres are closer than ``least = (r_i + r_j + 1) / C * 2``. Each such
    pair is pushed apart along the line joining the centres by ``(least - dist) * factor`` in total, half
    to each (the magnitude of ROMP's ``|(least - d) / d| * (c_j - c_i) * factor``).

    Differences from ROMP, on purpose:

    * every colliding pair is pushed. ROMP pairs each person only with its nearest neighbour within 0.25,
      chosen by a "who is in front" test that compares a person's visible-joint count with itself (always
      true), so which pairs got pushed depended on the order of the persons;
    * all pushes are computed from the un-pushed centres and then summed, so the result does not depend on
      the person order either;
    * coincident centres are pushed apart along x (ROMP's +1e-4 gives the diagonal).

    Args:
        centers: (K, 2) normalised pose-person centres.
        radii: (K,) Gaussian radii in cells.
        map_size: C.
        factor: ``collision_factor`` (0.2 in v1).

    Returns:
        (K, 2) pushed centres (not clipped).
    """
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
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
