"""CrowdPose keypoint AP: OKS and AP against hand-computed cases, and predictions mapped back to the image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.data.loader import CollateWithSkips, MixtureDataset
from romp_hydra.data.pipeline import SamplePipeline
from romp_hydra.data.sources.crowdpose import CrowdPose
from romp_hydra.evaluation.crowdpose import (
    CROWDPOSE_FROM_54,
    ImageDetections,
    ImageGT,
    KeypointAPEvaluator,
    accumulate,
    evaluate_keypoint_ap,
    match_image,
    oks,
)
from romp_hydra.evaluation.protocols import Protocol
from tests.conftest import CONF_DIR
from tests.data.sources.fixtures_2d import write_crowdpose_fixture
from tests.evaluation.conftest import MapNet

# 14 distinct joints of a person, pixels.
JOINTS = np.stack([np.arange(14) * 3.0 + 10.0, np.arange(14) * 2.0 + 40.0], axis=1)
BOX = [0.0, 0.0, 10.0, 20.0]  # OKS scale: 0.53 * 10 * 20 = 106 px^2


def gt(
    keypoints: np.ndarray,
    visible: np.ndarray | None = None,
    box=BOX,
    iscrowd: int = 0,
    crowd_index: float = 0.5,
) -> ImageGT:
    visible = np.ones(14) if visible is None else visible
    with_v = np.concatenate([keypoints, 2.0 * visible[:, None]], axis=1)
    return ImageGT(with_v[None], np.array([box]), np.array([iscrowd]), crowd_index)


def test_oks_of_one_displaced_joint():
    detection = JOINTS.copy()
    detection[0, 0] += 3.0  # left shoulder, sigma 0.079
    exponent = 3.0**2 / (2 * 0.079) ** 2 / 106.0 / 2
    assert exponent == pytest.approx(1.70056, abs=1e-5)
    assert oks(detection[None], gt(JOINTS))[0, 0] == pytest.approx((13 + math.exp(-exponent)) / 14, rel=1e-9)
    assert oks(JOINTS[None], gt(JOINTS))[0, 0] == pytest.approx(1.0)


def test_oks_averages_over_the_labelled_joints_only():
    visible = np.zeros(14)
    visible[[0, 6]] = 1  # left shoulder and left hip (sigma 0.107)
    detection = JOINTS.copy()
    detection[6, 1] -= 4.0
    detection[3] += 50.0  # an unlabelled joint: does not count
    expected = (1 + math.exp(-16.0 / (2 * 0.107) ** 2 / 106.0 / 2)) / 2
    assert expected == pytest.approx(0.59622, abs=1e-5)
    assert oks(detection[None], gt(JOINTS, visible))[0, 0] == pytest.approx(expected, rel=1e-9)


def test_oks_of_a_gt_without_labelled_joints_measures_the_distance_outside_the_tripled_box():
    target = gt(JOINTS, np.zeros(14), box=[100.0, 100.0, 10.0, 20.0])
    inside = np.tile([95.0, 130.0], (14, 1))  # within x in [90, 120], y in [80, 140]
    outside = inside + [30.0, 0.0]  # x = 125: 5 px right of the region
    assert oks(inside[None], target)[0, 0] == pytest.approx(1.0)
    sigmas = (
        np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]) / 10
    )
    expected = np.mean(np.exp(-25.0 / (2 * sigmas) ** 2 / 106.0 / 2))
    assert oks(outside[None], target)[0, 0] == pytest.approx(expected, rel=1e-9)


def one_joint_gt(x: float, y: float) -> ImageGT:
    keypoints = np.zeros((14, 2))
    keypoints[0] = (x, y)
    visible = np.zeros(14)
    visible[0] = 1
    return gt(keypoints, visible)


def test_ap_of_a_hand_scored_set():
    """Image A: its person found exactly (score .9) and a false detection (.8); image B: its person found with
    OKS 0.68 (score .7), i.e. at the thresholds .50-.65 only.

    Where B matches: TP, FP, TP -> precision [1, 1/2, 2/3] -> envelope [1, 2/3, 2/3]; recall [.5, .5, 1]: the
    51 recall points <= .5 read 1, the 50 above read 2/3 -> 0.83498. Elsewhere: the 51 points <= .5 read 1,
    the others 0 -> 0.50495. AP = (4 x 0.83498 + 6 x 0.50495) / 10.
    """
    image_a = ImageDetections(np.stack([JOINTS, JOINTS + 500.0]), np.array([0.9, 0.8]))
    gt_b = one_joint_gt(50.0, 60.0)
    shifted = np.zeros((14, 2))
    shifted[0] = (51.43, 60.0)  # exp(-1.43^2 / (2 * 0.079)^2 / 106 / 2) = 0.6795
    assert oks(shifted[None], gt_b)[0, 0] == pytest.approx(0.6795, abs=1e-4)
    image_b = ImageDetections(shifted[None], np.array([0.7]))
    result = accumulate([match_image(image_a, gt(JOINTS)), match_image(image_b, gt_b)])
    assert result["AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    assert result["AP75"] == pytest.approx(51 / 101, abs=1e-12)
    assert result["AP"] == pytest.approx((4 * (51 + 100 / 3) + 6 * 51) / 1010, abs=1e-12)
    assert result["AR"] == pytest.approx(0.7)  # recall 1 at 4 thresholds, 0.5 at 6


def test_a_detection_on_an_ignored_gt_is_neither_true_nor_false():
    region = gt(JOINTS + 300.0, np.zeros(14), box=[300.0, 300.0, 40.0, 80.0])  # no labelled joint: ignored
    person = gt(JOINTS)
    both = ImageGT(
        np.concatenate([person.keypoints, region.keypoints]),
        np.array([BOX, region.boxes[0]]),
        np.array([0, 0]),
    )
    detections = ImageDetections(np.stack([np.full((14, 2), 310.0), JOINTS]), np.array([0.95, 0.9]))
    matches = match_image(detections, both)
    assert matches.num_gt == 1 and matches.ignored[:, 0].all() and matches.matched[:, 1].all()
    assert accumulate([matches])["AP"] == pytest.approx(1.0)
    crowd = ImageGT(both.keypoints, both.boxes, np.array([0, 1]))  # the same region marked iscrowd
    assert accumulate([match_image(detections, crowd)])["AP"] == pytest.approx(1.0)


def test_only_the_best_scored_detections_per_image_count():
    far = np.stack([JOINTS + 1000.0] * 20)
    detections = ImageDetections(
        np.concatenate([far, JOINTS[None]]), np.concatenate([np.full(20, 0.9), [0.1]])
    )
    assert accumulate([match_image(detections, gt(JOINTS), max_detections=20)])["AP"] == 0.0
    # With 21 kept, the person is found last: precision 1/21 at every recall point.
    assert accumulate([match_image(detections, gt(JOINTS), max_detections=21)])["AP"] == pytest.approx(1 / 21)


def test_ap_is_nan_without_gt_people():
    empty = ImageGT(np.zeros((0, 14, 3)), np.zeros((0, 4)), np.zeros(0, dtype=int))
    assert math.isnan(accumulate([match_image(ImageDetections(JOINTS[None], np.ones(1)), empty)])["AP"])


class TablePredictor(nn.Module):
    """Stands in for the Predictor: the projected joints of each detection come from a table (image, cell)."""

    def __init__(self, table: dict[tuple[int, int, int], np.ndarray]):
        super().__init__()
        self.table = table

    def forward(self, params: torch.Tensor, selection, vertices: bool = True) -> dict:
        keys = zip(
            selection.batch_idx.tolist(),
            selection.center_yx[:, 0].tolist(),
            selection.center_yx[:, 1].tolist(),
        )
        pj2d = [torch.as_tensor(self.table[key], dtype=torch.float32) for key in keys]
        return {
            "batch_idx": selection.batch_idx,
            "score": selection.score,
            "pj2d": torch.stack(pj2d) if pj2d else torch.zeros(0, 54, 2),
        }


def test_detections_are_mapped_back_to_the_original_image_and_scored(tmp_path):
    """Every fixture person detected with its exact joints (through the letterbox and back), plus one false
    detection that outranks them: precision 1/2, 2/3, ..., 5/6 at recall 0.2 ... 1 -> AP = 5/6."""
    fixture = write_crowdpose_fixture(tmp_path, split="val")
    source = CrowdPose(fixture.root, "val", filter_images=False)
    data_cfg = OmegaConf.load(CONF_DIR / "data" / "default.yaml")
    data_cfg.input_size, data_cfg.centermap_size = 64, 8
    dataset = MixtureDataset([source], SamplePipeline(data_cfg, train=False), replace_bad=False)
    batch = CollateWithSkips()([dataset[(0, index, 0)] for index in range(len(source))])
    evaluator = KeypointAPEvaluator.from_json(fixture.root / "json" / "crowdpose_val.json")
    assert sorted(evaluator.gt) == ["100000.jpg", "100001.jpg", "100002.jpg"]

    center_maps = torch.zeros(len(source), 1, 8, 8)
    table = {}
    for image, path in enumerate(batch["imgpath"]):
        target = evaluator.gt[path.rsplit("/", 1)[-1]]
        affine = batch["affine"][image].double().numpy()
        for person, keypoints in enumerate(target.keypoints):
            pixels_in = keypoints[:, :2] @ affine[:, :2].T + affine[:, 2]
            pj2d = np.full((54, 2), 0.5)
            pj2d[list(CROWDPOSE_FROM_54)] = pixels_in * 2.0 / 64 - 1.0
            cell = (1 + 3 * (person % 3), 1 + 3 * (person // 3))
            center_maps[image, 0, cell[0], cell[1]] = 0.9 - 0.01 * person
            table[(image, *cell)] = pj2d
    false_cell = (7, 7)
    center_maps[1, 0, false_cell[0], false_cell[1]] = 0.95
    table[(1, *false_cell)] = np.full((54, 2), -0.9)
    net = MapNet(center_maps, torch.zeros(len(source), 145, 8, 8))
    batch["image"][:, 0, 0, 0] = torch.arange(len(source), dtype=torch.uint8)

    protocol = Protocol(name="crowdpose_ap", kind="keypoint_ap")
    result = evaluate_keypoint_ap(
        net, TablePredictor(table), [batch], protocol, evaluator, torch.device("cpu")
    )
    assert result["num_gt"] == 5 and result["num_detections"] == 6
    assert result["AP"] == pytest.approx(5 / 6, abs=1e-9)
    assert result["AP50"] == pytest.approx(5 / 6, abs=1e-9) and result["AR"] == pytest.approx(1.0)
    assert result["AP_medium"] == pytest.approx(5 / 6, abs=1e-9)  # the fixture's crowd index is 0.4
    assert math.isnan(result["AP_easy"]) and math.isnan(result["AP_hard"])
    assert JOINT54["Head_top"] == CROWDPOSE_FROM_54[12] and JOINT54["Neck_LSP"] == CROWDPOSE_FROM_54[13]
