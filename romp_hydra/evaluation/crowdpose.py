"""CrowdPose keypoint AP: OKS-based, COCO-style average precision, without pycocotools.

This follows CrowdPose's own `crowdposetools.cocoeval` (a fork of pycocotools) for ``iouType='keypoints'``:

* OKS between a detection and a GT person: ``mean over the GT's labelled joints (v > 0) of exp(-d^2 / (2 s
  k^2))`` with ``k = 2 * sigma`` (CrowdPose's 14 sigmas below) and the scale ``s = 0.53 * bbox_w * bbox_h``
  (CrowdPose's GT json has no segmentation area). A GT without labelled joints measures how far the
  detection's joints lie outside its box doubled around itself.
* Per image: detections sorted by score (stable), the best ``max_detections`` (20) kept; at each OKS threshold
  (.50:.05:.95) every detection in turn takes the unmatched GT with the highest OKS >= threshold (a crowd GT
  may be taken many times); GT marked ``iscrowd`` or with no labelled joint is "ignore": a detection matched
  to it counts neither as true nor as false positive, and it is not a GT to find.
* Over the data set: all detections sorted by score, precision made monotone, sampled at 101 recall points;
  AP = mean over thresholds and recall points; AP50 / AP75 at one threshold; AR = mean final recall.
* AP easy / medium / hard: the same over the images whose ``crowdIndex`` is < 0.2 / < 0.8 / >= 0.8.

Predictions come from the model in parsing mode (every centre-map peak is a person; `evaluate_keypoint_ap`),
with the projected 2D joints mapped back to original-image pixels. Difference to ROMP: ROMP scored every
person with 1 (`keypoint_score: constant` here), which makes the ranking - and so the AP - depend on the image
order; the default here ranks by the centre-map value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from romp_hydra.body.joint_sets import CROWDPOSE_14, JOINT54
from romp_hydra.evaluation.protocols import Protocol
from romp_hydra.models.model import PeoplePicker, forward_step
from romp_hydra.models.predictor import Predictor

log = logging.getLogger(__name__)

# crowdposetools/cocoeval.py: left/right shoulder, elbow, wrist, hip, knee, ankle, head top, neck.
CROWDPOSE_SIGMAS = (
    np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]) / 10
)
# CrowdPose has no segmentation area: its evaluation scales OKS with 0.53 x the box area.
BOX_AREA_FACTOR = 0.53
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 20
# crowdIndex bounds of the easy / medium / hard subsets (CrowdPose's summarize: first=0.2, second=0.8).
CROWD_INDEX_BOUNDS = (0.2, 0.8)
# Our 54-joint rows in CrowdPose order (ROMP: Head_top 48, Neck_LSP 47).
CROWDPOSE_FROM_54: tuple[int, ...] = tuple(JOINT54[name] for name in CROWDPOSE_14)


@dataclass
class ImageGT:
    """One image's GT people: keypoints (G, K, 3) pixels + visibility, boxes (G, 4) xywh, crowd flags."""

    keypoints: np.ndarray
    boxes: np.ndarray
    iscrowd: np.ndarray
    crowd_index: float = 0.0

    @property
    def ignore(self) -> np.ndarray:
        """(G,) crowd regions and people without a labelled joint are not people to find."""
        return self.iscrowd.astype(bool) | ((self.keypoints[..., 2] > 0).sum(axis=1) == 0)


@dataclass
class ImageDetections:
    """Detected people of one image: keypoints (D, K, 2) pixels and scores (D,)."""

    keypoints: np.ndarray
    scores: np.ndarray


def empty_detections(num_joints: int = len(CROWDPOSE_14)) -> ImageDetections:
    return ImageDetections(np.zeros((0, num_joints, 2)), np.zeros(0))


def oks(detections: np.ndarray, gt: ImageGT, sigmas: np.ndarray = CROWDPOSE_SIGMAS) -> np.ndarray:
    """Object keypoint similarity (D, G) between detections (D, K, 2) and the GT people of one image.

    Only the GT's labelled joints (v > 0) count. A GT without labelled joints (an ignore region) scores the
    distance of each detected joint to the GT box enlarged to three times its size around it.
    """
    detections = np.asarray(detections, dtype=np.float64)
    if detections.size == 0:
        detections = detections.reshape(0, len(sigmas), 2)
    num_det, num_gt = detections.shape[0], gt.keypoints.shape[0]
    if detections.shape[1:] != (len(sigmas), 2) or gt.keypoints.shape[1:] != (len(sigmas), 3):
        raise ValueError(
            f"oks: detections {detections.shape} and GT {gt.keypoints.shape} must have {len(sigmas)} joints"
        )
    result = np.zeros((num_det, num_gt))
    variances = (2.0 * sigmas) ** 2
    for j in range(num_gt):
        visible = gt.keypoints[j, :, 2] > 0
        x, y, w, h = (float(v) for v in gt.boxes[j])
        scale = w * h * BOX_AREA_FACTOR + np.spacing(1)
        if visible.any():
            dx = detections[..., 0] - gt.keypoints[j, :, 0]
            dy = detections[..., 1] - gt.keypoints[j, :, 1]
        else:
            x0, x1, y0, y1 = x - w, x + 2 * w, y - h, y + 2 * h
            dx = np.maximum(0.0, x0 - detections[..., 0]) + np.maximum(0.0, detections[..., 0] - x1)
            dy = np.maximum(0.0, y0 - detections[..., 1]) + np.maximum(0.0, detections[..., 1] - y1)
        error = (dx**2 + dy**2) / variances / scale / 2.0
        if visible.any():
            error = error[:, visible]
        result[:, j] = np.exp(-error).mean(axis=1)
    return result


@dataclass
class ImageMatches:
    """One image at every OKS threshold: which kept detections are true positives and which are ignored."""

    scores: np.ndarray  # (D,) of the kept detections, best first
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    num_gt: int  # GT people to find (not ignored)


def match_image(
    detections: ImageDetections,
    gt: ImageGT,
    max_detections: int = MAX_DETECTIONS,
    thresholds: np.ndarray = OKS_THRESHOLDS,
    sigmas: np.ndarray = CROWDPOSE_SIGMAS,
) -> ImageMatches:
    """Greedy matching of one image, best-scored detection first (pycocotools' evaluateImg)."""
    order = np.argsort(-np.asarray(detections.scores, dtype=np.float64), kind="mergesort")[:max_detections]
    keypoints, scores = detections.keypoints[order], np.asarray(detections.scores, dtype=np.float64)[order]
    ignore = gt.ignore
    gt_order = np.argsort(ignore, kind="mergesort")  # GT to find first, ignore regions last
    ignore, crowd = ignore[gt_order], gt.iscrowd.astype(bool)[gt_order]
    similarity = oks(keypoints, gt, sigmas)[:, gt_order] if len(gt_order) else np.zeros((len(order), 0))
    matched = np.zeros((len(thresholds), len(order)), dtype=bool)
    ignored = np.zeros((len(thresholds), len(order)), dtype=bool)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gt_order), dtype=bool)
        for d in range(len(order)):
            best, best_gt = min(threshold, 1 - 1e-10), -1
            for g in range(len(gt_order)):
                if taken[g] and not crowd[g]:
                    continue
                # Once matched to a GT to find, an ignore region (sorted last) cannot take the detection.
                if best_gt > -1 and not ignore[best_gt] and ignore[g]:
                    break
                if similarity[d, g] < best:
                    continue
                best, best_gt = similarity[d, g], g
            if best_gt == -1:
                continue
            taken[best_gt] = True
            matched[t, d] = True
            ignored[t, d] = ignore[best_gt]
    return ImageMatches(scores=scores, matched=matched, ignored=ignored, num_gt=int((~ignore).sum()))


def accumulate(
    images: Sequence[ImageMatches],
    thresholds: np.ndarray = OKS_THRESHOLDS,
    recall_points: np.ndarray = RECALL_POINTS,
) -> dict[str, float]:
    """AP, AP50, AP75 and AR over images (pycocotools' accumulate + summarize); NaN without GT people."""
    num_gt = sum(image.num_gt for image in images)
    nan = {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan"), "AR": float("nan")}
    if num_gt == 0:
        return nan
    scores = np.concatenate([image.scores for image in images]) if images else np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([image.matched for image in images], axis=1)[:, order]
    ignored = np.concatenate([image.ignored for image in images], axis=1)[:, order]
    true_pos = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    false_pos = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    precision = np.zeros((len(thresholds), len(recall_points)))
    recall = np.zeros(len(thresholds))
    for t in range(len(thresholds)):
        tp, fp = true_pos[t], false_pos[t]
        if len(tp) == 0:
            continue
        rc = tp / num_gt
        pr = tp / (tp + fp + np.spacing(1))
        recall[t] = rc[-1]
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope: best precision at any higher recall
        index = np.searchsorted(rc, recall_points, side="left")
        inside = index < len(pr)
        precision[t, inside] = pr[index[inside]]
    at = {threshold: int(np.argmin(np.abs(thresholds - threshold))) for threshold in (0.5, 0.75)}
    return {
        "AP": float(precision.mean()),
        "AP50": float(precision[at[0.5]].mean()),
        "AP75": float(precision[at[0.75]].mean()),
        "AR": float(recall.mean()),
    }


@dataclass
class KeypointAPEvaluator:
    """Collects detections per image and scores them against CrowdPose GT.

    Args:
        gt: GT per image key (the image's file name, e.g. ``100000.jpg``).
        max_detections: detections per image that are scored.
    """

    gt: dict[str, ImageGT]
    max_detections: int = MAX_DETECTIONS
    detections: dict[str, ImageDetections] = field(default_factory=dict)
    unknown_images: int = 0

    @classmethod
    def from_json(cls, path: str | Path, max_detections: int = MAX_DETECTIONS) -> KeypointAPEvaluator:
        """GT from a CrowdPose (COCO-format) json: ``images`` {id, file_name, crowdIndex}, ``annotations``
        {image_id, keypoints [x, y, v] * 14, bbox [x, y, w, h], iscrowd}."""
        data = json.loads(Path(path).read_text())
        return cls(gt_from_coco(data), max_detections=max_detections)

    def add(self, image: str, keypoints: np.ndarray, scores: np.ndarray) -> None:
        """Detections (D, 14, 2) pixels with scores (D,) of image `image` (its file name); several calls for
        the same image add up."""
        key = Path(image).name
        if key not in self.gt:
            self.unknown_images += 1
            return
        keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(CROWDPOSE_14), 2)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if key in self.detections:
            previous = self.detections[key]
            keypoints = np.concatenate([previous.keypoints, keypoints])
            scores = np.concatenate([previous.scores, scores])
        self.detections[key] = ImageDetections(keypoints, scores)

    def compute(self) -> dict[str, float]:
        """AP, AP50, AP75, AR over every GT image (images without detections count their people as missed),
        AP_easy / AP_medium / AP_hard by crowd index, and the counts."""
        matches = {
            key: match_image(self.detections.get(key, empty_detections()), gt, self.max_detections)
            for key, gt in self.gt.items()
        }
        result = accumulate(list(matches.values()))
        low, high = CROWD_INDEX_BOUNDS
        subsets = {
            "easy": lambda c: c < low,
            "medium": lambda c: low <= c < high,
            "hard": lambda c: c >= high,
        }
        for name, inside in subsets.items():
            chosen = [matches[key] for key, gt in self.gt.items() if inside(gt.crowd_index)]
            result[f"AP_{name}"] = accumulate(chosen)["AP"]
        result["num_images"] = float(len(self.gt))
        result["num_images_with_detections"] = float(sum(len(d.scores) > 0 for d in self.detections.values()))
        result["num_gt"] = float(sum(m.num_gt for m in matches.values()))
        result["num_detections"] = float(sum(len(m.scores) for m in matches.values()))
        return result


def gt_from_coco(data: Mapping[str, Any]) -> dict[str, ImageGT]:
    """GT per image file name from a loaded CrowdPose json."""
    images = {int(image["id"]): image for image in data.get("images", [])}
    people: dict[int, list[Mapping[str, Any]]] = {image_id: [] for image_id in images}
    for annotation in data.get("annotations", []):
        people.setdefault(int(annotation["image_id"]), []).append(annotation)
    gt = {}
    for image_id, image in images.items():
        annotations = people[image_id]
        keypoints = np.array(
            [np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in annotations]
        )
        gt[Path(str(image["file_name"])).name] = ImageGT(
            keypoints=keypoints.reshape(len(annotations), len(CROWDPOSE_14), 3),
            boxes=np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4),
            iscrowd=np.array([int(a.get("iscrowd", 0)) for a in annotations], dtype=np.int64),
            crowd_index=float(image.get("crowdIndex", 0.0)),
        )
    return gt


def normalized_to_original(coords: torch.Tensor, affine: torch.Tensor, input_size: int) -> torch.Tensor:
    """Normalised input coordinates (N, J, 2) -> original-image pixels, with each person's (N, 2, 3) affine
    (original pixel -> input pixel, as the data pipeline builds it)."""
    input_pixels = (coords.double() + 1.0) * (input_size / 2.0)
    linear, shift = affine[:, :, :2].double(), affine[:, :, 2].double()
    return torch.linalg.solve(linear[:, None], (input_pixels - shift[:, None])[..., None])[..., 0]


@torch.no_grad()
def evaluate_keypoint_ap(
    net: nn.Module,
    predictor: Predictor,
    batches: Iterable[dict],
    protocol: Protocol,
    evaluator: KeypointAPEvaluator,
    device: torch.device,
    precision: str = "fp32",
    max_batches: int | None = None,
) -> dict[str, float]:
    """Every detected centre is a person: project its joints, map them to original pixels, score by OKS AP.

    Args:
        net, predictor: the model (net in eval mode).
        batches: collated evaluation batches (each with ``image``, ``affine``, ``imgpath``).
        protocol: a ``kind="keypoint_ap"`` protocol (threshold, top_k, keypoint_score, max_detections).
        evaluator: holds the GT; receives the detections.
        max_batches: stop after this many batches (None: all).

    Returns:
        `KeypointAPEvaluator.compute()` (AP, AP50, AP75, AR, AP_easy/medium/hard, counts).
    """
    if protocol.kind != "keypoint_ap":
        raise ValueError(
            f"evaluate_keypoint_ap needs a keypoint_ap protocol, got '{protocol.name}' (kind={protocol.kind})"
        )
    # Every detected peak is a person (parsing mode; the matching mode is not used).
    picker = PeoplePicker(matching="nearest_center", center_threshold=protocol.center_threshold,
                          max_detections=protocol.top_k)
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        people = forward_step(net, predictor, batch["image"], device, picker, precision=precision)
        images = people["batch_idx"].cpu()
        affine = torch.as_tensor(batch["affine"])[images]
        pixels = normalized_to_original(
            people["pj2d"][:, list(CROWDPOSE_FROM_54)].cpu(), affine, int(batch["image"].shape[-1])
        ).numpy()
        scores = people["score"].cpu().double().numpy()
        if protocol.keypoint_score == "constant":
            scores = np.ones_like(scores)
        for image in range(int(batch["image"].shape[0])):
            mine = (images == image).numpy()
            evaluator.add(str(batch["imgpath"][image]), pixels[mine], scores[mine])
    if evaluator.unknown_images:
        log.warning(
            "%d evaluated images are not in the GT json; their detections were not scored",
            evaluator.unknown_images,
        )
    return evaluator.compute()
