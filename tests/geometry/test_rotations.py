import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

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


def random_axis_angle(n: int, max_angle: float = math.pi - 1e-3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=-1)
    angle = torch.rand(n, 1, generator=gen, dtype=torch.float64) * max_angle
    return axis * angle


def edge_case_axis_angles() -> torch.Tensor:
    axis = torch.tensor([0.48, -0.6, 0.64], dtype=torch.float64)  # unit length
    angles = [0.0, 1e-12, 1e-8, 1e-5, 1e-3, 0.5, math.pi / 2, math.pi - 1e-3, math.pi - 1e-6]
    return torch.stack([axis * a for a in angles])


# -------------------------------------------------------------------------------- 6D layout


def test_rot6d_uses_romp_row_major_interleaving():
    # 90 degrees about z: columns (0, 1, 0), (-1, 0, 0), (0, 0, 1).
    rot_z90 = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    six_d = torch.tensor([0.0, -1.0, 1.0, 0.0, 0.0, 0.0])  # [R00, R01, R10, R11, R20, R21]
    assert torch.equal(rotmat_to_rot6d(rot_z90), six_d)
    torch.testing.assert_close(rot6d_to_rotmat(six_d), rot_z90)
    # The contiguous (first three / last three) reading would give a different matrix.
    assert not torch.allclose(rot6d_to_rotmat(torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0, 0.0])), rot_z90)


def test_rot6d_gram_schmidt_on_unnormalised_input():
    # Columns a1 = (2, 0, 0) and a2 = (1, 3, 0): b1 = x, b2 = y after removing the x part, b3 = z.
    six_d = torch.tensor([2.0, 1.0, 0.0, 3.0, 0.0, 0.0])
    torch.testing.assert_close(rot6d_to_rotmat(six_d), torch.eye(3))


def test_rot6d_to_rotmat_gives_proper_rotations_for_any_input():
    x = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rotmat = rot6d_to_rotmat(x)
    assert rotmat.shape == (2, 3, 4, 3, 3)
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotmat)
    torch.testing.assert_close(rotmat.transpose(-1, -2) @ rotmat, eye)
    torch.testing.assert_close(torch.linalg.det(rotmat), torch.ones(2, 3, 4, dtype=torch.float64))
    # Decoding is idempotent: rotmat -> 6D -> rotmat returns the same matrix.
    torch.testing.assert_close(rot6d_to_rotmat(rotmat_to_rot6d(rotmat)), rotmat)


# -------------------------------------------------------------------------------- axis-angle


def test_axis_angle_to_rotmat_matches_scipy():
    aa = torch.cat([random_axis_angle(64), edge_case_axis_angles()])
    expected = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_matrix())
    torch.testing.assert_close(axis_angle_to_rotmat(aa), expected, atol=1e-12, rtol=0)


def test_axis_angle_to_rotmat_hand_case():
    rotmat = axis_angle_to_rotmat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(rotmat, expected, atol=1e-15, rtol=0)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_axis_angle_round_trip(dtype, atol):
    aa = torch.cat([random_axis_angle(256), edge_case_axis_angles()]).to(dtype)
    recovered = rotmat_to_axis_angle(axis_angle_to_rotmat(aa))
    assert recovered.dtype == dtype
    torch.testing.assert_close(recovered, aa, atol=atol, rtol=0)


def test_rotmat_to_axis_angle_matches_scipy_and_stays_in_zero_to_pi():
    rotmats = torch.from_numpy(Rotation.random(128, random_state=3).as_matrix())
    aa = rotmat_to_axis_angle(rotmats)
    assert (aa.norm(dim=-1) <= math.pi + 1e-9).all()
    torch.testing.assert_close(axis_angle_to_rotmat(aa), rotmats, atol=1e-10, rtol=0)
    expected = torch.from_numpy(Rotation.from_matrix(rotmats.numpy()).as_rotvec())
    torch.testing.assert_close(aa, expected, atol=1e-9, rtol=0)


def test_rotmat_to_axis_angle_at_exactly_pi():
    for axis in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.0, -0.8]):
        aa = torch.tensor(axis, dtype=torch.float64) * math.pi
        recovered = rotmat_to_axis_angle(axis_angle_to_rotmat(aa))
        assert not torch.isnan(recovered).any()
        torch.testing.assert_close(recovered.norm(), torch.tensor(math.pi, dtype=torch.float64))
        # +axis and -axis at pi are the same rotation.
        torch.testing.assert_close(
            axis_angle_to_rotmat(recovered), axis_angle_to_rotmat(aa), atol=1e-12, rtol=0
        )


def test_rotmat_to_axis_angle_of_identity_is_zero():
    aa = rotmat_to_axis_angle(torch.eye(3).expand(4, 3, 3))
    assert torch.equal(aa, torch.zeros(4, 3))


def test_rot6d_axis_angle_round_trips():
    aa = torch.cat([random_axis_angle(64, seed=5), edge_case_axis_angles()])
    six_d = axis_angle_to_rot6d(aa)
    assert six_d.shape == (aa.shape[0], 6)
    torch.testing.assert_close(rot6d_to_axis_angle(six_d), aa, atol=1e-9, rtol=0)
    # A network's unconstrained 6D output decodes to the same rotation as its re-encoded version.
    raw = torch.randn(32, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(
        axis_angle_to_rotmat(rot6d_to_axis_angle(raw)), rot6d_to_rotmat(raw), atol=1e-10, rtol=0
    )


# -------------------------------------------------------------------------------- gradients, dtypes


def test_gradients_are_finite_and_correct_at_zero_and_near_pi():
    near_zero = torch.tensor([[0.0, 0.0, 0.0], [1e-9, -2e-9, 0.0], [0.3, -0.2, 0.1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(axis_angle_to_rotmat, (near_zero.clone().requires_grad_(),))
    rotmats = axis_angle_to_rotmat(torch.cat([near_zero, random_axis_angle(3, seed=7)]))
    assert torch.autograd.gradcheck(rotmat_to_axis_angle, (rotmats.clone().requires_grad_(),))
    near_pi = torch.tensor([[0.0, 0.0, math.pi - 1e-3]], dtype=torch.float64)
    assert torch.autograd.gradcheck(rotmat_to_axis_angle, (axis_angle_to_rotmat(near_pi).requires_grad_(),))
    six_d = torch.randn(4, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.autograd.gradcheck(rot6d_to_axis_angle, (six_d.requires_grad_(),))


def test_gradient_of_rodrigues_at_identity_is_the_cross_product_matrix():
    aa = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_rotmat(aa)[2, 1].backward()  # dR21/dv = e_x at v = 0
    torch.testing.assert_close(aa.grad, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    aa = random_axis_angle(16, seed=9)
    rotmat = axis_angle_to_rotmat(aa.to(dtype))
    assert rotmat.dtype == torch.float32
    six_d = rotmat_to_rot6d(rotmat).to(dtype)
    decoded = rot6d_to_rotmat(six_d)
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, axis_angle_to_rotmat(aa).float(), atol=3e-2, rtol=0)


def test_shape_and_dtype_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\[\.\.\., 6\]"):
        rot6d_to_rotmat(torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        rotmat_to_axis_angle(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating"):
        axis_angle_to_rotmat(torch.zeros(2, 3, dtype=torch.int64))


# -------------------------------------------------------------------------------- in-plane rotation


def test_rotate_points_2d_matches_opencv_rotation_matrix():
    center = (40.0, 25.0)
    points = np.array([[50.0, 25.0], [10.0, 70.0], [40.0, 25.0]])
    for deg in (-30.0, 17.0, 90.0):
        cv_matrix = cv2.getRotationMatrix2D(center, deg, 1.0)
        expected = points @ cv_matrix[:, :2].T + cv_matrix[:, 2]
        np.testing.assert_allclose(rotate_points_2d_np(points, deg, center), expected, atol=1e-9)
    # Hand case: +90 degrees turns a point right of the centre to above it (counter-clockwise on screen).
    np.testing.assert_allclose(rotate_points_2d_np([[50.0, 25.0]], 90.0, center), [[40.0, 15.0]], atol=1e-9)


def test_rotate_points_2d_follows_the_warped_image():
    size, center, deg = 101, (50.0, 50.0), 30.0
    image = np.zeros((size, size), np.float32)
    dot = (80, 50)  # x, y: right of the centre
    image[dot[1], dot[0]] = 1.0
    image = cv2.GaussianBlur(image, (9, 9), 2.0)
    warped = cv2.warpAffine(image, cv2.getRotationMatrix2D(center, deg, 1.0), (size, size))
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    expected = rotate_points_2d_np(np.array(dot, dtype=np.float64), deg, center)
    np.testing.assert_allclose((x, y), expected, atol=1.0)
    assert y < center[1]  # turned upwards: counter-clockwise on screen


def test_rotate_global_orient_hand_case():
    # Identity root rotated by +90 degrees (OpenCV sense) is M(90) = R_z(-90 degrees).
    rotated = rotate_global_orient_np(np.zeros(3), 90.0)
    np.testing.assert_allclose(rotated, [0.0, 0.0, -math.pi / 2], atol=1e-12)
    np.testing.assert_allclose(
        inplane_rotation_matrix_np(90.0), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-15
    )


def test_rotate_global_orient_is_consistent_with_rotated_image_keypoints():
    """A body posed by its root orientation, projected, then the image rotated with OpenCV, must match the
    projection of the same body with the rotated root orientation."""
    size = 512
    center = (size / 2, size / 2)
    gen = np.random.default_rng(0)
    body = gen.normal(scale=0.4, size=(20, 3))  # root-relative body-frame points, metres
    global_orient = np.array([0.3, -2.1, 0.4])
    scale = 0.8  # weak perspective, root at the image centre

    def project_to_pixels(orient: np.ndarray) -> np.ndarray:
        rotmat = Rotation.from_rotvec(orient).as_matrix()
        normalised = scale * (body @ rotmat.T)[:, :2]
        return (normalised + 1.0) * size / 2

    for deg in (-25.0, 12.0, 30.0):
        cv_matrix = cv2.getRotationMatrix2D(center, deg, 1.0)
        keypoints = project_to_pixels(global_orient)
        rotated_keypoints = keypoints @ cv_matrix[:, :2].T + cv_matrix[:, 2]
        rotated_orient = rotate_global_orient_np(global_orient, deg)
        np.testing.assert_allclose(project_to_pixels(rotated_orient), rotated_keypoints, atol=1e-6)
        np.testing.assert_allclose(rotate_points_2d_np(keypoints, deg, center), rotated_keypoints, atol=1e-9)


def test_rotate_global_orient_keeps_dtype_and_batches():
    orients = np.array([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]], dtype=np.float32)
    rotated = rotate_global_orient_np(orients, 10.0)
    assert rotated.shape == (2, 3) and rotated.dtype == np.float32
    np.testing.assert_allclose(rotated[1], [0.0, 0.0, -math.radians(10.0)], atol=1e-7)
    np.testing.assert_allclose(rotate_global_orient_np(orients, 0.0), orients, atol=1e-7)


# -------------------------------------------------------------------------------- pose flip


@pytest.mark.parametrize("num_values", [66, 72])
def test_flip_smpl_pose_twice_is_identity(num_values):
    pose = np.random.default_rng(1).normal(size=(3, num_values)).astype(np.float32)
    flipped = flip_smpl_pose_np(pose)
    assert flipped.shape == pose.shape and flipped.dtype == pose.dtype
    assert not np.allclose(flipped, pose)
    np.testing.assert_array_equal(flip_smpl_pose_np(flipped), pose)


def test_flip_smpl_pose_hand_case():
    pose = np.zeros(66)
    pose[0:3] = [0.1, 0.2, 0.3]  # root stays in place
    pose[3:6] = [1.0, 2.0, 3.0]  # joint 1 (L_Hip) moves to joint 2 (R_Hip)
    pose[60:63] = [4.0, 5.0, 6.0]  # joint 20 (L_Wrist) moves to joint 21 (R_Wrist)
    flipped = flip_smpl_pose_np(pose)
    np.testing.assert_array_equal(flipped[0:3], [0.1, -0.2, -0.3])
    np.testing.assert_array_equal(flipped[6:9], [1.0, -2.0, -3.0])
    np.testing.assert_array_equal(flipped[63:66], [4.0, -5.0, -6.0])
    np.testing.assert_array_equal(flipped[3:6], [0.0, 0.0, 0.0])


def test_flipped_root_is_the_mirrored_rotation():
    mirror = np.diag([-1.0, 1.0, 1.0])
    pose = np.random.default_rng(2).normal(size=72)
    flipped_root = Rotation.from_rotvec(flip_smpl_pose_np(pose)[:3]).as_matrix()
    np.testing.assert_allclose(
        flipped_root, mirror @ Rotation.from_rotvec(pose[:3]).as_matrix() @ mirror, atol=1e-12
    )


def test_flip_smpl_pose_rejects_other_lengths():
    with pytest.raises(ValueError, match="66.*72"):
        flip_smpl_pose_np(np.zeros(69))


def test_autocast_does_not_lower_the_precision():
    aa = random_axis_angle(32, seed=13).float()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        rotmat = axis_angle_to_rotmat(aa)
        decoded = rot6d_to_rotmat(rotmat_to_rot6d(rotmat))
        recovered = rotmat_to_axis_angle(decoded)
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(recovered, aa, atol=1e-5, rtol=0)
