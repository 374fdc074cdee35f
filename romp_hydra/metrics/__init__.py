"""Evaluation metrics: per-person joint/mesh errors, PCK/AUC/PCKh, detection rates (matching: models.parser).

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

__all__ = [
    "AUC_THRESHOLDS_MM",
    "DetectionCounts",
    "MetricAccumulator",
    "auc",
    "detection_counts",
    "mpckh_bbox",
    "mpjpe",
    "pa_mpjpe",
    "pck3d",
    "pckh_2d",
    "pve",
    "visible_joints",
]
