"""Run a model over evaluation batches and compute a protocol's metrics (also for validation in training).

    result = evaluate_batches(net, predictor, loader, protocol, device)
    result.metrics()   # {"mpjpe": ..., "pa_mpjpe": ..., "pve": ..., "det_recall": ..., "num_missed": ...}
    result.table()     # one row per group (3DPW: per sequence)

Every number is a sum over people collected by `MetricAccumulator`, so it does not depend on the batch size.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from romp_hydra import batch as masks
from romp_hydra.evaluation.protocols import Protocol
from romp_hydra.metrics.detection import DetectionCounts, detection_counts
from romp_hydra.metrics.joints import MetricAccumulator, auc, mpjpe, pa_mpjpe, pck3d, pve
from romp_hydra.models.model import evaluate_people, run_network
from romp_hydra.models.parser import MatchResult
from romp_hydra.models.predictor import Predictor

log = logging.getLogger(__name__)

# The per-group table also counts these (people, not metric values).
COUNT_COLUMNS = ("people", "missed")


class EvaluationResult:
    """Per-person metric values (overall and per group), detection counts and people counted.

    Attributes:
        overall: accumulator over every scored person.
        groups: accumulator per group (dataset or sequence).
        detection: TP / GT / detections over all images (its recall is reported).
        detection_labelled: the same over images whose people are all labelled (its precision is reported:
            elsewhere, e.g. on 3DPW, correct detections of unlabelled people would count as false).
        num_images, num_gt, num_matched, num_missed: counts over all images.
        group_counts: per group, ``{"people": matched, "missed": missed}``.
    """

    def __init__(self, report_group_mean: bool = False) -> None:
        self.report_group_mean = report_group_mean
        self.overall = MetricAccumulator()
        self.groups: dict[str, MetricAccumulator] = defaultdict(MetricAccumulator)
        self.group_counts: dict[str, dict[str, int]] = defaultdict(lambda: {"people": 0, "missed": 0})
        self.detection = DetectionCounts()
        self.detection_labelled = DetectionCounts()
        self.num_images = 0
        self.num_gt = 0
        self.num_matched = 0
        self.num_missed = 0

    def add(self, group_names: list[str], values: dict[str, np.ndarray]) -> None:
        """Add per-person `values` (name -> [N]) of N people belonging to `group_names` [N]."""
        self.overall.update_many(values)
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(group_names):
            by_group[name].append(i)
        for name, index in by_group.items():
            self.groups[name].update_many({k: v[index] for k, v in values.items()})

    def count(self, group_names: list[str], column: str) -> None:
        for name in group_names:
            self.group_counts[name][column] += 1

    def group_means(self) -> dict[str, float]:
        """Every metric as the mean of its group means (groups where it is defined)."""
        per_group = [acc.compute() for acc in self.groups.values()]
        names = sorted({name for values in per_group for name in values})
        means = {}
        for name in names:
            values = [v[name] for v in per_group if name in v and not math.isnan(v[name])]
            means[name] = math.fsum(values) / len(values) if values else math.nan
        return means

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Overall metrics (mean over people), detection rates and counts, as floats."""
        out = {f"{prefix}{name}": value for name, value in self.overall.compute().items()}
        if self.report_group_mean:
            out.update(
                {f"{prefix}{name}_mean_of_groups": value for name, value in self.group_means().items()}
            )
        out.update(
            {
                f"{prefix}det_precision": self.detection_labelled.precision,
                f"{prefix}det_recall": self.detection.recall,
                f"{prefix}num_images": float(self.num_images),
                f"{prefix}num_gt": float(self.num_gt),
                f"{prefix}num_evaluated": float(self.num_matched),
                f"{prefix}num_missed": float(self.num_missed),
            }
        )
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per group, sorted by name: ``{"group", "people", "missed", <metric>: mean, ...}``."""
        rows = []
        for name in sorted(set(self.groups) | set(self.group_counts)):
            values = self.groups[name].compute() if name in self.groups else {}
            rows.append({"group": name, **self.group_counts[name], **values})
        return rows

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (NaN becomes None)."""
        return {
            "metrics": _json_floats(self.metrics()),
            "groups": [_json_floats(row) for row in self.table()],
            "detection": {
                "all_images": _json_floats(self.detection.as_dict()),
                "fully_labelled_images": _json_floats(self.detection_labelled.as_dict()),
            },
            "skipped": self.overall.counts(),
        }


def _json_floats(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def group_names(batch: dict, batch_idx: np.ndarray, protocol: Protocol) -> list[str]:
    """The group of each person: its dataset, or its sequence (image folder, or `protocol.group_pattern`)."""
    if protocol.group_by == "dataset":
        return [str(batch["dataset"][int(b)]) for b in batch_idx]
    names = []
    for b in batch_idx:
        path = str(batch["imgpath"][int(b)])
        if protocol.group_pattern:
            found = re.findall(protocol.group_pattern, path)
            # The last match: folders of the data root above the dataset must not decide the group.
            last = found[-1] if found else None
            names.append((last[0] if isinstance(last, tuple) else last) or "other")
        else:
            names.append(Path(path).parent.name)
    return names


def joint_metrics(protocol: Protocol, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-person joint metrics of the protocol on compared joints (metres in, mm out)."""
    root = list(protocol.comparison().root)
    values: dict[str, np.ndarray] = {}
    for metric in protocol.metrics:
        if metric == "mpjpe":
            values["mpjpe"] = mpjpe(pred, gt, align="root_idx", root=root)
        elif metric == "pa_mpjpe":
            values["pa_mpjpe"] = pa_mpjpe(pred, gt)
        elif metric == "pck3d":
            values[f"pck3d_{protocol.pck_threshold_mm:g}mm"] = pck3d(
                pred, gt, threshold=protocol.pck_threshold_mm, align="root_idx", root=root
            )
        elif metric == "auc":
            values["auc"] = auc(pred, gt, align="root_idx", root=root)
    return values


@torch.no_grad()
def evaluate_batches(
    net: nn.Module,
    predictor: Predictor,
    batches: Iterable[dict],
    protocol: Protocol,
    device: torch.device,
    precision: str = "fp32",
    max_batches: int | None = None,
    on_batch: Callable[[dict, dict, dict], None] | None = None,
) -> EvaluationResult:
    """Detect, match each GT person to a detection, regress its mesh and score it.

    Missed GT people (no detection in their image) are counted in `num_missed` and not scored, as in ROMP; the
    PCK/AUC protocols also report ``<metric>_all``, where every missed person counts as 0 (MuPoTS-3D's "all
    annotated people" number). Detection precision/recall use one-to-one assignment within
    `protocol.detection_radius_cells`.

    Args:
        net: maps images to ``center_map`` / ``params_maps`` (in eval mode).
        predictor: parameter vectors -> people (its body model also turns GT parameters into GT meshes for
            PVE).
        batches: collated evaluation batches (`data.loader.build_eval_loader`).
        protocol: a ``kind="mesh3d"`` protocol.
        device, precision: where and how the network runs.
        max_batches: stop after this many batches (None: all).
        on_batch: ``on_batch(batch, maps, people)`` after each batch with matched people (pictures).
    """
    if protocol.kind != "mesh3d":
        raise ValueError(
            f"evaluate_batches scores 3D people; protocol '{protocol.name}' is kind={protocol.kind} "
            "(use romp_hydra.evaluation.crowdpose.evaluate_keypoint_ap)"
        )
    result = EvaluationResult(report_group_mean=protocol.report_group_mean)
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        maps = run_network(net, batch["image"], device, precision)
        people, match, detections = evaluate_people(
            maps,
            predictor,
            batch["centers"],
            batch["person_mask"].bool(),
            matching=protocol.matching,
            center_threshold=protocol.center_threshold,
            top_k=protocol.top_k,
            one_to_one=protocol.one_to_one,
        )
        det_b, det_yx = detections.batch_idx.cpu(), detections.center_yx.cpu()
        add_detection_counts(result, batch, det_b, det_yx, maps["center_map"].shape[-1], protocol)
        result.num_images += int(batch["image"].shape[0])
        result.num_gt += match.num_gt
        result.num_missed += match.num_missed
        result.num_matched += match.num_matched
        add_missed_people(result, batch, match, protocol)
        if people is None:
            continue
        add_matched_people(result, batch, match, people, predictor, protocol)
        if on_batch is not None:
            on_batch(batch, maps, people)
    return result


def add_detection_counts(
    result: EvaluationResult,
    batch: dict,
    det_b: torch.Tensor,
    det_yx: torch.Tensor,
    size: int,
    protocol: Protocol,
) -> None:
    """Detection TP / GT / detections of a batch: over all images (for the recall), and over the images whose
    people are all labelled (for the precision: elsewhere a correct detection of an unlabelled person would
    count as false)."""
    person_mask = batch["person_mask"].bool()
    radius = protocol.detection_radius_cells
    result.detection = result.detection + detection_counts(
        batch["centers"], det_b, det_yx, size, radius, person_mask=person_mask
    )
    labelled = batch["all_persons_labelled"].bool().reshape(-1)
    if bool(labelled.any()):
        keep = labelled[det_b]
        result.detection_labelled = result.detection_labelled + detection_counts(
            batch["centers"],
            det_b[keep],
            det_yx[keep],
            size,
            radius,
            person_mask=person_mask & labelled[:, None],
        )


def add_missed_people(result: EvaluationResult, batch: dict, match: MatchResult, protocol: Protocol) -> None:
    """Count the missed people per group; for the PCK / AUC ``_all`` variants they score 0."""
    if match.num_missed == 0:
        return
    missed_b, missed_p = match.missed_batch_idx, match.missed_person_idx
    groups = group_names(batch, missed_b.numpy(), protocol)
    result.count(groups, "missed")
    pck_names = pck_metric_names(protocol)
    has_3d = batch["valid_masks"][missed_b, missed_p, masks.KP3D].bool().numpy()
    if pck_names and has_3d.any():
        zeros = np.where(has_3d, 0.0, np.nan)  # a missed person has no correct joint
        result.add(groups, {f"{name}_all": zeros for name in pck_names})


def add_matched_people(
    result: EvaluationResult,
    batch: dict,
    match: MatchResult,
    people: dict,
    predictor: Predictor,
    protocol: Protocol,
) -> None:
    """Score the matched people: joint metrics where they have 3D GT, PVE where they have GT parameters."""
    b, p = match.batch_idx, match.person_idx
    groups = group_names(batch, b.numpy(), protocol)
    result.count(groups, "people")
    valid = batch["valid_masks"][b, p].bool()
    values: dict[str, np.ndarray] = {}
    has_3d = valid[:, masks.KP3D].numpy()
    if has_3d.any():
        comparison = protocol.comparison()
        gt = batch["kp3d"][b, p][:, list(comparison.gt_index)]
        pred = people[comparison.pred_key][:, list(comparison.pred_index)]
        for name, per_person in joint_metrics(protocol, pred, gt).items():
            values[name] = np.where(has_3d, per_person, np.nan)
        for name in pck_metric_names(protocol):
            values[f"{name}_all"] = values[name]
    has_smpl = (valid[:, masks.GLOBAL_ORIENT] & valid[:, masks.BODY_POSE] & valid[:, masks.BETAS]).numpy()
    if "pve" in protocol.metrics and has_smpl.any():
        values["pve"] = np.where(has_smpl, mesh_errors(predictor, people, batch["params"][b, p]), np.nan)
    if values:
        result.add(groups, values)


def pck_metric_names(protocol: Protocol) -> list[str]:
    """The protocol's PCK / AUC metric names (they also get an ``_all`` variant counting missed people)."""
    return [name for name in protocol.metric_names() if name.startswith("pck3d") or name == "auc"]


def mesh_errors(predictor: Predictor, people: dict, gt_params: torch.Tensor) -> np.ndarray:
    """PVE (mm) between predicted meshes and the GT parameters' meshes, both centred on their hip midpoint.

    Rows whose GT parameters are missing (-10) give meaningless values; the caller masks them.
    """
    gt_params = gt_params.to(people["verts"].device)
    gt_body = predictor.body_model(
        global_orient=gt_params[:, :3], body_pose=gt_params[:, 3:66], betas=gt_params[:, 66:76]
    )
    gt_verts = gt_body.vertices - gt_body.joints54[:, [45, 46]].mean(dim=1, keepdim=True)
    pred_verts = people["verts"] - people["joints54"][:, [45, 46]].mean(dim=1, keepdim=True)
    return pve(pred_verts, gt_verts)


class ChainedLoaders:
    """Iterate several evaluation loaders (one per dataset) one after the other, as often as needed."""

    def __init__(self, loaders: list):
        self.loaders = loaders

    def __iter__(self):
        for loader in self.loaders:
            yield from loader

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)
