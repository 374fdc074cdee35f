"""2D keypoint, MPJPE and PA-MPJPE losses: hand-computed values and mask gating."""

import math

import pytest
import torch

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.losses.keypoints import kp2d_loss, mpjpe_loss, pampjpe_loss


def _missing(n, dims):
    return torch.full((n, 54, dims), -2.0)


# ---- 2D -------------------------------------------------------------------------------------------------


def test_kp2d_masked_mean_over_visible_joints():
    gt = _missing(1, 2)
    gt[0, JOINT54["Pelvis_SMPL"]] = torch.tensor([0.1, 0.2])
    gt[0, JOINT54["L_Knee"]] = torch.tensor([0.3, 0.4])
    pred = torch.zeros(1, 54, 2)
    expected = (math.hypot(0.1, 0.2) + 0.5) / (2 + 1e-4)
    assert kp2d_loss(pred, gt).item() == pytest.approx(expected, rel=1e-6)


def test_kp2d_leaves_are_compared_relative_to_their_parent():
    shoulder, nose = JOINT54["L_Shoulder"], JOINT54["Nose"]
    gt = _missing(1, 2)
    gt[0, shoulder] = torch.tensor([0.5, 0.5])
    gt[0, nose] = torch.tensor([0.6, 0.5])
    pred = torch.zeros(1, 54, 2)
    pred[0, shoulder] = torch.tensor([0.4, 0.5])
    pred[0, nose] = torch.tensor([0.6, 0.5])  # right in absolute terms, 0.1 off relative to the shoulder
    assert kp2d_loss(pred, gt).item() == pytest.approx((0.1 + 0.1) / (2 + 1e-4), rel=1e-4)

    # A leaf whose parent is missing is not supervised: nothing visible is left -> exact 0.
    gt[0, shoulder] = -2.0
    assert kp2d_loss(pred, gt).item() == 0.0


def test_kp2d_person_gate_and_guard():
    gt = _missing(2, 2)
    gt[:, 0] = torch.tensor([0.1, 0.1])
    pred = torch.zeros(2, 54, 2)
    gate = torch.tensor([True, False])
    base = kp2d_loss(pred, gt, gate)
    pred_changed = pred.clone()
    pred_changed[1] = 0.9
    assert (
        kp2d_loss(pred_changed, gt, gate).item()
        == base.item()
        == pytest.approx(math.hypot(0.1, 0.1) / 1.0001)
    )

    exploding = pred.clone()
    exploding[0, 0] = 5000.0
    assert kp2d_loss(exploding, gt, gate).item() == 0.0
    nan_pred = torch.full_like(pred, float("nan")).requires_grad_(True)
    loss = kp2d_loss(nan_pred, gt, gate)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(nan_pred.grad, torch.zeros_like(nan_pred))


def test_kp2d_no_person_is_graph_safe_zero():
    pred = torch.zeros(0, 54, 2, requires_grad=True)
    loss = kp2d_loss(pred, _missing(0, 2))
    assert loss.item() == 0.0 and loss.requires_grad


# ---- 3D -------------------------------------------------------------------------------------------------


def _skeleton(generator, n=1):
    joints = torch.randn(n, 54, 3, generator=generator) * 0.3
    return joints


def test_mpjpe_aligns_on_hip_midpoint_and_masks_missing_joints():
    gen = torch.Generator().manual_seed(0)
    gt = _skeleton(gen)
    pred = gt + torch.tensor([1.0, 2.0, 3.0])  # a pure translation costs nothing after hip alignment
    assert mpjpe_loss(pred, gt).item() == pytest.approx(0.0, abs=1e-6)

    pred[0, JOINT54["Head_top"]] += torch.tensor([0.54, 0.0, 0.0])
    assert mpjpe_loss(pred, gt).item() == pytest.approx(0.54 / 54, rel=1e-4)

    gt_missing = gt.clone()
    gt_missing[0, 10:30] = -2.0  # 34 joints left, the offset one among them
    assert mpjpe_loss(pred, gt_missing).item() == pytest.approx(0.54 / 34, rel=1e-4)

    gt_missing[0, JOINT54["Head_top"]] = -2.0
    assert mpjpe_loss(pred, gt_missing).item() == pytest.approx(0.0, abs=1e-6)


def test_mpjpe_person_without_3d_gt_adds_nothing():
    gen = torch.Generator().manual_seed(1)
    gt = _skeleton(gen, 2)
    pred = gt.clone()
    pred[0, 0] += torch.tensor([0.0, 0.27, 0.0])
    gate = torch.tensor([True, False])
    expected = 0.27 / 54
    assert mpjpe_loss(pred, gt, gate).item() == pytest.approx(expected, rel=1e-4)
    pred[1] += torch.randn(54, 3, generator=gen)
    assert mpjpe_loss(pred, gt, gate).item() == pytest.approx(expected, rel=1e-4)

    # A person whose GT hips are missing cannot be aligned and is left out.
    gt[0, JOINT54["L_Hip"]] = -2.0
    assert mpjpe_loss(pred, gt, gate).item() == 0.0


def _random_rotation(generator):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()


@pytest.mark.parametrize("num_persons", [1, 2, 3])
def test_pampjpe_is_zero_for_similarity_transformed_copies(num_persons):
    gen = torch.Generator().manual_seed(num_persons)
    gt = _skeleton(gen, num_persons)
    pred = torch.empty_like(gt)
    for i in range(num_persons):
        scale = 0.5 + i
        pred[i] = scale * gt[i] @ _random_rotation(gen).T + torch.randn(3, generator=gen)
    # Each person has its own missing joints; the loss aligns each on its own visible set.
    for i in range(num_persons):
        gt[i, 5 * i : 5 * i + 4] = -2.0
    loss = pampjpe_loss(pred, gt, torch.ones(num_persons, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)

    noisy = pred + 0.05 * torch.randn(pred.shape, generator=gen)
    assert pampjpe_loss(noisy, gt).item() > 1e-3


def test_pampjpe_gate_and_too_few_joints():
    gen = torch.Generator().manual_seed(7)
    gt = _skeleton(gen, 2)
    pred = gt + 0.1 * torch.randn(gt.shape, generator=gen)
    gate = torch.tensor([True, False])
    base = pampjpe_loss(pred, gt, gate).item()
    pred[1] = torch.randn(54, 3, generator=gen)
    assert pampjpe_loss(pred, gt, gate).item() == pytest.approx(base, rel=1e-6)

    gt[0, 2:] = -2.0  # two joints: no similarity transform, person left out
    pred_leaf = pred.clone().requires_grad_(True)
    loss = pampjpe_loss(pred_leaf, gt, gate)
    assert loss.item() == 0.0 and loss.requires_grad


def test_shape_errors_name_the_expected_layout():
    with pytest.raises(ValueError, match=r"\(N, 54, 3\)"):
        mpjpe_loss(torch.zeros(1, 17, 3), torch.zeros(1, 17, 3))


def test_pampjpe_batch_mode_uses_joints_labelled_in_every_person():
    # ROMP calc_pampjpe: keep the joints whose GT is present in *all* persons of the batch. Person 1 lacks
    # joint 0; person 0's only error is on joint 0, so ROMP's alignment ignores it and the loss is exactly 0.
    gen = torch.Generator().manual_seed(3)
    gt = _skeleton(gen, 2)
    pred = gt.clone()
    pred[0, 0] += torch.tensor([0.3, 0.0, 0.0])
    gt[1, 0] = -2.0
    assert pampjpe_loss(pred, gt).item() == pytest.approx(0.0, abs=1e-6)  # batch: ROMP, the default
    assert pampjpe_loss(pred, gt, joints="person").item() > 1e-3  # per person: joint 0 counts for person 0
    # A person outside the gate does not narrow the common joint set.
    gate = torch.tensor([True, False])
    assert pampjpe_loss(pred, gt, gate).item() == pytest.approx(
        pampjpe_loss(pred[:1], gt[:1], joints="person").item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="joints="):
        pampjpe_loss(pred, gt, joints="all")
