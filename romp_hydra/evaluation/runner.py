"""Run a model over an evaluation loader and compute the protocol's metrics (also used for validation)."""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn

from romp_hydra.body.joint_sets import LSP14_FROM_54
from romp_hydra.data import masks
from romp_hydra.evaluation.protocols import Protocol
from romp_hydra.metrics.detection import DetectionCounts, detection_counts
from romp_hydra.metrics.joints import MetricAccumulator, mpjpe, pa_mpjpe, pck3d, pve
from romp_hydra.metrics.matching import match_gt_to_predictions
from romp_hydra.models.parser import Selection, parse, sample_params
from romp_hydra.models.predictor import Predictor
from romp_hydra.training.forward import run_network

log = logging.getLogger(__name__)

# Hip indices used for alignment, per compared joint set.
HIPS = {"lsp14": (2, 3), "smpl54": (45, 46)}


def _select_joints(people: dict, kp3d_gt: torch.Tensor, protocol: Protocol) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and GT joints in the protocol's joint set."""
    if protocol.joints == "h36m17":
        return people["joints_h36m17"], kp3d_gt  # GT already in H36M-17 order (CMU Panoptic loader)
    pred = people["joints_h36m17"][:, :14] if protocol.pred_joints == "h36m17" else people["joints54"]
    if protocol.joints == "lsp14":
        if protocol.pred_joints == "joints54":
            pred = pred[:, list(LSP14_FROM_54)]
        return pred, kp3d_gt[:, list(LSP14_FROM_54)]
    if protocol.pred_joints == "h36m17":
        raise ValueError("protocol joints=smpl54 needs pred_joints=joints54 (the H36M regressor gives 17 joints)")
    return pred, kp3d_gt


def _group_names(batch: dict, batch_idx: np.ndarray, protocol: Protocol) -> list[str]:
    if protocol.group_by == "sequence":
        return [Path(batch["imgpath"][int(b)]).parent.name for b in batch_idx]
    return [batch["dataset"][int(b)] for b in batch_idx]


class EvaluationResult:
    """Per-person metric values grouped (by dataset or sequence), detection counts, and people counted."""

    def __init__(self) -> None:
        self.overall = MetricAccumulator()
        self.groups: dict[str, MetricAccumulator] = defaultdict(MetricAccumulator)
        self.detection = DetectionCounts()
        self.num_gt = 0
        self.num_matched = 0
        self.num_missed = 0
        self.num_images = 0

    def add(self, group_names: list[str], values: dict[str, np.ndarray]) -> None:
        self.overall.update_many(values)
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(group_names):
            by_group[name].append(i)
        for name, index in by_group.items():
            self.groups[name].update_many({k: v[index] for k, v in values.items()})

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}{name}": value for name, value in self.overall.compute().items()}
        out.update({f"{prefix}det_precision": self.detection.precision, f"{prefix}det_recall": self.detection.recall,
                    f"{prefix}num_gt": float(self.num_gt), f"{prefix}num_evaluated": float(self.num_matched),
                    f"{prefix}num_missed": float(self.num_missed)})
        return out

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for name in sorted(self.groups):
            counts = self.groups[name].counts()
            rows.append({"group": name, **self.groups[name].compute(),
                         "people": max((c["scored"] for c in counts.values()), default=0)})
        return rows


@torch.no_grad()
def evaluate_batches(net: nn.Module, predictor: Predictor, batches: Iterable[dict], protocol: Protocol,
                     device: torch.device, precision: str = "fp32", max_batches: Optional[int] = None,
                     on_batch: Optional[Callable[[dict, dict, dict], None]] = None) -> EvaluationResult:
    """Detect, match each GT person to a detection, regress its mesh and score it.

    Missed GT people (no detection in their image) are counted in `num_missed` and not scored, as in ROMP.
    Detection precision/recall use one-to-one assignment within `protocol.detection_radius_cells`.
    """
    result = EvaluationResult()
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        maps = run_network(net, batch["image"], device, precision)
        size = maps["center_map"].shape[-1]
        detections = parse(maps["center_map"], threshold=protocol.center_threshold, top_k=protocol.top_k)
        det_b, det_yx = detections.batch_idx.cpu(), detections.center_yx.cpu()
        person_mask = batch["person_mask"].bool()
        result.detection = result.detection + detection_counts(
            batch["centers"], det_b, det_yx, size, protocol.detection_radius_cells, person_mask=person_mask)
        match = match_gt_to_predictions(batch["centers"], det_b, det_yx, size, method=protocol.matching,
                                        one_to_one=protocol.one_to_one, person_mask=person_mask)
        result.num_images += int(batch["image"].shape[0])
        result.num_gt += match.num_gt
        result.num_missed += match.num_missed
        result.num_matched += match.num_matched
        if match.num_matched == 0:
            continue
        scores = maps["center_map"].flatten(1)[match.batch_idx.to(device),
                                               (match.sample_yx[:, 0] * size + match.sample_yx[:, 1]).to(device)]
        selection = Selection(batch_idx=match.batch_idx.to(device), person_idx=match.person_idx.to(device),
                              center_yx=match.sample_yx.to(device), score=scores)
        people = predictor(sample_params(maps["params_maps"], selection), selection)

        b, p = match.batch_idx, match.person_idx
        valid = batch["valid_masks"][b, p].bool()
        has_3d = valid[:, masks.KP3D]
        values: dict[str, np.ndarray] = {}
        if bool(has_3d.any()):
            gt3d = batch["kp3d"][b, p].to(device)
            pred, gt = _select_joints(people, gt3d, protocol)
            if protocol.joints == "h36m17":
                err = mpjpe(pred, gt, align="root_idx", root=0)
            else:
                err = mpjpe(pred, gt, align="root_idx", root=list(HIPS[protocol.joints]))
            values["mpjpe"] = np.where(has_3d.numpy(), err, np.nan)
            values["pa_mpjpe"] = np.where(has_3d.numpy(), pa_mpjpe(pred, gt), np.nan)
            values[f"pck3d_{protocol.pck_threshold_mm:g}mm"] = np.where(
                has_3d.numpy(), pck3d(pred, gt, threshold=protocol.pck_threshold_mm), np.nan)
        has_smpl = valid[:, masks.GLOBAL_ORIENT] & valid[:, masks.BODY_POSE] & valid[:, masks.BETAS]
        if protocol.compute_pve and bool(has_smpl.any()):
            gt_params = batch["params"][b, p].to(device)
            gt_body = predictor.body_model(global_orient=gt_params[:, :3], body_pose=gt_params[:, 3:66],
                                           betas=gt_params[:, 66:76])
            gt_verts = gt_body.vertices - gt_body.joints54[:, [45, 46]].mean(dim=1, keepdim=True)
            pred_verts = people["verts"] - people["joints54"][:, [45, 46]].mean(dim=1, keepdim=True)
            values["pve"] = np.where(has_smpl.cpu().numpy(), pve(pred_verts, gt_verts), np.nan)
        if values:
            result.add(_group_names(batch, b.numpy(), protocol), values)
        if on_batch is not None:
            on_batch(batch, maps, people)
    return result


class _ChainedLoaders:
    """Iterate several evaluation loaders (one per dataset) one after the other, as often as needed."""

    def __init__(self, loaders: list):
        self.loaders = loaders

    def __iter__(self):
        for loader in self.loaders:
            yield from loader


class Validator:
    """Validation during training: `validator(step) -> {"val/<metric>": value, ...}` on a held-out set."""

    def __init__(self, loader, net: nn.Module, predictor: Predictor, protocol: Protocol, device: torch.device,
                 precision: str = "fp32", max_batches: Optional[int] = None, pictures=None, num_pictures: int = 4):
        self.loader, self.net, self.predictor, self.protocol = loader, net, predictor, protocol
        self.device, self.precision, self.max_batches = device, precision, max_batches
        self.pictures, self.num_pictures = pictures, num_pictures

    @classmethod
    def from_config(cls, cfg, net: nn.Module, predictor: Predictor, device: torch.device, pictures=None) -> "Validator":
        from romp_hydra.data.loader import build_eval_loader

        members = cfg.val.dataset.members
        loader = _ChainedLoaders([build_eval_loader(cfg, members[key], key=key) for key in members])
        protocol = Protocol.from_mapping(cfg.val.get("protocol"))
        return cls(loader, net, predictor, protocol, device, precision=cfg.trainer.precision,
                   max_batches=cfg.val.get("max_batches"), pictures=pictures,
                   num_pictures=int(cfg.val.get("num_pictures", 4)))

    def __call__(self, step: int) -> dict[str, float]:
        drawn = {"done": False}

        def draw_first_batch(batch, maps, people):
            if self.pictures is not None and not drawn["done"]:
                self.pictures.draw_val(batch, maps, people, step, limit=self.num_pictures)
                drawn["done"] = True

        result = evaluate_batches(self.net, self.predictor, self.loader, self.protocol, self.device, self.precision,
                                  self.max_batches, on_batch=draw_first_batch)
        metrics = {k: v for k, v in result.metrics("val/").items() if isinstance(v, float) and not math.isnan(v)}
        log.info("validation at step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return metrics
