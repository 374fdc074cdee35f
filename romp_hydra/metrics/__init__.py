"""Evaluation metrics: per-person joint/mesh errors, PCK/AUC/PCKh, GT<->detection matching, detection rates.

All per-person metrics return one value per person (NaN where a person cannot be scored); collect them with
:class:`MetricAccumulator`, whose result does not depend on the batch size."""

from romp_hydra.metrics.detection import DetectionCounts, detection_counts
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
    visible_joints,
)
from romp_hydra.metrics.matching import MatchResult, gt_center_cells, match_gt_to_predictions

__all__ = [
    "AUC_THRESHOLDS_MM",
    "DetectionCounts",
    "MatchResult",
    "MetricAccumulator",
    "auc",
    "detection_counts",
    "gt_center_cells",
    "match_gt_to_predictions",
    "mpckh_bbox",
    "mpjpe",
    "pa_mpjpe",
    "pck3d",
    "pckh_2d",
    "pve",
    "visible_joints",
]
