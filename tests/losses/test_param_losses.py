"""Pose (rotation-matrix) and shape losses against hand-computed values."""

import math

import pytest
import torch

from romp_hydra.losses.params import pose_loss, shape_loss


def _rot_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _identity_pose(n):
    return torch.eye(3).expand(n, 22, 3, 3).clone()


def test_pose_loss_frobenius_distance_hand_computed():
    gt = torch.zeros(1, 76)  # identity pose
    pred = _identity_pose(1)
    pred[0, 0] = _rot_z(math.pi / 2)  # ||R_z(90) - I||_F = 2
    pred[0, 5] = _rot_z(math.pi / 2)  # one of 21 body joints
    assert pose_loss(pred, gt).item() == pytest.approx(2.0 + 2.0 / 21, rel=1e-6)


def test_pose_loss_reads_axis_angle_gt():
    gt = torch.zeros(1, 76)
    gt[0, 2] = math.pi / 2  # root: 90 degrees about z
    pred = _identity_pose(1)
    pred[0, 0] = _rot_z(math.pi / 2)
    assert pose_loss(pred, gt).item() == pytest.approx(0.0, abs=1e-6)


def test_pose_loss_gates_global_and_body_separately():
    gt = torch.zeros(2, 76)
    pred = _identity_pose(2)
    pred[:, 0] = _rot_z(math.pi / 2)
    pred[:, 1] = _rot_z(math.pi / 2)
    global_mask = torch.tensor([True, False])
    body_mask = torch.tensor([False, False])
    assert pose_loss(pred, gt, global_mask, body_mask).item() == pytest.approx(2.0, rel=1e-6)
    assert pose_loss(pred, gt, ~global_mask, torch.tensor([True, True])).item() == pytest.approx(
        2.0 + 2.0 / 21, rel=1e-6
    )
    # Missing GT (-10 filler) behind a closed gate changes nothing.
    gt[1] = -10.0
    pred_other = pred.clone()
    pred_other[1] = _rot_z(1.0)
    assert pose_loss(pred_other, gt, global_mask, body_mask).item() == pytest.approx(2.0, rel=1e-6)

    nothing = pose_loss(
        pred.requires_grad_(True), gt, torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    )
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_shape_loss_is_romps_sum_of_two_means():
    # ROMP calc_loss.py `Shape`: mean over persons with GT betas of |(gt - pred) * w|_2 / 20, PLUS mean over
    # all betas of the persons without GT of pred^2 / 20. Hand-made batch: persons 0 and 1 have GT betas,
    # person 2 has none.
    gt = torch.zeros(3, 76)
    gt[0, 66] = 1.0  # only beta 0 differs (w = 1):           |1 * 1|   = 1
    gt[1, 67] = 2.0  # only beta 1 differs (w = 0.64):        |2 * .64| = 1.28
    pred = torch.zeros(3, 10)
    pred[2, :5] = 2.0  # unsupervised: betas^2 = [4]*5 + [0]*5, mean = 2
    mask = torch.tensor([True, True, False])
    supervised = (1.0 + 1.28) / 2 / 20  # 0.057
    regulariser = 2.0 / 20  # 0.1
    assert shape_loss(pred, gt, mask).item() == pytest.approx(0.157, rel=1e-6)
    assert supervised + regulariser == pytest.approx(0.157)
    # One mean over all three persons (the old formula) would give (1/20 + 1.28/20 + 2/20) / 3 = 0.0713.
    # Everyone supervised: person 2 compares pred 2 against GT 0 on betas 0..4 (w = 1, .64, .32, .32, .16).
    all_supervised = (1.0 + 1.28 + 2 * math.sqrt(1 + 0.64**2 + 2 * 0.32**2 + 0.16**2)) / 3 / 20
    assert shape_loss(pred, gt).item() == pytest.approx(all_supervised, rel=1e-6)
    # Nobody supervised: mean of all 30 squared betas / 20 = (5 * 4 / 30) / 20.
    assert shape_loss(pred, gt, torch.zeros(3, dtype=torch.bool)).item() == pytest.approx(20 / 30 / 20, rel=1e-6)


def test_shape_loss_empty_and_bad_shape():
    loss = shape_loss(torch.zeros(0, 10, requires_grad=True), torch.zeros(0, 76))
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match=r"\(1, 76\)"):
        shape_loss(torch.zeros(1, 10), torch.zeros(1, 72))
