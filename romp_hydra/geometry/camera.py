"""ROMP's weak-perspective camera and the normalised <-> pixel coordinate maps.

ROMP predicts per person ``cam = (s, tx, ty)`` (``s`` already ``1.1 ** raw``) and projects root-aligned
3D joints as ``s * X[..., :2] + (tx, ty)``. The result lives in normalised coordinates of the square
(padded) network input: -1 is the left/top edge and +1 the right/bottom edge, with x right and y down.
"""

from __future__ import annotations

from typing import TypeVar

import torch

__all__ = [
    "cam_to_translation",
    "normalized_to_original_image",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "romp_cam_trans",
    "weak_perspective_project",
]

ArrayOrTensor = TypeVar("ArrayOrTensor")

# Keeps 1/s finite if a caller feeds a raw (not yet exponentiated) scale of 0.
_MIN_SCALE = 1e-6


def _check_cam(cam: torch.Tensor, name: str) -> None:
    if cam.shape[-1] != 3:
        raise ValueError(f"{name} expects cam of shape [..., 3] holding (s, tx, ty), got {tuple(cam.shape)}")


def weak_perspective_project(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Project 3D points with ROMP's weak-perspective camera.

    Args:
        points: [..., J, 3] root-aligned 3D points (metres, camera axes).
        cam: [..., 3] camera ``(s, tx, ty)`` with the same leading dimensions as ``points``.

    Returns:
        [..., J, 2] normalised image coordinates ``s * X_xy + (tx, ty)``; the depth is ignored.
    """
    if points.shape[-1] != 3:
        raise ValueError(
            f"weak_perspective_project expects points of shape [..., J, 3], got {tuple(points.shape)}"
        )
    _check_cam(cam, "weak_perspective_project")
    if points.shape[:-2] != cam.shape[:-1]:
        raise ValueError(
            f"weak_perspective_project: leading dims of points {tuple(points.shape)} "
            f"and cam {tuple(cam.shape)} "
            "differ; pass one camera per point set"
        )
    scale = cam[..., None, :1]
    shift = cam[..., None, 1:]
    return points[..., :2] * scale + shift


def normalized_to_pixels(coords: ArrayOrTensor, image_size: float) -> ArrayOrTensor:
    """Normalised [-1, 1] coordinates -> pixels of a square image of side ``image_size``.

    Uses ROMP's convention ``px = (v + 1) * size / 2`` (no half-pixel offset: -1 -> 0, +1 -> size).
    Works on numpy arrays and torch tensors alike. Missing-value sentinels (-2) are not preserved:
    mask them first.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return (coords + 1.0) * (image_size / 2.0)


def pixels_to_normalized(coords: ArrayOrTensor, image_size: float) -> ArrayOrTensor:
    """Pixels of a square image of side ``image_size`` -> normalised coordinates ``2 * px / size - 1``.

    The inverse of :func:`normalized_to_pixels`; numpy or torch input.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return coords * (2.0 / image_size) - 1.0


def normalized_to_original_image(coords: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Normalised coordinates of the augmented square input -> pixels of the original image.

    ROMP's ``pj2d_org``: ``(v + 1) * pad_size / 2 + (crop_l - pad_l, crop_t - pad_t)``.

    Args:
        coords: [B, ..., 2] normalised (x, y).
        offsets: [B, 10] per-sample ``(pad_h, pad_w, crop_t, crop_r, crop_b, crop_l, pad_t, pad_r, pad_b,
            pad_l)`` as produced by the data pipeline; ``pad_h == pad_w`` is the side of the square before
            its resize to the network input.

    Returns:
        [B, ..., 2] pixel coordinates in the original (unpadded, uncropped) image.
    """
    if offsets.dim() != 2 or offsets.shape[-1] != 10:
        raise ValueError(f"offsets must have shape [B, 10], got {tuple(offsets.shape)}")
    if coords.shape[0] != offsets.shape[0] or coords.shape[-1] != 2:
        raise ValueError(
            f"coords must have shape [B, ..., 2] with B = {offsets.shape[0]} (from offsets), "
            f"got {tuple(coords.shape)}"
        )
    view = (offsets.shape[0],) + (1,) * (coords.dim() - 2)
    side = offsets[:, 0].reshape(view + (1,))
    shift_x = (offsets[:, 5] - offsets[:, 9]).reshape(view)
    shift_y = (offsets[:, 2] - offsets[:, 6]).reshape(view)
    shift = torch.stack((shift_x, shift_y), dim=-1)
    return (coords + 1.0) * side / 2.0 + shift


def cam_to_translation(cam: torch.Tensor, focal: float = 2.0) -> torch.Tensor:
    """Weak-perspective camera -> the equivalent 3D translation of the body root.

    A pinhole camera with focal ``focal`` (in normalised units: ``focal = f_px * 2 / image_size``) placed at
    translation ``T = (tx / s, ty / s, focal / s)`` projects every point lying in the root's depth plane
    exactly where ``weak_perspective_project`` puts it (``focal * (X + T_xy) / T_z = s * X + t``); other
    points differ by their relative depth only.

    Difference from ROMP: ROMP's ``cam_trans = 2 * (tx / s, ty / s, 1 / s)`` (:func:`romp_cam_trans`) has
    the same depth for ``focal = 2`` but doubles x and y, so a perspective re-projection of its root lands at
    ``2 * (tx, ty)`` instead of ``(tx, ty)``. ROMP only uses it as a rough placement for rendering.

    Args:
        cam: [..., 3] ``(s, tx, ty)``; ``s`` must be positive (it is ``1.1 ** raw`` in ROMP).
        focal: normalised focal length; 2 corresponds to a field of view of ``2 * atan(1 / 2)`` ~ 53 degrees.

    Returns:
        [..., 3] translation ``(x, y, z)`` in the units of the 3D points.
    """
    _check_cam(cam, "cam_to_translation")
    if focal <= 0:
        raise ValueError(f"focal must be positive, got {focal}")
    scale = cam[..., :1].clamp(min=_MIN_SCALE)
    return torch.cat((cam[..., 1:] / scale, focal / scale), dim=-1)


def romp_cam_trans(cam: torch.Tensor, weight: float = 2.0) -> torch.Tensor:
    """ROMP's rough translation ``weight * (tx / s, ty / s, 1 / s)`` (``convert_cam_to_3d_trans``).

    Kept for reproducing ROMP's renderings; prefer :func:`cam_to_translation`, which is consistent with
    the weak-perspective projection.
    """
    _check_cam(cam, "romp_cam_trans")
    scale = cam[..., :1].clamp(min=_MIN_SCALE)
    return torch.cat((cam[..., 1:] / scale, 1.0 / scale), dim=-1) * weight
