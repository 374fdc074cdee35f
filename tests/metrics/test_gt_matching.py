"""GT <-> detection matching and detection precision/recall on a hand-made scene."""

import math

import numpy as np
import pytest
import torch

from romp_hydra.metrics.detection import DetectionCounts, detection_counts
from romp_hydra.models.parser import gt_center_cells, match_gt_to_predictions

C = 64


def _norm(y, x):
    """Normalised (x, y) centre in the middle of map cell (y, x)."""
    return [(x + 0.5) / (C / 2) - 1, (y + 0.5) / (C / 2) - 1]


@pytest.fixture
def scene():
    """Image 0: GT A at (10, 10), GT B at (40, 40); detections near A, near-ish B, and a stray one.
    Image 1: GT C, nothing detected. Slot 2 of image 0 and slot 1 of image 1 are empty."""
    centers = torch.full((2, 3, 2), -2.0)
    centers[0, 0] = torch.tensor(_norm(10, 10))
    centers[0, 1] = torch.tensor(_norm(40, 40))
    centers[1, 0] = torch.tensor(_norm(20, 30))
    pred_batch = torch.tensor([0, 0, 0])
    pred_yx = torch.tensor([[11, 10], [50, 50], [5, 60]])
    return centers, pred_batch, pred_yx


def test_gt_center_cells_follow_romp_quantisation():
    _, _, cells = gt_center_cells(torch.tensor([[[-1.0, -1.0], [1.0, 1.0], _norm(3, 7)]]), None, C)
    np.testing.assert_array_equal(cells.numpy(), [[0, 0], [63, 63], [3, 7]])


def test_nearest_center_with_a_miss_and_a_false_positive(scene):
    result = match_gt_to_predictions(*scene, map_size=C)
    assert result.batch_idx.tolist() == [0, 0]
    assert result.person_idx.tolist() == [0, 1]
    assert result.pred_idx.tolist() == [0, 1]
    assert result.sample_yx.tolist() == [[11, 10], [50, 50]]
    assert (result.missed_batch_idx.tolist(), result.missed_person_idx.tolist()) == ([1], [0])
    assert result.false_positive_idx.tolist() == [2]
    assert result.counts() == {"gt": 3, "predictions": 3, "matched": 2, "missed": 1, "false_positives": 1}

    # With a radius of 5 cells, B's nearest detection (14.1 cells away) no longer counts.
    limited = match_gt_to_predictions(*scene, map_size=C, max_distance=5)
    assert limited.counts() == {"gt": 3, "predictions": 3, "matched": 1, "missed": 2, "false_positives": 2}


def test_shared_detection_versus_one_to_one():
    centers = torch.full((1, 2, 2), -2.0)
    centers[0, 0] = torch.tensor(_norm(10, 10))
    centers[0, 1] = torch.tensor(_norm(12, 10))
    pred_batch = torch.tensor([0, 0])
    pred_yx = torch.tensor([[11, 10], [30, 30]])
    shared = match_gt_to_predictions(centers, pred_batch, pred_yx, C)
    assert shared.pred_idx.tolist() == [0, 0]  # ROMP: both GT take the nearest detection
    assert shared.false_positive_idx.tolist() == [1]

    one_to_one = match_gt_to_predictions(centers, pred_batch, pred_yx, C, one_to_one=True)
    assert sorted(one_to_one.pred_idx.tolist()) == [0, 1]
    assert one_to_one.num_false_positives == 0


def test_gt_center_mode_reads_the_cells_under_gt(scene):
    centers, pred_batch, pred_yx = scene
    result = match_gt_to_predictions(centers, None, None, C, mode="gt_center")
    assert result.sample_yx.tolist() == [[10, 10], [40, 40], [20, 30]]
    assert result.pred_idx.tolist() == [-1, -1, -1]
    assert result.num_missed == 0 and result.num_false_positives == 0
    with pytest.raises(ValueError, match="use one of nearest_center, gt_center"):
        match_gt_to_predictions(centers, pred_batch, pred_yx, C, mode="iou")


def test_person_mask_restricts_gt(scene):
    centers, pred_batch, pred_yx = scene
    mask = torch.tensor([[True, False, False], [False, False, False]])
    result = match_gt_to_predictions(centers, pred_batch, pred_yx, C, person_mask=mask)
    assert result.counts() == {"gt": 1, "predictions": 3, "matched": 1, "missed": 0, "false_positives": 2}


def test_detection_precision_recall_at_thresholds(scene):
    tight = detection_counts(*scene, map_size=C, threshold=2)
    assert (tight.true_positives, tight.num_gt, tight.num_predictions) == (1, 3, 3)
    assert tight.precision == pytest.approx(1 / 3) and tight.recall == pytest.approx(1 / 3)

    loose = detection_counts(*scene, map_size=C, threshold=20 * 2 / C, units="normalised")
    assert loose.precision == pytest.approx(2 / 3) and loose.recall == pytest.approx(2 / 3)
    assert loose.f1 == pytest.approx(2 / 3)

    summed = tight + loose
    assert (summed.true_positives, summed.num_gt, summed.num_predictions) == (3, 6, 6)
    assert math.isnan(DetectionCounts().precision)


def test_detection_counts_prefer_more_in_range_matches():
    # Minimising total distance alone would pair GT0-d0 (0) and GT1-d1 (45.5, out of range): 1 true positive.
    # Pairing GT0-d1 (29.4) and GT1-d0 (30.0) keeps both within 30 cells: 2 true positives.
    centers = torch.full((1, 2, 2), -2.0)
    centers[0, 0] = torch.tensor(_norm(10, 10))
    centers[0, 1] = torch.tensor(_norm(40, 10))
    pred_yx = torch.tensor([[10, 10], [5, 39]])
    counts = detection_counts(centers, torch.tensor([0, 0]), pred_yx, C, threshold=30)
    assert counts.true_positives == 2
