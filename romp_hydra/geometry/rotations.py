"""Rotation representations used by ROMP: 6D, rotation matrices, axis-angle.

The torch functions accept any number of leading dimensions and are differentiable everywhere,
including the identity rotation (where a naive Rodrigues formula divides 0 by 0) and angles near pi.
Half-precision inputs (float16 / bfloat16, e.g. under autocast) are computed and returned in float32:
Gram-Schmidt and the small-angle branches lose too much precision in 16 bits. float32 and float64 inputs
keep their dtype.

The numpy helpers at the bottom are the pose augmentations of the data layer (in-plane rotation and
horizontal flip of SMPL axis-angle poses).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "axis_angle_to_rot6d",
    "axis_angle_to_rotmat",
    "flip_smpl_pose_np",
    "inplane_rotation_matrix_np",
    "rot6d_to_axis_angle",
    "rot6d_to_rotmat",
    "rotate_global_orient_np",
    "rotate_points_2d_np",
    "rotmat_to_axis_angle",
    "rotmat_to_rot6d",
]

# ROMP's Gram-Schmidt uses F.normalize(..., eps=1e-6); keep it for checkpoint compatibility.
_GRAM_SCHMIDT_EPS = 1e-6
# Below these squared magnitudes the closed forms are replaced by Taylor series, whose truncation error
# there is far below float64 resolution, so the switch is invisible in value and keeps gradients finite.
_SMALL_ANGLE_SQ = 1e-6
_SMALL_SIN_HALF_SQ = 1e-10

# Left/right mirror of the 24 SMPL kinematic joints (ROMP's SMPL_JOINTS_FLIP_PERM, hands included).
# Kept here so that geometry does not import body; tests check it equals body.joint_sets' derived one.
_SMPL24_MIRROR = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22)


def _as_float(x: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a floating tensor and lift 16-bit floats to float32."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} expects a torch.Tensor, got {type(x).__name__}; wrap numpy input with torch.from_numpy"
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} expects a floating-point tensor, got dtype {x.dtype}; call .float() first")
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _check_trailing_shape(x: torch.Tensor, trailing: tuple[int, ...], name: str) -> None:
    if x.dim() < len(trailing) or tuple(x.shape[-len(trailing) :]) != trailing:
        expected = ", ".join(str(n) for n in trailing)
        raise ValueError(f"{name} expects a tensor of shape [..., {expected}], got {tuple(x.shape)}")


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation representation -> rotation matrix, with ROMP's interleaving.

    The 6-vector is read as a row-major 3x2 matrix, so its two columns are ``a1 = x[..., 0::2]`` and
    ``a2 = x[..., 1::2]`` (not the first and last three entries). Gram-Schmidt gives ``b1 = a1/|a1|``,
    ``b2`` = the part of ``a2`` orthogonal to ``b1``, normalised, and ``b3 = b1 x b2``; the result is
    ``R = [b1 b2 b3]`` with the b's as columns. A pretrained ROMP head only decodes correctly with this
    layout.

    Args:
        x: tensor of shape [..., 6].

    Returns:
        Rotation matrices of shape [..., 3, 3].
    """
    _check_trailing_shape(x, (6,), "rot6d_to_rotmat")
    x = _as_float(x, "rot6d_to_rotmat")
    a1 = x[..., 0::2]
    a2 = x[..., 1::2]
    b1 = F.normalize(a1, dim=-1, eps=_GRAM_SCHMIDT_EPS)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1, eps=_GRAM_SCHMIDT_EPS)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> 6D, the inverse of :func:`rot6d_to_rotmat`.

    The first two columns are flattened row by row: ``[R00, R01, R10, R11, R20, R21]``.

    Args:
        rotmat: tensor of shape [..., 3, 3].

    Returns:
        Tensor of shape [..., 6].
    """
    _check_trailing_shape(rotmat, (3, 3), "rotmat_to_rot6d")
    rotmat = _as_float(rotmat, "rotmat_to_rot6d")
    return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def _skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix [v]_x of vectors [..., 3] -> [..., 3, 3]."""
    x, y, z = v.unbind(dim=-1)
    zero = torch.zeros_like(x)
    rows = (zero, -z, y, z, zero, -x, -y, x, zero)
    return torch.stack(rows, dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_rotmat(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (rotation vector) -> rotation matrix by Rodrigues' formula.

    ``R = I + a K + b K^2`` with ``K = [v]_x``, ``a = sin(t)/t``, ``b = (1 - cos t)/t^2`` and ``t = |v|``.
    ``b`` is evaluated as ``2 sin^2(t/2)/t^2`` to avoid the cancellation in ``1 - cos t``, and both
    coefficients switch to their Taylor series for tiny angles so that value and gradient are exact at 0.

    Args:
        axis_angle: tensor of shape [..., 3] (radians).

    Returns:
        Rotation matrices of shape [..., 3, 3].
    """
    _check_trailing_shape(axis_angle, (3,), "axis_angle_to_rotmat")
    v = _as_float(axis_angle, "axis_angle_to_rotmat")
    theta_sq = (v * v).sum(dim=-1)[..., None, None]
    small = theta_sq < _SMALL_ANGLE_SQ
    # Feed the closed forms a harmless value where they are not used, so their gradient stays finite.
    safe_theta_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = safe_theta_sq.sqrt()
    sin_half_over_theta = torch.sin(0.5 * theta) / theta
    coef_a = torch.where(small, 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0, torch.sin(theta) / theta)
    coef_b = torch.where(
        small,
        0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0,
        2.0 * sin_half_over_theta * sin_half_over_theta,
    )
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    # K^2 = v v^T - |v|^2 I, written without matmul so autocast cannot lower it to 16 bits.
    k_squared = v[..., :, None] * v[..., None, :] - theta_sq * eye
    return eye + coef_a * _skew(v) + coef_b * k_squared


def _rotmat_to_quaternion(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [..., 3, 3] -> unit quaternion [..., 4] as (w, x, y, z) with w >= 0.

    Shepperd's method: each of the four rows below equals ``4 q_k * q`` for one component ``q_k``; the
    row whose ``q_k^2`` is largest (at least 1/4) is normalised, so no division by a small number occurs,
    whatever the angle.
    """
    m = rotmat
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    four_w_sq = 1.0 + m00 + m11 + m22
    four_x_sq = 1.0 + m00 - m11 - m22
    four_y_sq = 1.0 - m00 + m11 - m22
    four_z_sq = 1.0 - m00 - m11 + m22
    candidates = torch.stack(
        (
            torch.stack((four_w_sq, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, four_x_sq, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, four_y_sq, m21 + m12), dim=-1),
            torch.stack((m10 - m01, m02 + m20, m21 + m12, four_z_sq), dim=-1),
        ),
        dim=-2,
    )
    best = torch.stack((four_w_sq, four_x_sq, four_y_sq, four_z_sq), dim=-1).argmax(dim=-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    quat = F.normalize(torch.gather(candidates, -2, index).squeeze(-2), dim=-1)
    # q and -q are the same rotation; w >= 0 puts the angle in [0, pi].
    return torch.where(quat[..., :1] < 0, -quat, quat)


def _quaternion_to_axis_angle(quat: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (w, x, y, z) with w >= 0 -> axis-angle [..., 3], angle in [0, pi]."""
    w = quat[..., :1]
    xyz = quat[..., 1:]
    sin_half_sq = (xyz * xyz).sum(dim=-1, keepdim=True)
    small = sin_half_sq < _SMALL_SIN_HALF_SQ
    sin_half = torch.where(small, torch.ones_like(sin_half_sq), sin_half_sq).sqrt()
    # angle = 2 atan2(|xyz|, w); near 0 the ratio angle/|xyz| -> 2/w - 2|xyz|^2/(3 w^3), and w ~ 1 there.
    w_safe = torch.where(small, w, torch.ones_like(w))
    small_ratio = 2.0 / w_safe - (2.0 / 3.0) * sin_half_sq / (w_safe * w_safe * w_safe)
    ratio = torch.where(small, small_ratio, 2.0 * torch.atan2(sin_half, w) / sin_half)
    return xyz * ratio


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> axis-angle, through a quaternion (stable near 0 and near pi).

    The returned angle ``|v|`` lies in [0, pi]. At exactly pi the axis sign is arbitrary (both describe the
    same rotation).

    Args:
        rotmat: tensor of shape [..., 3, 3].

    Returns:
        Tensor of shape [..., 3] (radians).
    """
    _check_trailing_shape(rotmat, (3, 3), "rotmat_to_axis_angle")
    rotmat = _as_float(rotmat, "rotmat_to_axis_angle")
    return _quaternion_to_axis_angle(_rotmat_to_quaternion(rotmat))


def axis_angle_to_rot6d(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle [..., 3] -> 6D [..., 6] (ROMP interleaving)."""
    return rotmat_to_rot6d(axis_angle_to_rotmat(axis_angle))


def rot6d_to_axis_angle(x: torch.Tensor) -> torch.Tensor:
    """6D [..., 6] (ROMP interleaving) -> axis-angle [..., 3], as ROMP's head output is decoded."""
    return rotmat_to_axis_angle(rot6d_to_rotmat(x))


# ---------------------------------------------------------------------------------------------------------
# numpy helpers for the data layer
# ---------------------------------------------------------------------------------------------------------
#
# In-plane rotation convention. ``deg`` is OpenCV's angle: rotating an image with
# ``cv2.warpAffine(img, cv2.getRotationMatrix2D(center, deg, 1.0), ...)`` turns its content
# counter-clockwise on screen for deg > 0. In the camera frame (x right, y down, z forward) the same
# motion of the body is the 3x3 matrix
#     M(deg) = [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]      (= R_z(-deg) in the usual right-hand sense)
# so that 3D joints ``M @ X``, the root orientation ``M @ R(global_orient)`` and 2D keypoints rotated by
# ``rotate_points_2d_np(kp, deg, center)`` all stay consistent with the warped image.
#
# ROMP draws ``rot`` for imgaug's ``Affine(rotate=rot)``, which turns the content clockwise on screen and
# rotates 3D joints and the root by R_z(+rot): ROMP's ``rot`` is ``-deg`` here. ``rot`` is drawn
# symmetrically (randint(-30, 30)), so the augmentation distribution is the same.


def inplane_rotation_matrix_np(deg: float) -> np.ndarray:
    """Camera-frame rotation about the optical (z) axis matching an OpenCV image rotation by ``deg``.

    Returns ``[[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]`` (float64): with y pointing down, a positive
    ``deg`` turns the projected body counter-clockwise on screen, exactly like
    ``cv2.getRotationMatrix2D(center, deg, 1.0)`` turns the image (see the convention note above).
    """
    rad = np.deg2rad(float(deg))
    cos, sin = np.cos(rad), np.sin(rad)
    return np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])


def rotate_points_2d_np(points: np.ndarray, deg: float, center: tuple[float, float]) -> np.ndarray:
    """Rotate 2D points ``[..., 2]`` (x, y; pixels, y down) about ``center`` by OpenCV's angle ``deg``.

    Identical to applying ``cv2.getRotationMatrix2D(center, deg, 1.0)`` to the points. Missing-value
    sentinels are not special-cased: mask them before or after.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 2:
        raise ValueError(f"rotate_points_2d_np expects points of shape [..., 2], got {points.shape}")
    rotation = inplane_rotation_matrix_np(deg)[:2, :2]
    center_arr = np.asarray(center, dtype=np.float64)
    return (points - center_arr) @ rotation.T + center_arr


def rotate_global_orient_np(global_orient: np.ndarray, deg: float) -> np.ndarray:
    """Rotate an SMPL root orientation (axis-angle ``[..., 3]``) in the image plane by ``deg``.

    Returns the axis-angle of ``M(deg) @ R(global_orient)`` with ``M`` from
    :func:`inplane_rotation_matrix_np`, i.e. the body turns with an image rotated by
    ``cv2.getRotationMatrix2D(center, deg, 1.0)``. ROMP applies ``R_z(rot)`` for imgaug's clockwise
    ``rot``; that is this function with ``deg = -rot``.
    """
    global_orient = np.asarray(global_orient)
    if global_orient.shape[-1] != 3:
        raise ValueError(
            f"rotate_global_orient_np expects axis-angle of shape [..., 3], got {global_orient.shape}"
        )
    # Composed as quaternions, M's = (cos h, 0, 0, -sin h) with h = rad/2: a few numpy ops instead of ~50
    # tiny torch kernels on the data path (the same float32 values as through rotation matrices).
    root = global_orient.astype(np.float64)
    angle = np.linalg.norm(root, axis=-1)
    root_w = np.cos(0.5 * angle)
    root_x, root_y, root_z = np.moveaxis(root * (0.5 * np.sinc(angle / (2.0 * np.pi)))[..., None], -1, 0)
    half = 0.5 * np.deg2rad(float(deg))
    cos_h, sin_h = np.cos(half), -np.sin(half)
    w = cos_h * root_w - sin_h * root_z
    xyz = np.stack((cos_h * root_x - sin_h * root_y, cos_h * root_y + sin_h * root_x,
                    cos_h * root_z + sin_h * root_w), axis=-1)
    sign = np.where(w < 0.0, -1.0, 1.0)  # q and -q are the same rotation; w >= 0 puts the angle in [0, pi]
    w, xyz = w * sign, xyz * sign[..., None]
    sin_half = np.linalg.norm(xyz, axis=-1)
    small = sin_half * sin_half < _SMALL_SIN_HALF_SQ
    safe_w = np.where(small, w, 1.0)
    ratio = np.where(small, 2.0 / safe_w, 2.0 * np.arctan2(sin_half, w) / np.where(small, 1.0, sin_half))
    rotated = xyz * ratio[..., None]
    return rotated.astype(global_orient.dtype if global_orient.dtype.kind == "f" else np.float64)


def flip_smpl_pose_np(pose: np.ndarray) -> np.ndarray:
    """Mirror SMPL axis-angle poses left/right, for a horizontally flipped image.

    Joints are swapped with their left/right counterpart (ROMP's ``SMPL_JOINTS_FLIP_PERM``) and the y and z
    components of every axis-angle are negated (reflection across the x = 0 plane).

    Args:
        pose: array ``[..., 66]`` (22 joints: root + 21 body joints, ROMP's GT layout) or ``[..., 72]``
            (all 24 SMPL joints).

    Returns:
        The flipped pose, same shape and dtype; flipping twice returns the input.
    """
    pose = np.asarray(pose)
    num_values = pose.shape[-1] if pose.ndim else 0
    if num_values not in (66, 72):
        raise ValueError(
            f"flip_smpl_pose_np expects an axis-angle pose of shape [..., 66] or [..., 72], got {pose.shape}"
        )
    num_joints = num_values // 3
    joints = pose.reshape(*pose.shape[:-1], num_joints, 3)
    flipped = joints[..., list(_SMPL24_MIRROR[:num_joints]), :].copy()
    flipped[..., 1:] *= -1
    return flipped.reshape(pose.shape)
