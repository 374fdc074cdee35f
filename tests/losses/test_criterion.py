"""Criterion: weighting, clipping, NaN handling, gating, and the v1 config."""

import math
import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from romp_hydra import batch as masks
from romp_hydra.losses.criterion import Criterion, gather_matched_targets
from romp_hydra.losses.keypoints import kp2d_loss, mpjpe_loss, pampjpe_loss
from romp_hydra.losses.params import pose_loss, shape_loss

REPO_ROOT = Path(__file__).resolve().parents[2]


def _scene(num_persons=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    kp3d = torch.randn(num_persons, 54, 3, generator=gen) * 0.3
    outputs = {
        "pj2d": (torch.rand(num_persons, 54, 2, generator=gen) * 2 - 1).requires_grad_(True),
        "joints54": (kp3d + 0.05 * torch.randn(kp3d.shape, generator=gen)).requires_grad_(True),
        "pose_rotmat": torch.eye(3).expand(num_persons, 22, 3, 3).clone().requires_grad_(True),
        "betas": torch.zeros(num_persons, 10, requires_grad=True),
        "body_pose": torch.zeros(num_persons, 63, requires_grad=True),
    }
    targets = {
        "kp2d": torch.rand(num_persons, 54, 2, generator=gen) * 2 - 1,
        "kp3d": kp3d,
        "params": 0.3 * torch.randn(num_persons, 76, generator=gen),
        "valid_masks": torch.ones(num_persons, 8, dtype=torch.bool),
    }
    centre_gt = torch.zeros(2, 1, 4, 4)
    centre_gt[:, 0, 1, 1] = 1.0
    centre_pred = torch.full((2, 1, 4, 4), 0.1, requires_grad=True)
    return outputs, targets, centre_pred, centre_gt, torch.tensor([True, True])


WEIGHTS = {"centermap": 160, "kp2d": 400, "mpjpe": 200, "pampjpe": 360, "pose": 80, "shape": 6}


def test_terms_are_weighted_values_and_total_is_their_sum():
    outputs, targets, centre_pred, centre_gt, image_mask = _scene()
    criterion = Criterion(WEIGHTS, loss_thresh=1e9)
    total, terms = criterion(outputs, targets, centre_pred, centre_gt, image_mask)
    assert list(terms) == list(WEIGHTS)
    expected = {
        "kp2d": 400 * kp2d_loss(outputs["pj2d"], targets["kp2d"]),
        "mpjpe": 200 * mpjpe_loss(outputs["joints54"], targets["kp3d"]),
        "pampjpe": 360 * pampjpe_loss(outputs["joints54"], targets["kp3d"]),
        "pose": 80 * pose_loss(outputs["pose_rotmat"], targets["params"]),
        "shape": 6 * shape_loss(outputs["betas"], targets["params"]),
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-6), name
    assert total.item() == pytest.approx(sum(t.item() for t in terms.values()), rel=1e-6)
    total.backward()
    assert outputs["joints54"].grad.abs().sum() > 0 and centre_pred.grad.abs().sum() > 0


def test_term_at_threshold_is_rescaled_to_exactly_the_threshold():
    outputs, targets, centre_pred, centre_gt, image_mask = _scene()
    raw = kp2d_loss(outputs["pj2d"], targets["kp2d"]).item()
    weight = 2000.0 / raw  # weighted value 2000, twice the threshold
    total, terms = Criterion({"kp2d": weight}, loss_thresh=1000)(
        outputs, targets, centre_pred, centre_gt, image_mask
    )
    assert terms["kp2d"].item() == pytest.approx(1000.0, rel=1e-6)
    total.backward()
    clipped_grad = outputs["pj2d"].grad.clone()

    outputs["pj2d"].grad = None
    (weight * kp2d_loss(outputs["pj2d"], targets["kp2d"])).backward()
    # value * (thresh / value.detach()): the gradient is scaled by thresh / value = 1/2.
    torch.testing.assert_close(clipped_grad, outputs["pj2d"].grad * 0.5)

    below = Criterion({"kp2d": 0.5 * 1000.0 / raw}, loss_thresh=1000)(
        outputs, targets, centre_pred, centre_gt, image_mask
    )[1]
    assert below["kp2d"].item() == pytest.approx(500.0, rel=1e-6)


def test_nan_term_is_dropped_from_total_and_reported():
    outputs, targets, centre_pred, centre_gt, image_mask = _scene()
    outputs["pose_rotmat"] = torch.full((3, 22, 3, 3), float("nan"), requires_grad=True)
    criterion = Criterion({"pose": 80, "shape": 6}, loss_thresh=1000)
    total, terms = criterion(outputs, targets, centre_pred, centre_gt, image_mask)
    assert math.isnan(terms["pose"].item())
    assert total.item() == pytest.approx(terms["shape"].item(), rel=1e-6)
    total.backward()
    assert torch.isfinite(outputs["betas"].grad).all()


def test_person_without_3d_gt_does_not_change_3d_terms():
    outputs, targets, centre_pred, centre_gt, image_mask = _scene()
    targets["valid_masks"][2, masks.KP3D] = False
    targets["kp3d"][0, :5] = -2.0  # missing joints make the losses narrow the masks internally
    targets["kp2d"][1] = -2.0
    valid_before = targets["valid_masks"].clone()
    criterion = Criterion({"kp2d": 400, "mpjpe": 200, "pampjpe": 360}, loss_thresh=1e9)
    _, before = criterion(outputs, targets, centre_pred, centre_gt, image_mask)
    assert torch.equal(targets["valid_masks"], valid_before)  # the caller's masks are not modified
    with torch.no_grad():
        outputs["joints54"][2] += 1.0
    _, after = criterion(outputs, targets, centre_pred, centre_gt, image_mask)
    for name in ("mpjpe", "pampjpe"):
        assert after[name].item() == pytest.approx(before[name].item(), rel=1e-6)


def test_no_valid_person_gives_graph_safe_zero_total():
    outputs, targets, centre_pred, centre_gt, _ = _scene()
    targets["valid_masks"][:] = False
    total, terms = Criterion({"centermap": 160, "mpjpe": 200, "kp2d": 400})(
        outputs, targets, centre_pred, centre_gt, torch.tensor([False, False])
    )
    assert total.item() == 0.0 and all(t.item() == 0.0 for t in terms.values())
    total.backward()  # must not raise


def test_configuration_errors_name_the_fix():
    with pytest.raises(ValueError, match="unknown loss term"):
        Criterion({"kp3d": 1.0})
    with pytest.raises(ValueError, match="remove loss.weights.cam"):
        Criterion({"cam": 200})  # ROMP's Cam term can only be 0 in v1: it is gone
    with pytest.raises(ValueError, match="pampjpe_joints"):
        Criterion({"pampjpe": 1.0}, pampjpe_joints="all")
    with pytest.raises(KeyError, match="pj2d"):
        outputs, targets, centre_pred, centre_gt, image_mask = _scene()
        del outputs["pj2d"]
        Criterion({"kp2d": 1.0})(outputs, targets, centre_pred, centre_gt, image_mask)


def test_v1_yaml_instantiates_with_prior_off_when_gmm_missing(tmp_path):
    cfg = OmegaConf.create({"paths": {"smpl_dir": str(tmp_path)}})
    cfg.loss = OmegaConf.load(REPO_ROOT / "conf" / "loss" / "v1.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        criterion = instantiate(cfg.loss)
    assert criterion.weights == {
        "centermap": 160,
        "kp2d": 400,
        "mpjpe": 200,
        "pampjpe": 360,
        "pose": 80,
        "shape": 6,
    }
    assert criterion.loss_thresh == 1000 and criterion.prior is None and criterion.pampjpe_joints == "batch"
    assert any(str(tmp_path / "gmm_08.pkl") in str(w.message) for w in caught)


def test_gather_matched_targets_picks_slots():
    batch = {
        "kp2d": torch.arange(2 * 3 * 54 * 2, dtype=torch.float32).reshape(2, 3, 54, 2),
        "kp3d": torch.zeros(2, 3, 54, 3),
        "params": torch.arange(2 * 3, dtype=torch.float32).reshape(2, 3, 1).expand(2, 3, 76),
        "valid_masks": torch.zeros(2, 3, 8, dtype=torch.uint8),
    }
    gathered = gather_matched_targets(batch, torch.tensor([1, 0]), torch.tensor([2, 1]))
    assert gathered["params"][:, 0].tolist() == [5.0, 1.0]
    assert gathered["kp2d"].shape == (2, 54, 2) and gathered["valid_masks"].dtype == torch.bool
    with pytest.raises(ValueError, match="parsing mode"):
        gather_matched_targets(batch, torch.tensor([0]), torch.tensor([-1]))


def test_v1_yaml_keys_are_exactly_the_constructor_arguments():
    import inspect

    keys = set(OmegaConf.load(REPO_ROOT / "conf" / "loss" / "v1.yaml")) - {"_target_"}
    assert keys == set(inspect.signature(Criterion.__init__).parameters) - {"self"}


def test_loss_terms_are_a_table_without_cam():
    from romp_hydra.losses.criterion import LOSS_TERMS

    assert list(LOSS_TERMS) == ["centermap", "kp2d", "mpjpe", "pampjpe", "pose", "shape", "prior"]
    assert "cam" not in OmegaConf.load(REPO_ROOT / "conf" / "loss" / "v1.yaml").weights
