"""Centre-map focal loss against hand-computed CornerNet values."""

import math

import pytest
import torch

from romp_hydra.losses.focal import centermap_focal_loss


def _maps(*rows_per_image):
    return torch.tensor(rows_per_image, dtype=torch.float32)[:, None]


def test_single_positive_matches_hand_computation():
    gt = _maps([[1.0, 0.5], [0.0, 0.0]])
    pred = _maps([[0.5, 0.5], [0.2, 0.0]])
    positive = math.log(0.5) * 0.5**2
    negative = math.log(0.5) * 0.5**2 * 0.5**4 + math.log(0.8) * 0.2**2  # the cell with pred 0 adds 0
    expected = -(positive + negative) / (1 + 1e-4)
    assert centermap_focal_loss(pred, gt).item() == pytest.approx(expected, rel=1e-6)


def test_image_without_positives_uses_negative_part_only_and_images_are_averaged():
    gt = _maps([[1.0, 0.5], [0.0, 0.0]], [[0.5, 0.0], [0.0, 0.0]])
    pred = _maps([[0.5, 0.5], [0.2, 0.0]], [[0.5, 0.2], [0.0, 0.0]])
    first = -(math.log(0.5) * 0.25 + math.log(0.5) * 0.25 * 0.0625 + math.log(0.8) * 0.04) / (1 + 1e-4)
    second = -(math.log(0.5) * 0.25 * 0.0625 + math.log(0.8) * 0.04)
    assert centermap_focal_loss(pred, gt).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_raw_output_is_clamped_inside_logs_only():
    gt = _maps([[1.0, 0.0]])
    pred = _maps([[1.5, -0.5]])
    positive = math.log(1 - 1e-3) * (1 - 1.5) ** 2
    negative = math.log(1 - 1e-3) * (-0.5) ** 2  # clamp(-0.5) = 1e-3 inside the log, raw value outside
    expected = -(positive + negative) / (1 + 1e-4)
    # log(0.999) in float32 carries ~1e-5 relative error.
    assert centermap_focal_loss(pred, gt).item() == pytest.approx(expected, rel=1e-4)


def test_image_mask_selects_images_and_empty_selection_is_graph_safe_zero():
    gt = _maps([[1.0, 0.0]], [[1.0, 0.0]])
    pred = _maps([[0.5, 0.0]], [[0.9, 0.3]]).requires_grad_(True)
    only_first = centermap_focal_loss(pred, gt, torch.tensor([True, False]))
    assert only_first.item() == pytest.approx(-(math.log(0.5) * 0.25) / (1 + 1e-4), rel=1e-6)

    nothing = centermap_focal_loss(pred, gt, torch.tensor([False, False]))
    assert nothing.item() == 0.0 and nothing.requires_grad
    nothing.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="must equal gt shape"):
        centermap_focal_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))
