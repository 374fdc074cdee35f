"""The loss terms are masked, not branched (issue 16: no host sync): same values as selecting the valid rows,
an exact graph-connected 0 when nothing is valid, and finite gradients whatever the left-out rows hold."""

import pytest
import torch

from romp_hydra.geometry.procrustes import similarity_procrustes
from romp_hydra.geometry.rotations import axis_angle_to_rotmat
from romp_hydra.losses.common import visible_2d, visible_3d
from romp_hydra.losses.focal import centermap_focal_loss
from romp_hydra.losses.keypoints import KP2D_GUARD, KP2D_LEAF_PARENTS, kp2d_loss, mpjpe_loss, pampjpe_loss
from romp_hydra.losses.params import SHAPE_PCA_WEIGHTS, pose_loss, shape_loss
from tests.training.test_train_step_syncs import SYNC_METHODS

LEAVES, PARENTS = list(KP2D_LEAF_PARENTS), list(KP2D_LEAF_PARENTS.values())
ROOTS = [45, 46]


# ---- the former implementations: boolean indexing of the valid rows, Python branches on their count ------


def _zero(x):
    return x.reshape(-1)[:0].sum()


def _joint_mean(distance, visible):
    return torch.where(visible, distance, 0.0).sum(-1) / visible.sum(-1).clamp(min=1)


def _reparent(kp):
    out = kp.clone()
    out[:, LEAVES] = kp[:, LEAVES] - kp[:, PARENTS]
    return out


def selected_kp2d(pred, gt, mask):
    visible = visible_2d(gt)
    visible[:, LEAVES] &= visible[:, PARENTS]
    valid = mask & visible.any(1)
    if not valid.any():
        return _zero(pred)
    pred, gt, visible = pred[valid], gt[valid], visible[valid]
    distance = torch.where(visible, torch.linalg.vector_norm(_reparent(gt) - _reparent(pred), dim=-1), 0.0)
    per_person = distance.sum(1) / (visible.sum(1) + 1e-4)
    if torch.isnan(per_person).any() or (per_person > KP2D_GUARD).any():
        return _zero(pred)
    return per_person.mean()


def selected_mpjpe(pred, gt, mask):
    visible = visible_3d(gt)
    valid = mask & visible[:, ROOTS].all(1)
    if not valid.any():
        return _zero(pred)
    pred, gt, visible = pred[valid], gt[valid], visible[valid]
    pred = pred - pred[:, ROOTS].mean(1, keepdim=True)
    gt = gt - gt[:, ROOTS].mean(1, keepdim=True)
    return _joint_mean(torch.linalg.vector_norm(pred - gt, dim=-1), visible).mean()


def selected_pampjpe(pred, gt, mask, joints):
    visible = visible_3d(gt)
    if joints == "batch":
        common = (visible | ~mask[:, None]).all(0)
        visible = common.expand_as(visible)
        valid = mask & (common.sum() >= 3)
    else:
        valid = mask & (visible.sum(1) >= 3)
    if not valid.any():
        return _zero(pred)
    pred, gt, visible = pred[valid], gt[valid], visible[valid]
    aligned = similarity_procrustes(pred, gt, visible)[0]
    return _joint_mean(torch.linalg.vector_norm(aligned - gt, dim=-1), visible).mean()


def _frobenius(a, b):
    return torch.linalg.vector_norm((a - b).flatten(-2), dim=-1)


def selected_pose(pred, gt, global_mask, body_mask):
    loss = _zero(pred)
    if global_mask.any():
        loss = loss + _frobenius(pred[global_mask, 0], axis_angle_to_rotmat(gt[global_mask, :3])).mean()
    if body_mask.any():
        body = axis_angle_to_rotmat(gt[body_mask, 3:66].reshape(-1, 21, 3))
        loss = loss + _frobenius(pred[body_mask, 1:], body).mean()
    return loss


def selected_shape(pred, gt, mask):
    loss = _zero(pred)
    if mask.any():
        diff = (gt[mask, 66:76] - pred[mask]) * torch.tensor(SHAPE_PCA_WEIGHTS)
        loss = loss + torch.linalg.vector_norm(diff, dim=-1).mean() / 20
    if (~mask).any():
        loss = loss + pred[~mask].pow(2).mean() / 20
    return loss


def selected_focal(pred, gt, mask):
    pred, gt = pred[mask], gt[mask]
    if pred.shape[0] == 0:
        return _zero(pred)
    return centermap_focal_loss(pred, gt)


# ---- inputs ---------------------------------------------------------------------------------------------


def _kp2d_batch(gen, n):
    gt = torch.rand(n, 54, 2, generator=gen) * 1.6 - 0.8
    gt[torch.rand(n, 54, generator=gen) < 0.3] = -2.0
    pred = gt + 0.1 * torch.randn(n, 54, 2, generator=gen)
    return pred, gt


def _kp3d_batch(gen, n, missing=0.1):
    gt = 0.3 * torch.randn(n, 54, 3, generator=gen)
    gt[torch.rand(n, 54, generator=gen) < missing] = -2.0
    pred = gt + 0.05 * torch.randn(n, 54, 3, generator=gen)
    return pred, gt


def _pose_batch(gen, n):
    gt = torch.randn(n, 76, generator=gen)
    pred = axis_angle_to_rotmat((gt[:, :66] + 0.2 * torch.randn(n, 66, generator=gen)).reshape(n, 22, 3))
    return pred, gt


def _masks(gen, n, count):
    return [torch.rand(n, generator=gen) < 0.6 for _ in range(count)]


def _spoil(tensor, rows):
    """The left-out rows hold what padding or a diverged head can: NaN, inf, huge values."""
    spoilt = tensor.clone()
    if not rows.any():
        return spoilt
    flat = spoilt[rows].reshape(int(rows.sum()), -1)
    flat[:, 0::3], flat[:, 1::3], flat[:, 2::3] = float("nan"), float("inf"), -3e38
    spoilt[rows] = flat.reshape(spoilt[rows].shape)
    return spoilt


LOSSES = {
    # name -> (masked, reference, inputs(gen, n) -> (pred, gt), number of masks)
    "kp2d": (kp2d_loss, selected_kp2d, _kp2d_batch, 1),
    "mpjpe": (mpjpe_loss, selected_mpjpe, _kp3d_batch, 1),
    "pampjpe_batch": (
        lambda p, g, m: pampjpe_loss(p, g, m, joints="batch"),
        lambda p, g, m: selected_pampjpe(p, g, m, "batch"),
        lambda gen, n: _kp3d_batch(gen, n, missing=0.02),
        1,
    ),
    "pampjpe_person": (
        lambda p, g, m: pampjpe_loss(p, g, m, joints="person"),
        lambda p, g, m: selected_pampjpe(p, g, m, "person"),
        _kp3d_batch,
        1,
    ),
    "pose": (pose_loss, selected_pose, _pose_batch, 2),
    "shape": (
        shape_loss,
        selected_shape,
        lambda gen, n: (torch.randn(n, 10, generator=gen), torch.randn(n, 76, generator=gen)),
        1,
    ),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("seed", range(6))
def test_values_equal_selecting_the_valid_rows(name, seed):
    masked, reference, inputs, num_masks = LOSSES[name]
    gen = torch.Generator().manual_seed(seed)
    n = 1 + seed * 3
    pred, gt = inputs(gen, n)
    gates = _masks(gen, n, num_masks)
    expected = reference(pred, gt, *gates)
    torch.testing.assert_close(masked(pred, gt, *gates), expected, rtol=1e-6, atol=1e-7)


def test_focal_values_equal_selecting_the_valid_images():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 1, 8, 8, generator=gen)
    gt = torch.rand(5, 1, 8, 8, generator=gen) * 0.9
    gt[:, 0, 3, 3] = 1.0
    for mask in (torch.tensor([True, False, True, True, False]), torch.ones(5, dtype=torch.bool)):
        torch.testing.assert_close(centermap_focal_loss(pred, gt, mask), selected_focal(pred, gt, mask))


# Shape supervises every person (GT betas or the regulariser): only an empty batch has nothing to supervise.
@pytest.mark.parametrize(("name", "n"), [(name, n) for name in LOSSES for n in (0, 3) if name != "shape" or n == 0])
def test_nothing_valid_is_an_exact_graph_connected_zero(name, n):
    masked, reference, inputs, num_masks = LOSSES[name]
    pred, gt = inputs(torch.Generator().manual_seed(n), n)
    gates = [torch.zeros(n, dtype=torch.bool)] * num_masks
    pred = _spoil(pred, torch.ones(n, dtype=torch.bool)).requires_grad_(True)
    gt = _spoil(gt, torch.ones(n, dtype=torch.bool))
    loss = masked(pred, gt, *gates)
    assert loss.item() == 0.0 == reference(pred, gt, *gates).item()
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_focal_without_images_is_an_exact_graph_connected_zero():
    pred = torch.full((2, 1, 4, 4), float("nan"), requires_grad=True)
    loss = centermap_focal_loss(pred, torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


@pytest.mark.parametrize("name", list(LOSSES))
def test_left_out_rows_holding_nan_change_nothing_and_get_zero_gradient(name):
    masked, _, inputs, num_masks = LOSSES[name]
    gen = torch.Generator().manual_seed(11)
    n = 6
    pred, gt = inputs(gen, n)
    gate = torch.tensor([True, False, True, False, True, True])
    gates = [gate] * num_masks
    clean_pred = pred.clone().requires_grad_(True)
    clean = masked(clean_pred, gt, *gates)
    clean.backward()

    # Shape: an ungated person still feeds the beta regulariser, so only its GT may be garbage.
    spoilt_pred = pred if name == "shape" else _spoil(pred, ~gate)
    spoilt_pred = spoilt_pred.clone().requires_grad_(True)
    spoilt = masked(spoilt_pred, _spoil(gt, ~gate), *gates)
    spoilt.backward()
    assert torch.isfinite(spoilt) and torch.isfinite(spoilt_pred.grad).all()
    torch.testing.assert_close(spoilt, clean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(spoilt_pred.grad, clean_pred.grad, rtol=1e-5, atol=1e-7)
    if name != "shape":
        assert torch.equal(spoilt_pred.grad[~gate], torch.zeros_like(spoilt_pred.grad[~gate]))


def test_missing_joints_of_a_valid_person_holding_nan_get_zero_gradient():
    gen = torch.Generator().manual_seed(5)
    pred3, gt3 = _kp3d_batch(gen, 3, missing=0.0)
    gt3[:, 10:20] = float("nan")  # NaN GT is not visible
    pred3[:, 10:20] = float("nan")
    pred2, gt2 = _kp2d_batch(gen, 3)
    pred2[gt2[..., 0] == -2.0] = float("nan")
    for loss_fn, pred, gt in (
        (kp2d_loss, pred2, gt2),
        (mpjpe_loss, pred3, gt3),
        (lambda p, g: pampjpe_loss(p, g, joints="person"), pred3, gt3),
        (lambda p, g: pampjpe_loss(p, g, joints="batch"), pred3, gt3),
    ):
        pred = pred.clone().requires_grad_(True)
        loss = loss_fn(pred, gt)
        loss.backward()
        assert torch.isfinite(loss) and loss > 0
        assert torch.isfinite(pred.grad).all()


def test_kp2d_guard_is_a_zero_with_zero_gradient():
    gen = torch.Generator().manual_seed(2)
    pred, gt = _kp2d_batch(gen, 4)
    gate = torch.tensor([True, True, False, True])
    assert 0 not in KP2D_LEAF_PARENTS
    gt[0, 0] = 0.1
    for value in (float("nan"), float("inf"), 5 * KP2D_GUARD * 54):
        broken = pred.clone()
        broken[0, 0] = value
        broken.requires_grad_(True)
        loss = kp2d_loss(broken, gt, gate)
        assert loss.item() == 0.0 == selected_kp2d(broken, gt, gate).item()
        loss.backward()
        assert torch.equal(broken.grad, torch.zeros_like(broken))
    # The same values in a person outside the gate do not trip the guard.
    outside = pred.clone()
    outside[2] = float("nan")
    torch.testing.assert_close(kp2d_loss(outside, gt, gate), selected_kp2d(pred, gt, gate))


def test_a_used_non_finite_3d_joint_still_makes_the_term_nan():
    # The criterion drops a NaN term and the loop skips the step; masking must not hide a broken prediction.
    gen = torch.Generator().manual_seed(4)
    pred, gt = _kp3d_batch(gen, 2, missing=0.0)
    pred[0, 3] = float("nan")
    assert torch.isnan(mpjpe_loss(pred, gt))
    assert torch.isnan(pampjpe_loss(pred, gt))


def test_no_case_reads_a_value_on_the_host(monkeypatch):
    # The train-step test sees the cases its batches produce; this one also covers no valid row and the guard.
    gen = torch.Generator().manual_seed(8)
    cases = []
    for masked, _, inputs, num_masks in LOSSES.values():
        pred, gt = inputs(gen, 4)
        for gate in (torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)):
            cases.append((masked, pred, gt, [gate] * num_masks))
    pred, gt = _kp2d_batch(gen, 2)
    cases.append((kp2d_loss, torch.full_like(pred, float("nan")), gt, [torch.ones(2, dtype=torch.bool)]))
    cases.append((lambda p, g, m: centermap_focal_loss(p, g, m), torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 4),
                  [torch.tensor([True, False])]))

    def waits(*args, **kwargs):
        raise AssertionError("a loss read a tensor value on the host")

    for method in SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, method, waits)
    losses = [masked(pred, gt, *gates) for masked, pred, gt, gates in cases]
    monkeypatch.undo()
    assert all(torch.isfinite(loss) for loss in losses)
