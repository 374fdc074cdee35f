"""Centre-detection precision and recall (ROMP never reported a detection rate; this adds one).

A detection is a true positive when it is assigned, one-to-one (Hungarian, per image), to a GT person whose
centre cell lies within ``threshold`` of it. GT centres are quantised to their map cell exactly as the matcher
does (``models.parser.gt_center_cells``), so the numbers describe the same pairs the evaluation scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from romp_hydra.models.parser import match_gt_to_predictions

__all__ = ["DetectionCounts", "detection_counts"]

DISTANCE_UNITS = ("cells", "normalised")


@dataclass
class DetectionCounts:
    """Counts that add up over batches (so precision/recall do not depend on the batch size)."""

    true_positives: int = 0
    num_gt: int = 0
    num_predictions: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(
            self.true_positives + other.true_positives,
            self.num_gt + other.num_gt,
            self.num_predictions + other.num_predictions,
        )

    @property
    def precision(self) -> float:
        """TP / detections (NaN without detections)."""
        return self.true_positives / self.num_predictions if self.num_predictions else float("nan")

    @property
    def recall(self) -> float:
        """TP / GT people (NaN without GT people)."""
        return self.true_positives / self.num_gt if self.num_gt else float("nan")

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (NaN when undefined, 0 when both are 0)."""
        precision, recall = self.precision, self.recall
        if np.isnan(precision) or np.isnan(recall):
            return float("nan")
        return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "true_positives": self.true_positives, "num_gt": self.num_gt,
                "num_predictions": self.num_predictions}  # fmt: skip


def detection_counts(
    gt_centers: np.ndarray | torch.Tensor,
    pred_batch_idx: np.ndarray | torch.Tensor,
    pred_center_yx: np.ndarray | torch.Tensor,
    map_size: int,
    threshold: float,
    units: str = "cells",
    person_mask: np.ndarray | torch.Tensor | None = None,
) -> DetectionCounts:
    """True positives, GT people and detections of one batch, at a distance threshold.

    Args:
        gt_centers: (B, MP, 2) normalised (x, y) GT centres, -2 in empty slots.
        pred_batch_idx: (P,) image of each detection.
        pred_center_yx: (P, 2) detection cells (y, x).
        map_size: centre-map size C.
        threshold: largest centre distance of a true positive.
        units: ``'cells'`` (map cells) or ``'normalised'`` ([-1, 1] image coordinates: one cell = 2 / C).
        person_mask: optional (B, MP) bool of GT slots to count.

    Returns:
        :class:`DetectionCounts`; sum them over batches, then read ``precision`` / ``recall``.
    """
    if units not in DISTANCE_UNITS:
        raise ValueError(f"detection_counts: units must be one of {DISTANCE_UNITS}, got {units!r}")
    if not threshold >= 0:
        raise ValueError(f"detection_counts: threshold must be >= 0, got {threshold}")
    threshold_cells = threshold if units == "cells" else threshold * map_size / 2.0
    result = match_gt_to_predictions(
        gt_centers,
        pred_batch_idx,
        pred_center_yx,
        map_size,
        mode="nearest_center",
        one_to_one=True,
        max_distance=threshold_cells,
        person_mask=person_mask,
    )
    return DetectionCounts(result.num_matched, result.num_gt, result.num_predictions)
