"""Random but plausible SMPL parameters: body pose within joint limits, shape, and camera-frame orientation.

Angles are axis-angle components (radians) in SMPL's rest frame, whose axes are x = the body's left,
y = up, z = forward (the direction the body faces). SMPL's local joint frames are aligned with it in the
rest (T) pose, so for example:

* a knee bends (shin backwards) with a positive rotation about x, a hip flexes (thigh forwards) with a
  negative one;
* the left arm points along +x in the rest pose, so lowering it is a negative rotation about z and
  bending the left elbow (forearm forwards) a negative rotation about y; the right side mirrors the signs.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "BODY_JOINT_LIMITS",
    "BODY_TO_CAMERA",
    "NUM_BODY_JOINTS",
    "REST_POSE",
    "sample_betas",
    "sample_body_pose",
    "sample_global_orient",
]

NUM_BODY_JOINTS = 21  # SMPL joints 1..21; the hands (22, 23) are not part of ROMP's 66 pose values

# Per body joint (SMPL index 1..21 -> row 0..20): (low, high) for the x, y and z axis-angle components.
_LIMITS_DEG: dict[int, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    1: ((-90, 25), (-25, 25), (-8, 35)),  # L_Hip: flexion is -x, abduction (leg to the left) is +z
    2: ((-90, 25), (-25, 25), (-35, 8)),  # R_Hip
    3: ((-8, 25), (-12, 12), (-8, 8)),  # Spine1: forward bend is +x; small twists and side bends
    4: ((0, 115), (-3, 3), (-3, 3)),  # L_Knee bends one way only
    5: ((0, 115), (-3, 3), (-3, 3)),  # R_Knee
    6: ((-5, 15), (-12, 12), (-6, 6)),  # Spine2
    7: ((-20, 30), (-10, 10), (-8, 8)),  # L_Ankle
    8: ((-20, 30), (-10, 10), (-8, 8)),  # R_Ankle
    9: ((-5, 12), (-12, 12), (-6, 6)),  # Spine3
    10: ((-10, 15), (-3, 3), (-3, 3)),  # L_Foot (toes)
    11: ((-10, 15), (-3, 3), (-3, 3)),  # R_Foot
    12: ((-20, 30), (-25, 25), (-12, 12)),  # Neck
    13: ((-6, 6), (-8, 8), (-15, 8)),  # L_Collar
    14: ((-6, 6), (-8, 8), (-8, 15)),  # R_Collar
    15: ((-20, 25), (-30, 30), (-12, 12)),  # Head
    16: ((-35, 35), (-70, 30), (-80, 35)),  # L_Shoulder: -z lowers the arm, -y swings it forwards
    17: ((-35, 35), (-30, 70), (-35, 80)),  # R_Shoulder
    18: ((-10, 10), (-130, 0), (-5, 5)),  # L_Elbow bends one way only
    19: ((-10, 10), (0, 130), (-5, 5)),  # R_Elbow
    20: ((-25, 25), (-20, 20), (-35, 35)),  # L_Wrist
    21: ((-25, 25), (-20, 20), (-35, 35)),  # R_Wrist
}

# (21, 3, 2) radians: BODY_JOINT_LIMITS[j, axis] = (low, high) for SMPL joint j + 1.
BODY_JOINT_LIMITS = np.deg2rad(
    np.array([_LIMITS_DEG[j] for j in range(1, NUM_BODY_JOINTS + 1)], dtype=np.float64)
)

# A relaxed standing pose (arms hanging at the sides, elbows slightly bent), inside the limits. Sampled
# poses interpolate between it and a uniform draw within the limits, so calm and wild poses both occur.
REST_POSE = np.zeros((NUM_BODY_JOINTS, 3))
REST_POSE[16 - 1] = np.deg2rad([0, 0, -70])
REST_POSE[17 - 1] = np.deg2rad([0, 0, 70])
REST_POSE[18 - 1] = np.deg2rad([0, -10, 0])
REST_POSE[19 - 1] = np.deg2rad([0, 10, 0])

# SMPL's rest frame is y-up and faces +z; the camera frame is x right, y down, z forward. Rotating 180
# degrees about x maps one onto the other and turns a body facing +z into one facing the camera.
BODY_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


def sample_body_pose(
    rng: np.random.Generator, amplitude_range: tuple[float, float] = (0.2, 1.0)
) -> np.ndarray:
    """A (63,) axis-angle body pose within ``BODY_JOINT_LIMITS``.

    ``pose = rest + a * (uniform_within_limits - rest)`` with one ``a ~ U(amplitude_range)`` per person: small
    ``a`` gives people standing at ease, ``a = 1`` uniformly random poses within the limits. Both ends lie
    inside the (convex) limit box, so every component respects its limit.
    """
    low, high = BODY_JOINT_LIMITS[..., 0], BODY_JOINT_LIMITS[..., 1]
    uniform = rng.uniform(low, high)
    amplitude = rng.uniform(*amplitude_range)
    return (REST_POSE + amplitude * (uniform - REST_POSE)).reshape(-1)


def sample_betas(rng: np.random.Generator, num_betas: int = 10, clip: float = 2.0) -> np.ndarray:
    """Shape coefficients ``~ N(0, 1)`` clipped to ``[-clip, clip]`` (beyond, bodies stop looking human)."""
    return np.clip(rng.standard_normal(num_betas), -clip, clip)


def sample_global_orient(
    rng: np.random.Generator,
    yaw_range_deg: float,
    back_facing_prob: float = 0.0,
    max_tilt_deg: float = 8.0,
) -> np.ndarray:
    """A (3,) axis-angle global orientation in *camera* axes for a mostly upright person.

    The body turns by a yaw ``~ U(-yaw_range, yaw_range)`` about its vertical axis (plus 180 degrees with
    probability ``back_facing_prob``: seen from behind), leans by small pitch / roll angles, and is then
    carried into camera axes by ``BODY_TO_CAMERA``. Fed to the body model, this orientation yields the mesh
    directly in camera axes (y down, facing the camera at yaw 0).
    """
    yaw = rng.uniform(-yaw_range_deg, yaw_range_deg)
    if rng.random() < back_facing_prob:
        yaw += 180.0
    pitch, roll = rng.uniform(-max_tilt_deg, max_tilt_deg, size=2)
    # Extrinsic x, z, y: lean in the body's own frame first, then turn about the vertical.
    body_frame = Rotation.from_euler("xzy", [pitch, roll, yaw], degrees=True)
    camera_frame = Rotation.from_matrix(BODY_TO_CAMERA) * body_frame
    return camera_frame.as_rotvec()
