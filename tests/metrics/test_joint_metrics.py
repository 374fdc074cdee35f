"""Joint metrics against hand-computed values; batch-size independence of the accumulator."""

import math

import numpy as np
import pytest
import torch

from romp_hydra.metrics.joints import (
    AUC_THRESHOLDS_MM,
    MetricAccumulator,
    auc,
    mpckh_bbox,
    mpjpe,
    pa_mpjpe,
    pck3d,
    pckh_2d,
    pve,
)

RNG = np.random.default_rng(0)
R_HIP, L_HIP = 2, 3  # LSP-14


def _lsp_person(n=1):
    return RNG.normal(scale=0.3, size=(n, 14, 3))


def test_mpjpe_hand_computed_with_alignment_and_missing_joints():
    gt = _lsp_person()
    pred = gt + np.array([1.0, -2.0, 0.5])  # translation only
    assert mpjpe(pred, gt, align="hips")[0] == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(pred, gt, align=None)[0] == pytest.approx(1000 * math.sqrt(1 + 4 + 0.25))

    pred[0, 0] += [0.003, 0.004, 0.0]  # 5 mm on R_Ankle
    assert mpjpe(pred, gt)[0] == pytest.approx(5.0 / 14)
    gt[0, 7] = -2.0  # one missing joint
    assert mpjpe(pred, gt)[0] == pytest.approx(5.0 / 13)
    mask = np.ones((1, 14), dtype=bool)
    mask[0, 0] = False
    assert mpjpe(pred, gt, mask)[0] == pytest.approx(0.0, abs=1e-9)

    gt[0, R_HIP] = -2.0  # root missing: cannot align
    assert np.isnan(mpjpe(pred, gt)[0])


def test_mpjpe_root_options():
    gt = RNG.normal(size=(2, 24, 3))
    pred = gt.copy()
    pred[:, 5] += [0.0, 0.0, 0.024]  # 24 mm on one joint
    pred += [0.3, 0.0, 0.0]
    np.testing.assert_allclose(mpjpe(pred, gt, align="pelvis"), [1.0, 1.0])
    np.testing.assert_allclose(mpjpe(pred, gt, align="root_idx", root=0), [1.0, 1.0])
    # Aligned on the displaced joint itself, every other joint is off by 24 mm.
    np.testing.assert_allclose(mpjpe(pred, gt, align="root_idx", root=5), [23.0, 23.0])
    with pytest.raises(ValueError, match="root=0"):
        mpjpe(np.zeros((1, 17, 3)), np.zeros((1, 17, 3)), align="pelvis")
    with pytest.raises(ValueError, match="root"):
        mpjpe(pred, gt, align="root_idx")
    with pytest.raises(ValueError, match="align must be"):
        mpjpe(pred, gt, align="neck", root=0)


def _rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.mark.parametrize("num_persons", [1, 2, 3])
def test_pa_mpjpe_zero_for_similarity_copies(num_persons):
    rng = np.random.default_rng(num_persons)
    gt = rng.normal(scale=0.3, size=(num_persons, 14, 3))
    pred = np.stack([
        (1.5 + i) * gt[i] @ _rotation(rng).T + rng.normal(size=3) for i in range(num_persons)
    ])  # fmt: skip
    gt[0, 4] = -2.0
    np.testing.assert_allclose(pa_mpjpe(pred, gt), np.zeros(num_persons), atol=1e-6)
    # Per-person results do not depend on who else is in the batch.
    assert pa_mpjpe(pred[:1], gt[:1])[0] == pytest.approx(pa_mpjpe(pred, gt)[0], abs=1e-9)


def test_pa_mpjpe_known_residual_and_too_few_joints():
    gt = np.array([[[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]])
    pred = gt.copy()
    pred[0, :, 2] = [0.01, 0.01, -0.01, -0.01]  # out-of-plane residual no similarity can remove
    # Best scale 1/1.0001 shrinks each point onto the sphere of radius 1/sqrt(1.0001): residual 10/sqrt(1.0001) mm.
    assert pa_mpjpe(pred, gt)[0] == pytest.approx(10.0 / math.sqrt(1.0001), rel=1e-9)
    gt[0, 2:] = -2.0
    assert np.isnan(pa_mpjpe(pred, gt)[0])


def test_pve_and_person_mask():
    verts = RNG.normal(size=(2, 30, 3))
    shifted = verts + [0.0, 0.006, 0.008]
    np.testing.assert_allclose(pve(shifted, verts), [10.0, 10.0])
    result = pve(torch.tensor(shifted), torch.tensor(verts), person_mask=np.array([True, False]))
    assert result[0] == pytest.approx(10.0) and np.isnan(result[1])


def test_pck3d_and_auc_hand_computed():
    gt = _lsp_person()
    pred = gt.copy()
    pred[0, [0, 1, 4]] += [0.2, 0.0, 0.0]  # 200 mm: never correct
    pred[0, [6, 7]] += [0.0, 0.12, 0.0]  # 120 mm: correct from 125 mm on
    # the remaining 9 joints are exact: correct for every threshold > 0 (strict "<")
    assert pck3d(pred, gt)[0] == pytest.approx(11 / 14)
    assert pck3d(pred, gt, threshold=100.0)[0] == pytest.approx(9 / 14)
    thresholds = np.array(AUC_THRESHOLDS_MM)
    assert len(thresholds) == 31 and thresholds[-1] == 150
    expected_auc = np.mean([(9 * (t > 0) + 2 * (t > 120)) / 14 for t in thresholds])
    assert auc(pred, gt)[0] == pytest.approx(expected_auc)


def test_pckh_head_normalised_hand_computed():
    gt = np.zeros((1, 14, 2))
    gt[0, :, 0] = np.linspace(-0.5, 0.5, 14)
    gt[0, 13] = [0.0, -0.8]  # head top
    gt[0, 12] = [0.0, -0.6]  # neck: head size 0.2, threshold 0.1
    pred = gt.copy()
    pred[0, 0, 0] += 0.05  # correct
    pred[0, 1, 1] += 0.1  # correct (<=)
    pred[0, 2, 0] += 0.15  # wrong
    pred[0, 3] += [0.09, 0.09]  # 0.127: wrong
    assert pckh_2d(pred, gt)[0] == pytest.approx(12 / 14)
    assert pckh_2d(pred, gt, head_size=np.array([1.0]))[0] == pytest.approx(1.0)
    gt[0, 5] = -2.0
    assert pckh_2d(pred, gt)[0] == pytest.approx(11 / 13)
    gt[0, 12] = -2.0  # no neck, no head size
    assert np.isnan(pckh_2d(pred, gt)[0])


def test_romp_mpckh_bbox_variant():
    gt = np.full((2, 10, 2), -2.0)
    gt[:, :5] = [[0.0, 0.0], [0.3, 0.0], [0.0, 0.4], [0.3, 0.4], [0.1, 0.1]]  # box 0.3 x 0.4, diagonal 0.5
    pred = gt.copy()
    # joint threshold 0.143 * 0.5 = 0.0715
    pred[0, :2, 0] += 0.07  # person 0: 5/5 correct
    pred[1, :3, 0] += 0.08  # person 1: 2/5 correct < 0.6
    np.testing.assert_array_equal(mpckh_bbox(pred, gt), [1.0, 0.0])
    pred[1, 0, 0] -= 0.08  # 3/5 = 0.6 correct: passes (>=)
    np.testing.assert_array_equal(mpckh_bbox(pred, gt), [1.0, 1.0])


def test_accumulator_hand_values_nan_skipping_and_weights():
    acc = MetricAccumulator()
    acc.update("mpjpe", np.array([10.0, np.nan, 20.0]))
    acc.update("mpjpe", torch.tensor([30.0]))
    acc.update("pck", np.array([0.5, 1.0]), weights=np.array([2, 6]))
    assert acc.compute() == {"mpjpe": pytest.approx(20.0), "pck": pytest.approx((1 + 6) / 8)}
    assert acc.counts()["mpjpe"] == {"scored": 3, "skipped": 1}
    other = MetricAccumulator()
    other.update("mpjpe", [40.0])
    acc.merge(other)
    assert acc.compute()["mpjpe"] == pytest.approx(25.0)
    acc.reset()
    assert acc.compute() == {}


def test_accumulator_is_batch_size_independent():
    rng = np.random.default_rng(3)
    num_persons = 7
    pred = rng.normal(scale=0.3, size=(num_persons, 14, 3))
    gt = pred + rng.normal(scale=0.05, size=pred.shape)
    gt[2, :] = -2.0  # one person without GT
    gt[4, 6:9] = -2.0  # some missing joints (not the hips)

    def run(batch_size):
        acc = MetricAccumulator()
        for start in range(0, num_persons, batch_size):
            p, g = pred[start : start + batch_size], gt[start : start + batch_size]
            acc.update_many(
                {"mpjpe": mpjpe(p, g), "pa_mpjpe": pa_mpjpe(p, g), "pck": pck3d(p, g), "auc": auc(p, g)}
            )
        return acc.compute(), acc.counts()

    assert run(1) == run(7)
    assert run(1)[1]["mpjpe"] == {"scored": 6, "skipped": 1}
