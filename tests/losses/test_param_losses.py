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


def test_shape_loss_supervised_and_regulariser():
    gt = torch.zeros(2, 76)
    gt[0, 66:] = 1.0
    pred = torch.zeros(2, 10)
    pred[1] = 2.0
    weights = [1, 0.64, 0.32, 0.32] + [0.16] * 6
    supervised = math.sqrt(sum(w * w for w in weights)) / 20  # |(1 - 0) * w| / 20
    regulariser = 4.0 / 20  # mean(2^2) / 20
    mask = torch.tensor([True, False])
    assert shape_loss(pred, gt, mask).item() == pytest.approx((supervised + regulariser) / 2, rel=1e-6)
    # Everyone supervised: person 1 now compares 2 against GT 0.
    assert shape_loss(pred, gt).item() == pytest.approx((supervised + 2 * supervised) / 2, rel=1e-6)


def test_shape_loss_empty_and_bad_shape():
    loss = shape_loss(torch.zeros(0, 10, requires_grad=True), torch.zeros(0, 76))
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match=r"\(1, 76\)"):
        shape_loss(torch.zeros(1, 10), torch.zeros(1, 72))
