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
    "POSE_PROTOTYPES",
    "POSE_SPACES",
    "REST_POSE",
    "sample_betas",
    "sample_body_pose",
    "sample_global_orient",
    "sample_prototype_mode",
    "sample_prototype_pose",
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

# Everyday poses people are seen in, as (x, y, z) degrees per joint on the LEFT side and the spine (the
# right side mirrors them: same x, negated y and z) plus explicit right-side entries where the two differ.
# Real people move within such a low-dimensional pose space; independent uniform joint angles do not look
# like people and make the mean pose the best answer a regressor can give (docs/synthetic_benchmark.md).
_L_HIP, _R_HIP, _SPINE1, _L_KNEE, _R_KNEE, _SPINE2, _SPINE3 = 1, 2, 3, 4, 5, 6, 9
_NECK, _HEAD, _L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW = 12, 15, 16, 17, 18, 19
_MIRROR = {1: 2, 2: 1, 4: 5, 5: 4, 7: 8, 8: 7, 10: 11, 11: 10, 13: 14, 14: 13, 16: 17, 17: 16, 18: 19, 19: 18,
           20: 21, 21: 20}  # fmt: skip
_ARMS_DOWN = {_L_SHOULDER: (0, 0, -70), _L_ELBOW: (0, -10, 0)}
_PROTOTYPES_DEG: dict[str, dict[int, tuple[float, float, float]]] = {
    "stand": {**_ARMS_DOWN},
    "arms_out": {_L_SHOULDER: (0, 0, -5), _L_ELBOW: (0, -5, 0)},
    "arms_up": {_L_SHOULDER: (0, -10, 30), _L_ELBOW: (0, -25, 0), _HEAD: (-10, 0, 0)},
    "reach_forward": {_L_SHOULDER: (0, -70, -15), _L_ELBOW: (0, -10, 0), _SPINE1: (10, 0, 0)},
    "guard": {_L_SHOULDER: (0, -45, -60), _L_ELBOW: (0, -125, 0), _L_HIP: (-15, 0, 5), _L_KNEE: (20, 0, 0),
              _SPINE1: (10, 0, 0)},
    "akimbo": {_L_SHOULDER: (0, 10, -45), _L_ELBOW: (0, -95, 0)},
    "walk": {_L_HIP: (-30, 0, 3), _L_KNEE: (10, 0, 0), _R_HIP: (15, 0, -3), _R_KNEE: (35, 0, 0),
             _L_SHOULDER: (0, 20, -75), _L_ELBOW: (0, -15, 0), _R_SHOULDER: (0, 25, 75), _R_ELBOW: (0, 30, 0)},
    "run": {_L_HIP: (-65, 0, 0), _L_KNEE: (70, 0, 0), _R_HIP: (20, 0, 0), _R_KNEE: (100, 0, 0),
            _SPINE1: (12, 0, 0), _L_SHOULDER: (0, 25, -65), _L_ELBOW: (0, -90, 0), _R_SHOULDER: (0, 50, 65),
            _R_ELBOW: (0, 90, 0)},
    "side_step": {_L_HIP: (0, 0, 30), _R_HIP: (0, 0, -10), _L_SHOULDER: (0, 0, -40), _L_ELBOW: (0, -10, 0)},
    "knee_up": {_L_HIP: (-80, 0, 0), _L_KNEE: (100, 0, 0), _R_HIP: (0, 0, 0), _R_KNEE: (0, 0, 0), _L_SHOULDER: (0, 0, -30),
                _R_SHOULDER: (0, 0, 30)},
    "point": {_R_SHOULDER: (0, 10, -30), _R_ELBOW: (0, 100, 0), _L_SHOULDER: (0, 0, -70), _NECK: (0, -15, 0)},
    "sit": {_L_HIP: (-85, 0, 5), _L_KNEE: (90, 0, 0), _L_SHOULDER: (0, -35, -65), _L_ELBOW: (0, -60, 0)},
    "squat": {_L_HIP: (-90, 0, 15), _L_KNEE: (115, 0, 0), _SPINE1: (25, 0, 0), _SPINE2: (10, 0, 0),
              _L_SHOULDER: (0, -60, -40), _L_ELBOW: (0, -20, 0)},
    "kneel": {_L_HIP: (-90, 0, 0), _L_KNEE: (90, 0, 0), _R_HIP: (10, 0, 0), _R_KNEE: (110, 0, 0),
              _L_SHOULDER: (0, 0, -70), _R_SHOULDER: (0, 0, 70)},
    "bow": {_SPINE1: (25, 0, 0), _SPINE2: (15, 0, 0), _SPINE3: (12, 0, 0), _L_SHOULDER: (0, -40, -70),
            _NECK: (15, 0, 0)},
}


def _prototype_pose(joints_deg: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """(21, 3) radians: left-side entries mirrored onto the right unless the right side is given."""
    pose = np.zeros((NUM_BODY_JOINTS + 1, 3))
    for joint, (x, y, z) in joints_deg.items():
        pose[joint] = (x, y, z)
        mirror = _MIRROR.get(joint)
        if mirror is not None and mirror > joint and mirror not in joints_deg:
            pose[mirror] = (x, -y, -z)
    return np.clip(np.deg2rad(pose[1:]), BODY_JOINT_LIMITS[..., 0], BODY_JOINT_LIMITS[..., 1])


# name -> (21, 3) radians, inside BODY_JOINT_LIMITS.
POSE_PROTOTYPES: dict[str, np.ndarray] = {name: _prototype_pose(j) for name, j in _PROTOTYPES_DEG.items()}
_PROTOTYPE_STACK = np.stack(list(POSE_PROTOTYPES.values()))
_MIRROR_ROWS = [(_MIRROR.get(j, j)) - 1 for j in range(1, NUM_BODY_JOINTS + 1)]

# How body poses are drawn (SceneConfig.pose_space).
POSE_SPACES = ("prototypes", "uniform")


def sample_prototype_mode(rng: np.random.Generator, blend_prob: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The noise-free part of `sample_prototype_pose`: ``(pose, prototype)``, both (21, 3) radians.

    One prototype is drawn uniformly, blended with a second one (weight ``U(0, 0.5)``) with probability
    ``blend_prob``, and mirrored left/right with probability 1/2; ``pose`` is the result, ``prototype`` the
    first prototype with the same mirroring (what a classifier of the prototypes could at best answer).
    """
    count = len(_PROTOTYPE_STACK)
    prototype = pose = _PROTOTYPE_STACK[int(rng.integers(count))]
    if rng.random() < blend_prob:
        weight = rng.uniform(0.0, 0.5)
        pose = (1.0 - weight) * pose + weight * _PROTOTYPE_STACK[int(rng.integers(count))]
    if rng.random() < 0.5:
        pose, prototype = (p[_MIRROR_ROWS] * np.array([1.0, -1.0, -1.0]) for p in (pose, prototype))
    return pose, prototype


def sample_prototype_pose(
    rng: np.random.Generator, noise_deg: float = 10.0, blend_prob: float = 0.5
) -> np.ndarray:
    """A (63,) axis-angle body pose near one of ``POSE_PROTOTYPES``, within ``BODY_JOINT_LIMITS``.

    `sample_prototype_mode` (a prototype, maybe blended with a second, maybe mirrored), then Gaussian noise of
    ``noise_deg`` degrees on every component before clipping to the limits: a continuous pose space around a
    few modes.
    """
    pose, _ = sample_prototype_mode(rng, blend_prob)
    pose = pose + rng.normal(0.0, np.deg2rad(noise_deg), size=pose.shape)
    return np.clip(pose, BODY_JOINT_LIMITS[..., 0], BODY_JOINT_LIMITS[..., 1]).reshape(-1)


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
