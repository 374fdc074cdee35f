"""evaluate_batches on hand-made maps: matching, misses, false detections, alignment, groups, batch size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from romp_hydra.body.joint_sets import H36M_17, JOINT54, LSP14_FROM_54, MUPOTS_17
from romp_hydra.evaluation.protocols import Protocol
from romp_hydra.evaluation.runner import evaluate_batches
from tests.evaluation.conftest import Scene, person_params, predicted, smpl76

CPU = torch.device("cpu")
HEAD_TOP_LSP = 13  # LSP-14 row of the head top


def lsp_gt_from_prediction(pred: dict[str, np.ndarray]) -> np.ndarray:
    """54-joint GT (-2 elsewhere) holding the prediction's H36M-regressed LSP-14 rows, as 3DPW's GT would."""
    gt = np.full((54, 3), -2.0)
    gt[list(LSP14_FROM_54)] = pred["joints_h36m17"][:14]
    return gt


def protocol_3dpw(**changes) -> Protocol:
    return Protocol(
        **{"name": "3dpw_p2", "joints": "lsp14", "pred_joints": "h36m17", "group_by": "sequence", **changes}
    )


@pytest.fixture
def scene_with_miss_and_false_detection(predictor):
    """Image 0: person A (GT centre cell (2, 2)) detected at (2, 3), plus a false detection at (6, 6).
    Image 1: person B (cell (5, 5)), nothing detected: a miss.

    A's GT is the prediction at (2, 3) with the head top moved by 7 cm (MPJPE 70 mm / 14 joints = 5 mm).
    The GT-centre cell (2, 2) holds a person turned by 90 degrees; B's cell holds B's exact (shifted) GT.
    """
    scene = Scene(2)
    upright = person_params()
    turned = person_params(global_orient=(0.0, math.pi / 2, 0.0))
    pred = predicted(predictor, upright)
    gt_a = lsp_gt_from_prediction(pred)
    gt_a[JOINT54["Head_top"]] += (0.07, 0.0, 0.0)
    gt_b = lsp_gt_from_prediction(pred) + np.where(lsp_gt_from_prediction(pred) > -2, 1.5, 0.0)
    scene.detect(0, (2, 3))
    scene.set_params(0, (2, 3), upright)
    scene.set_params(0, (2, 2), turned)
    scene.detect(0, (6, 6))
    scene.set_params(0, (6, 6), turned)
    scene.add_person(0, (2, 2), gt_a, smpl76(upright))
    scene.set_params(1, (5, 5), upright)
    scene.add_person(1, (5, 5), gt_b, smpl76(upright))
    return scene


def test_nearest_center_scores_the_detection_and_counts_the_miss(
    scene_with_miss_and_false_detection, predictor
):
    scene = scene_with_miss_and_false_detection
    result = evaluate_batches(scene.net(), predictor, scene.batches(2), protocol_3dpw(), CPU)
    metrics = result.metrics()
    assert metrics["mpjpe"] == pytest.approx(5.0, abs=1e-4)
    # Procrustes cannot raise the squared error (70^2 mm^2), so the mean error is at most 70 / sqrt(14) mm.
    assert 0.0 < metrics["pa_mpjpe"] <= 70.0 / math.sqrt(14)
    assert metrics["pve"] == pytest.approx(0.0, abs=1e-3)  # GT parameters = the predicted ones
    assert (metrics["num_gt"], metrics["num_evaluated"], metrics["num_missed"]) == (2, 1, 1)
    # One true detection (1 cell from A's centre), one false; B not found.
    assert metrics["det_recall"] == pytest.approx(0.5)
    assert metrics["det_precision"] == pytest.approx(0.5)
    assert result.table() == [
        {
            "group": "seq_0",
            "people": 1,
            "missed": 0,
            "mpjpe": pytest.approx(5.0, abs=1e-4),
            "pa_mpjpe": pytest.approx(metrics["pa_mpjpe"]),
            "pve": pytest.approx(0.0, abs=1e-3),
        },
        {"group": "seq_1", "people": 0, "missed": 1},
    ]


def test_gt_center_reads_each_persons_own_cell(scene_with_miss_and_false_detection, predictor):
    scene = scene_with_miss_and_false_detection
    result = evaluate_batches(
        scene.net(), predictor, scene.batches(2), protocol_3dpw(matching="gt_center"), CPU
    )
    metrics = result.metrics()
    assert (metrics["num_evaluated"], metrics["num_missed"]) == (2, 0)
    rows = {row["group"]: row for row in result.table()}
    assert rows["seq_1"]["mpjpe"] == pytest.approx(0.0, abs=1e-4)  # B: exact up to a translation
    assert rows["seq_0"]["mpjpe"] > 50.0  # A read at (2, 2): the turned person
    # The detection counts do not depend on the matching rule.
    assert metrics["det_recall"] == pytest.approx(0.5) and metrics["det_precision"] == pytest.approx(0.5)


def test_precision_only_counts_fully_labelled_images(scene_with_miss_and_false_detection, predictor):
    scene = scene_with_miss_and_false_detection
    scene.labelled = [False, True]  # image 0's false detection may be an unlabelled person (3DPW)
    metrics = evaluate_batches(scene.net(), predictor, scene.batches(2), protocol_3dpw(), CPU).metrics()
    assert math.isnan(metrics["det_precision"])  # image 1 has no detection at all
    assert metrics["det_recall"] == pytest.approx(0.5)


def test_missing_gt_joints_are_left_out(predictor):
    scene = Scene(1)
    upright = person_params()
    gt = lsp_gt_from_prediction(predicted(predictor, upright))
    gt[JOINT54["Head_top"]] += (0.07, 0.0, 0.0)
    gt[JOINT54["L_Ankle"]] = -2.0  # not annotated
    scene.detect(0, (4, 4))
    scene.set_params(0, (4, 4), upright)
    scene.add_person(0, (4, 4), gt)
    metrics = evaluate_batches(scene.net(), predictor, scene.batches(1), protocol_3dpw(), CPU).metrics()
    assert metrics["mpjpe"] == pytest.approx(70.0 / 13, abs=1e-4)
    assert "pve" not in metrics  # no GT parameters: PVE is not scored


def test_cmu_protocol_aligns_on_the_pelvis_in_romps_h36m_order(predictor):
    """GT = prediction + 1 m, the pelvis moved 3 cm more: aligned on the pelvis, 16 joints err by 30 mm."""
    scene = Scene(1)
    upright = person_params(body_pose_scale=0.3, seed=3)
    pred = predicted(predictor, upright)["joints_h36m17"]
    gt = np.full((54, 3), -2.0)
    gt[[JOINT54[name] for name in H36M_17]] = pred + 1.0
    gt[JOINT54["Pelvis"]] += (0.0, 0.03, 0.0)
    scene.detect(0, (4, 4))
    scene.set_params(0, (4, 4), upright)
    scene.add_person(0, (4, 4), gt)
    scene.paths[0] = "/data/cmu/images/160422_mafia2-00_16_00000001.jpg"
    protocol = Protocol(
        name="cmup",
        joints="h36m17",
        pred_joints="h36m17",
        metrics=("mpjpe",),
        group_by="sequence",
        group_pattern="(haggling|mafia|ultimatum|pizza)",
        report_group_mean=True,
    )
    result = evaluate_batches(scene.net(), predictor, scene.batches(1), protocol, CPU)
    assert result.metrics()["mpjpe"] == pytest.approx(16 * 30.0 / 17, abs=1e-3)
    assert [row["group"] for row in result.table()] == ["mafia"]


def test_group_mean_is_the_mean_of_sequence_means(predictor):
    """Group 'haggling': people with 10 and 20 mm, group 'pizza': 40 mm -> per person 23.3, of groups 27.5."""
    scene = Scene(3)
    upright = person_params()
    base = predicted(predictor, upright)["joints_h36m17"]
    for image, (group, error_m) in enumerate((("haggling", 0.17), ("haggling", 0.34), ("pizza", 0.68))):
        gt = np.full((54, 3), -2.0)
        gt[[JOINT54[name] for name in H36M_17]] = base
        gt[JOINT54["Head"]] += (error_m, 0.0, 0.0)  # one of 17 joints: error_m / 17 per person
        scene.detect(image, (4, 4))
        scene.set_params(image, (4, 4), upright)
        scene.add_person(image, (4, 4), gt)
        scene.paths[image] = f"/cmu/images/160226_{group}1-00_16_{image:08d}.jpg"
    protocol = Protocol(
        joints="h36m17",
        metrics=("mpjpe",),
        group_by="sequence",
        group_pattern="(haggling|mafia|ultimatum|pizza)",
        report_group_mean=True,
    )
    metrics = evaluate_batches(scene.net(), predictor, scene.batches(3), protocol, CPU).metrics()
    assert metrics["mpjpe"] == pytest.approx(70.0 / 3, abs=1e-3)
    assert metrics["mpjpe_mean_of_groups"] == pytest.approx(27.5, abs=1e-3)


def test_pck_counts_missed_people_as_zero_in_the_all_variant(predictor):
    """Image 0: a perfect person (PCK 1); image 1: a person nobody detected -> matched-only PCK 1, all 0.5."""
    scene = Scene(2)
    upright = person_params()
    joints54 = predicted(predictor, upright)["joints54"]
    gt = np.full((54, 3), -2.0)
    rows = [JOINT54[name] for name in MUPOTS_17]
    gt[rows] = joints54[rows]
    scene.detect(0, (4, 4))
    scene.set_params(0, (4, 4), upright)
    scene.add_person(0, (4, 4), gt)
    scene.add_person(1, (2, 2), gt)
    protocol = Protocol(joints="mupots17", pred_joints="joints54", metrics=("pck3d", "auc"))
    metrics = evaluate_batches(scene.net(), predictor, scene.batches(2), protocol, CPU).metrics()
    assert metrics["pck3d_150mm"] == pytest.approx(1.0)
    assert metrics["pck3d_150mm_all"] == pytest.approx(0.5)
    assert metrics["auc"] == pytest.approx(30 / 31)  # every threshold but 0 mm
    assert metrics["auc_all"] == pytest.approx(15 / 31)


def test_metrics_do_not_depend_on_the_batch_size(predictor):
    scene = Scene(9)
    rng = np.random.default_rng(0)
    for image in range(9):
        for slot in range(1 + image % 3):
            cell = (1 + 3 * slot, 1 + 2 * (image % 3))
            params = person_params(
                global_orient=tuple(rng.uniform(-0.5, 0.5, 3)),
                body_pose_scale=0.4,
                betas=float(rng.uniform(-1, 1)),
                seed=image * 10 + slot,
            )
            pred = predicted(predictor, params)
            gt = lsp_gt_from_prediction(pred)
            gt[list(LSP14_FROM_54)] += rng.normal(0, 0.03, (14, 3))
            if image == 4:
                scene.add_person(image, cell, gt, smpl76(params))  # not detected: missed
                continue
            scene.detect(image, cell, score=0.5 + 0.05 * slot)
            scene.set_params(image, cell, params)
            scene.add_person(image, cell, gt, smpl76(params))
    net = scene.net()
    one = evaluate_batches(net, predictor, scene.batches(1), protocol_3dpw(), CPU)
    seven = evaluate_batches(net, predictor, scene.batches(7), protocol_3dpw(), CPU)
    assert one.metrics()["num_evaluated"] == 16 and one.metrics()["num_missed"] == 2
    # The sums are exact (MetricAccumulator); what remains is float32 rounding in the body model, whose matrix
    # products round differently for 1 and 7 people (< 1e-4 mm).
    assert one.metrics() == pytest.approx(seven.metrics(), rel=0, abs=1e-4, nan_ok=True)
    assert len(one.table()) == len(seven.table()) == 2
    for row_one, row_seven in zip(one.table(), seven.table()):
        assert row_one["group"] == row_seven["group"]
        numbers = {key: value for key, value in row_one.items() if key != "group"}
        assert numbers == pytest.approx({key: row_seven[key] for key in numbers}, rel=0, abs=1e-4)


def test_keypoint_protocol_is_refused(predictor):
    scene = Scene(1)
    with pytest.raises(ValueError, match="evaluate_keypoint_ap"):
        evaluate_batches(scene.net(), predictor, scene.batches(1), Protocol(kind="keypoint_ap"), CPU)
