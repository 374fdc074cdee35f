import numpy as np
import pytest
import torch

from romp_hydra.geometry.camera import (
    cam_to_translation,
    normalized_to_original_image,
    normalized_to_pixels,
    pixels_to_normalized,
    romp_cam_trans,
    weak_perspective_project,
)


def test_weak_perspective_project_hand_case():
    points = torch.tensor([[[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]]])
    cam = torch.tensor([[2.0, 0.1, -0.2]])
    expected = torch.tensor([[[2.1, 3.8], [-1.9, -0.2]]])
    torch.testing.assert_close(weak_perspective_project(points, cam), expected)


def test_weak_perspective_project_broadcasts_over_leading_dims():
    points = torch.randn(2, 3, 5, 3)
    cam = torch.rand(2, 3, 3) + 0.5
    projected = weak_perspective_project(points, cam)
    assert projected.shape == (2, 3, 5, 2)
    torch.testing.assert_close(projected[1, 2], points[1, 2, :, :2] * cam[1, 2, 0] + cam[1, 2, 1:])


def test_weak_perspective_project_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one camera per point set"):
        weak_perspective_project(torch.zeros(2, 5, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(s, tx, ty\)"):
        weak_perspective_project(torch.zeros(2, 5, 3), torch.zeros(2, 2))


def test_normalized_pixel_conversions_hand_case_numpy_and_torch():
    normalised = np.array([[-1.0, 1.0], [0.0, 0.5]])
    np.testing.assert_allclose(normalized_to_pixels(normalised, 512), [[0.0, 512.0], [256.0, 384.0]])
    np.testing.assert_allclose(
        pixels_to_normalized(np.array([[0.0, 512.0], [256.0, 384.0]]), 512), normalised
    )
    as_tensor = torch.from_numpy(normalised)
    torch.testing.assert_close(pixels_to_normalized(normalized_to_pixels(as_tensor, 300), 300), as_tensor)
    with pytest.raises(ValueError, match="positive"):
        normalized_to_pixels(normalised, 0)


def test_normalized_to_original_image_undoes_crop_and_pad():
    # Square of side 600 whose left edge is 50 - 10 = 40 px and top edge 20 - 0 = 20 px into the original.
    offsets = torch.tensor([[600.0, 600.0, 20.0, 0.0, 0.0, 50.0, 0.0, 0.0, 0.0, 10.0]])
    coords = torch.tensor([[[0.0, 0.0], [-1.0, -1.0], [1.0, 0.5]]])
    expected = torch.tensor([[[340.0, 320.0], [40.0, 20.0], [640.0, 470.0]]])
    torch.testing.assert_close(normalized_to_original_image(coords, offsets), expected)
    with pytest.raises(ValueError, match=r"\[B, 10\]"):
        normalized_to_original_image(coords, offsets[:, :9])


def test_cam_to_translation_hand_case_and_romp_variant():
    cam = torch.tensor([0.5, 0.2, -0.1])
    torch.testing.assert_close(cam_to_translation(cam), torch.tensor([0.4, -0.2, 4.0]))
    torch.testing.assert_close(romp_cam_trans(cam), torch.tensor([0.8, -0.4, 4.0]))


def test_cam_to_translation_reproduces_weak_perspective_in_the_root_plane():
    focal = 2.0
    cam = torch.tensor([[0.7, 0.15, -0.3], [1.3, -0.4, 0.2]], dtype=torch.float64)
    points = torch.randn(2, 10, 3, dtype=torch.float64)
    points[..., 2] = 0.0  # in the root's depth plane
    camera_points = points + cam_to_translation(cam, focal)[:, None]
    perspective = focal * camera_points[..., :2] / camera_points[..., 2:]
    torch.testing.assert_close(perspective, weak_perspective_project(points, cam))
