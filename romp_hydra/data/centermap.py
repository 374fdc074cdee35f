"""Person centres and the body-centre heatmap (ROMP's ``heatmap_adaptive_scale``, romp_datasets.md §5).

All centres are normalised ``(x, y)`` in [-1, 1] over the square input (ROMP keeps (y, x); we do not).
A centre maps to the heatmap cell ``(int((x + 1) / 2 * C), int((y + 1) / 2 * C))`` (column, row).

Every function takes all persons of an image at once (leading axis N) and works on whole arrays: the
pipeline calls them once per sample, not once per person.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from romp_hydra.body.joint_sets import TORSO_JOINTS
from romp_hydra.data.augment import apply_affine

# Box persons: ROMP places the centre this far down from the box top (full box / visible box, HEAD).
FULL_BOX_TOP_WEIGHT = 0.7
VISIBLE_BOX_TOP_WEIGHT = 0.6
_TORSO = np.zeros(54, dtype=bool)
_TORSO[list(TORSO_JOINTS)] = True


def visible_joints(kp2d: np.ndarray) -> np.ndarray:
    """(..., J) bool: joints of normalised (..., J, 2) poses that are present (both coordinates > -1)."""
    return np.all(kp2d > -1.0, axis=-1)


def pose_centers(kp2d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres and box sizes of pose persons (ROMP's ``kp2d_center`` and the box that sets the radius).

    The centre is the mean of a person's visible torso joints, else of all its visible joints; the box is the
    bounding box of its visible joints.

    Args:
        kp2d: (N, 54, 2) normalised keypoints, -2 where missing.

    Returns:
        ``(centers, hw, found)``: (N, 2) normalised (x, y) and (N, 2) box (h, w) (at most 2), both in the dtype
        of ``kp2d``, and (N,) bool, False for a person without a visible joint (ROMP drops such persons; its
        rows are meaningless).
    """
    kp2d = np.asarray(kp2d).reshape(-1, 54, 2)
    visible = visible_joints(kp2d)
    torso = visible & _TORSO
    used = np.where(torso.any(axis=1, keepdims=True), torso, visible)
    count = used.sum(axis=1)
    centers = np.where(used[..., None], kp2d, 0).sum(axis=1) / np.maximum(count, 1)[:, None].astype(kp2d.dtype)
    shown = visible[..., None]
    low = np.where(shown, kp2d, np.inf).min(axis=1)
    high = np.where(shown, kp2d, -np.inf).max(axis=1)
    found = count > 0
    hw = np.where(found[:, None], high - low, 0.0)[:, ::-1]
    return centers.astype(kp2d.dtype, copy=False), hw, found


def _corners(left_top: np.ndarray, right_bottom: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners (lt, rt, rb, lb) of the boxes ``left_top`` (N, 2) - ``right_bottom`` (N, 2)."""
    x0, y0, x1, y1 = left_top[:, 0], left_top[:, 1], right_bottom[:, 0], right_bottom[:, 1]
    return np.stack([x0, y0, x1, y0, x1, y1, x0, y1], axis=-1).reshape(-1, 4, 2)


def box_person_centers(
    boxes: np.ndarray, affine: np.ndarray, input_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres and (h, w) of box-only persons in the network input (ROMP's ``parse_bboxes``).

    Args:
        boxes: (N, 4, 2) ``[full_lt, full_rb, visible_lt, visible_rb]`` in original pixels.
        affine: (2, 3) original -> input pixel map.
        input_size: side S of the input.

    Returns:
        ``(centers, hw, found)``: (N, 2) normalised centres, (N, 2) normalised box sizes and (N,) bool.

    The anchor ``(mid-x, w_top * top + (1 - w_top) * bottom)`` is placed in the original image and then
    mapped through ``affine``, so rotation and flip move it with the body; ``hw`` is the extent of the
    mapped box corners. ROMP flips the corners without re-ordering them (negative widths) and ignores
    rotation; mapping the points avoids both. The full box is used when the visible box is taller than
    wide and the full-box centre lies inside the image, else the visible box when its centre lies
    inside, else the person is dropped (``found`` False).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4, 2)
    scale = 2.0 / input_size

    def candidate(left_top: np.ndarray, right_bottom: np.ndarray, top_weight: float):
        anchor = np.stack([(left_top[:, 0] + right_bottom[:, 0]) / 2.0,
                           top_weight * left_top[:, 1] + (1.0 - top_weight) * right_bottom[:, 1]], axis=-1)
        center = apply_affine(anchor, affine) * scale - 1.0
        corners = apply_affine(_corners(left_top, right_bottom), affine) * scale
        extent = corners.max(axis=1) - corners.min(axis=1)
        return center, extent[:, ::-1], np.all(np.abs(center) < 1.0, axis=-1)

    full_center, full_hw, full_inside = candidate(boxes[:, 0], boxes[:, 1], FULL_BOX_TOP_WEIGHT)
    visible_center, visible_hw, visible_inside = candidate(boxes[:, 2], boxes[:, 3], VISIBLE_BOX_TOP_WEIGHT)
    visible_w, visible_h = (boxes[:, 3] - boxes[:, 2]).T
    use_full = (visible_h > visible_w) & full_inside
    centers = np.where(use_full[:, None], full_center, visible_center)
    hw = np.where(use_full[:, None], full_hw, visible_hw)
    return centers, hw, use_full | visible_inside


def center_radii(hw: np.ndarray, map_size: int) -> np.ndarray:
    """(N,) Gaussian radii in cells for boxes ``hw`` (N, 2) (normalised): ``int(||hw/2|| * C/16 + C/32)``.

    For C = 64 this is ``int(4 * ||hw/2|| + 2)``, between 2 and 7.
    """
    scale = np.linalg.norm(np.asarray(hw, dtype=np.float64).reshape(-1, 2) / 2.0, axis=-1)
    return (scale * map_size / 16.0 + map_size / 32.0).astype(np.int64)


def _gaussian(squared_offset: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Gaussian of sigma = (2r+1)/6 at integer offsets, peak 1; values below eps set to 0 (as ROMP)."""
    sigma = (2 * radius + 1) / 6.0
    values = np.exp(-squared_offset / (2.0 * sigma**2))
    values[values < np.finfo(values.dtype).eps] = 0.0
    return values


def gaussian_kernel(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) Gaussian with sigma = (2r+1)/6, peak 1 (the footprint one person adds to the heatmap)."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    return _gaussian(offsets[None, :] ** 2 + offsets[:, None] ** 2, np.asarray(radius))


def center_to_cell(center: np.ndarray, map_size: int) -> np.ndarray:
    """Map cells (..., 2) ``(column, row)`` of normalised centres: ``int((c + 1) / 2 * C)``; may fall outside."""
    return np.floor((np.asarray(center, dtype=np.float64) + 1.0) / 2.0 * map_size).astype(np.int64)


@functools.lru_cache(maxsize=16)
def _kernel_table(reach: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernels of radius 0..reach on one (2 reach + 1)^2 window, flattened, zero outside each radius.

    Returns ``(table, rows, cols)``: (reach + 1, W^2) float32 and the (W^2,) row / column offsets of the window.
    """
    offsets = np.arange(-reach, reach + 1)
    rows, cols = (grid.ravel() for grid in np.meshgrid(offsets, offsets, indexing="ij"))
    table = np.zeros((reach + 1, len(rows)), dtype=np.float32)
    for radius in range(reach + 1):
        inside = (np.abs(rows) <= radius) & (np.abs(cols) <= radius)
        table[radius, inside] = gaussian_kernel(radius).ravel()
    table.flags.writeable = False
    return table, rows, cols


def draw_centermap(centers: np.ndarray, radii: Sequence[int] | np.ndarray, map_size: int) -> np.ndarray:
    """Render the (1, C, C) float32 centre heatmap.

    Each person adds a Gaussian of its own radius (``(2r+1)^2`` cells around its cell), merged with
    element-wise max; the centre cells are then set to exactly 1 (the positives of the focal loss).
    Centres outside the map are skipped.
    """
    cells = center_to_cell(np.asarray(centers).reshape(-1, 2), map_size)
    radii = np.asarray(radii, dtype=np.int64).reshape(-1)
    on_map = np.all((cells >= 0) & (cells < map_size), axis=-1)
    cells, radii = cells[on_map], radii[on_map]
    if len(cells) == 0:
        return np.zeros((1, map_size, map_size), dtype=np.float32)
    # Draw on a map padded by the largest radius on every side, so no window needs clipping, then cut it out.
    reach = int(radii.max())
    table, rows, cols = _kernel_table(reach)
    padded_size = map_size + 2 * reach
    padded = np.zeros(padded_size * padded_size, dtype=np.float32)
    window = (rows + reach) * padded_size + cols + reach  # (W^2,) flat offsets from a cell's top-left corner
    targets = (cells[:, 1] * padded_size + cells[:, 0])[:, None] + window  # (K, W^2)
    values = table[radii]
    drawn = values > 0.0
    np.maximum.at(padded, targets[drawn], values[drawn])
    heatmap = padded.reshape(padded_size, padded_size)[reach:reach + map_size, reach:reach + map_size].copy()
    heatmap[cells[:, 1], cells[:, 0]] = 1.0
    return heatmap[None]


def collision_aware_push(
    centers: np.ndarray, radii: Sequence[int] | np.ndarray, map_size: int, factor: float,
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
    * coincident centres are pushed apart along x (ROMP's +1e-4 gives the diagonal): the earlier person
      to -x, the later to +x.

    Args:
        centers: (K, 2) normalised pose-person centres.
        radii: (K,) Gaussian radii in cells.
        map_size: C.
        factor: ``collision_factor`` (0.2 in v1).

    Returns:
        (K, 2) pushed centres (not clipped).
    """
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    count = len(centers)
    delta = centers[None, :, :] - centers[:, None, :]  # [i, j] = c_j - c_i
    dist = np.sqrt(np.add.reduce(delta * delta, axis=-1))  # np.linalg.norm's own computation, less overhead
    least = (radii[:, None] + radii[None, :] + 1.0) / map_size * 2.0
    colliding = dist < least
    colliding.flat[::count + 1] = False  # a person does not collide with itself
    if not colliding.any():  # the usual case: nothing to push (centers - 0 is centers, bit for bit)
        return centers.copy()
    coincident = dist <= 1e-9
    order = np.arange(count)
    along_x = np.stack([np.sign(order[None, :] - order[:, None]).astype(np.float64), np.zeros((count, count))], -1)
    direction = np.where(coincident[..., None], along_x, delta / np.where(coincident, 1.0, dist)[..., None])
    shift = np.where(colliding, (least - dist) * factor, 0.0)[..., None] * direction  # [i, j]: i -> j
    return centers - shift.sum(axis=1) / 2.0
