"""Geometry shared by the data layer, the model and the metrics: rotations, camera, Procrustes.

This package imports nothing else from romp_hydra.
"""

from romp_hydra.geometry.camera import (
    cam_to_translation,
    normalized_to_original_image,
    normalized_to_pixels,
    pixels_to_normalized,
    romp_cam_trans,
    weak_perspective_project,
)
from romp_hydra.geometry.procrustes import similarity_procrustes
from romp_hydra.geometry.rotations import (
    axis_angle_to_rot6d,
    axis_angle_to_rotmat,
    flip_smpl_pose_np,
    inplane_rotation_matrix_np,
    rot6d_to_axis_angle,
    rot6d_to_rotmat,
    rotate_global_orient_np,
    rotate_points_2d_np,
    rotmat_to_axis_angle,
    rotmat_to_rot6d,
)

__all__ = [
    "axis_angle_to_rot6d",
    "axis_angle_to_rotmat",
    "cam_to_translation",
    "flip_smpl_pose_np",
    "inplane_rotation_matrix_np",
    "normalized_to_original_image",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "romp_cam_trans",
    "rot6d_to_axis_angle",
    "rot6d_to_rotmat",
    "rotate_global_orient_np",
    "rotate_points_2d_np",
    "rotmat_to_axis_angle",
    "rotmat_to_rot6d",
    "similarity_procrustes",
    "weak_perspective_project",
]
