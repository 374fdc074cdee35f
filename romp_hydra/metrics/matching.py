"""Matching ground-truth people to detected centres, for evaluation.

Two rules, both from ROMP:

* ``'nearest_center'`` (ROMP's ``match_preds_to_gts_for_supervision=True``, and how its author describes
  evaluation, issue #471): each GT person takes the detected centre of its own image closest to its GT centre
  cell (Euclidean distance in map cells). Several GT people may share one detection; GT people in an image
  without detections are misses. ``one_to_one=True`` instead solves a Hungarian assignment per image
  (``scipy.optimize.linear_sum_assignment``), so each detection serves at most one person.
* ``'gt_center'`` (ROMP's default when that flag is off): parameters are read at the cell under each GT
  centre; no detection is involved, so nothing is missed and nothing is a false positive.

Detections that no GT person takes are false positives. ROMP never penalised them on 3DPW (only 1-2 people per
frame are labelled); they are counted here so that a detection rate can be reported (see ``detection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["MatchResult", "gt_center_cells", "match_gt_to_predictions"]

MATCH_METHODS = ("nearest_center", "gt_center")
_EMPTY_BELOW = -1.99  # centre slots filled with -2 are empty


@dataclass
class MatchResult:
    """Matched pairs and the unmatched leftovers; all index tensors are CPU ``long``.

    Attributes:
        batch_idx: [M] image of each matched GT person.
        person_idx: [M] GT slot of each matched person.
        pred_idx: [M] index of the matched detection (-1 in ``'gt_center'`` mode).
        sample_yx: [M, 2] map cell (y, x) where the person's parameters are read.
        missed_batch_idx, missed_person_idx: [K] GT people without a detection.
        false_positive_idx: [F] detections that no GT person took.
        num_predictions: number of detections given.
    """

    batch_idx: torch.Tensor
    person_idx: torch.Tensor
    pred_idx: torch.Tensor
    sample_yx: torch.Tensor
    missed_batch_idx: torch.Tensor
    missed_person_idx: torch.Tensor
    false_positive_idx: torch.Tensor
    num_predictions: int

    @property
    def num_matched(self) -> int:
        return int(self.batch_idx.numel())

    @property
    def num_missed(self) -> int:
        return int(self.missed_batch_idx.numel())

    @property
    def num_gt(self) -> int:
        return self.num_matched + self.num_missed

    @property
    def num_false_positives(self) -> int:
        return int(self.false_positive_idx.numel())

    def counts(self) -> dict[str, int]:
        """``{"gt", "predictions", "matched", "missed", "false_positives"}``."""
        return {
            "gt": self.num_gt,
            "predictions": self.num_predictions,
            "matched": self.num_matched,
            "missed": self.num_missed,
            "false_positives": self.num_false_positives,
        }


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def gt_center_cells(gt_centers: np.ndarray | torch.Tensor, map_size: int) -> np.ndarray:
    """Normalised ``(x, y)`` centres [..., 2] in [-1, 1] -> map cells ``(y, x)`` [..., 2] int64, as ROMP:
    ``floor((c + 1) / 2 * map_size)``, clamped to the map."""
    centers = _to_numpy(gt_centers).astype(np.float64)
    cells = np.floor((centers + 1.0) / 2.0 * map_size).astype(np.int64).clip(0, map_size - 1)
    return cells[..., ::-1].copy()


def _long(values: list[int] | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1), dtype=torch.long)


def match_gt_to_predictions(
    gt_centers: np.ndarray | torch.Tensor,
    pred_batch_idx: np.ndarray | torch.Tensor | None,
    pred_center_yx: np.ndarray | torch.Tensor | None,
    map_size: int,
    method: str = "nearest_center",
    one_to_one: bool = False,
    max_distance: float | None = None,
    person_mask: np.ndarray | torch.Tensor | None = None,
) -> MatchResult:
    """Match every GT person of a batch to a detection (or to its own centre cell).

    Args:
        gt_centers: (B, MP, 2) normalised (x, y) GT centres, -2 in empty slots (the batch's ``centers``).
        pred_batch_idx: (P,) image of each detection (``PersonOutputs["batch_idx"]`` in parsing mode).
        pred_center_yx: (P, 2) map cell (y, x) of each detection (``PersonOutputs["center_yx"]``).
        map_size: centre-map size C (64 for a 512 input).
        method: ``'nearest_center'`` (ROMP's evaluation rule) or ``'gt_center'``.
        one_to_one: Hungarian assignment instead of the nearest detection (``'nearest_center'`` only).
        max_distance: optional radius in map cells; a GT person whose chosen detection is farther is missed
            (ROMP: no limit).
        person_mask: optional (B, MP) bool selecting the GT slots to match (default: non-empty centres).

    Returns:
        A :class:`MatchResult`.
    """
    if method not in MATCH_METHODS:
        raise ValueError(f"match_gt_to_predictions: method must be one of {MATCH_METHODS}, got {method!r}")
    centers = _to_numpy(gt_centers)
    if centers.ndim != 3 or centers.shape[-1] != 2:
        raise ValueError(f"gt_centers must have shape (B, MP, 2), got {centers.shape}")
    valid = (centers > _EMPTY_BELOW).all(axis=-1)
    if person_mask is not None:
        mask = _to_numpy(person_mask).astype(bool)
        if mask.shape != valid.shape:
            raise ValueError(f"person_mask must have shape {valid.shape}, got {mask.shape}")
        valid = valid & mask
    gt_cells = gt_center_cells(centers, map_size)

    if method == "gt_center":
        batch_idx, person_idx = np.nonzero(valid)
        num_predictions = 0 if pred_batch_idx is None else int(_to_numpy(pred_batch_idx).size)
        return MatchResult(
            batch_idx=_long(batch_idx),
            person_idx=_long(person_idx),
            pred_idx=_long(np.full(batch_idx.shape, -1)),
            sample_yx=torch.as_tensor(gt_cells[batch_idx, person_idx].reshape(-1, 2), dtype=torch.long),
            missed_batch_idx=_long([]),
            missed_person_idx=_long([]),
            false_positive_idx=_long([]),
            num_predictions=num_predictions,
        )

    if pred_batch_idx is None or pred_center_yx is None:
        raise ValueError(
            "match_gt_to_predictions: method='nearest_center' needs pred_batch_idx and pred_center_yx"
        )
    pred_images = _to_numpy(pred_batch_idx).astype(np.int64).reshape(-1)
    pred_cells = _to_numpy(pred_center_yx).astype(np.float64).reshape(-1, 2)
    if pred_cells.shape[0] != pred_images.shape[0]:
        raise ValueError(
            f"pred_batch_idx has {pred_images.shape[0]} entries but pred_center_yx has {pred_cells.shape[0]}"
        )

    matched: list[tuple[int, int, int]] = []
    missed: list[tuple[int, int]] = []
    taken = np.zeros(pred_images.shape[0], dtype=bool)
    for image in range(centers.shape[0]):
        slots = np.flatnonzero(valid[image])
        candidates = np.flatnonzero(pred_images == image)
        if slots.size == 0:
            continue
        if candidates.size == 0:
            missed.extend((image, int(slot)) for slot in slots)
            continue
        distance = np.linalg.norm(gt_cells[image, slots][:, None, :] - pred_cells[candidates][None], axis=-1)
        if one_to_one:
            cost = distance
            if max_distance is not None:
                # Out-of-range pairs cost more than any set of in-range pairs, so the assignment first
                # maximises the number of in-range matches, then minimises their total distance.
                out_of_range_cost = (distance.max() + 1.0) * (min(distance.shape) + 1)
                cost = np.where(distance > max_distance, out_of_range_cost, distance)
            rows, cols = linear_sum_assignment(cost)
        else:
            rows, cols = np.arange(slots.size), distance.argmin(axis=1)
        chosen = dict(zip(rows.tolist(), cols.tolist()))
        for row, slot in enumerate(slots):
            col = chosen.get(row)
            if col is None or (max_distance is not None and distance[row, col] > max_distance):
                missed.append((image, int(slot)))
            else:
                matched.append((image, int(slot), int(candidates[col])))
                taken[candidates[col]] = True

    matched_array = np.asarray(matched, dtype=np.int64).reshape(-1, 3)
    missed_array = np.asarray(missed, dtype=np.int64).reshape(-1, 2)
    return MatchResult(
        batch_idx=_long(matched_array[:, 0]),
        person_idx=_long(matched_array[:, 1]),
        pred_idx=_long(matched_array[:, 2]),
        sample_yx=torch.as_tensor(pred_cells[matched_array[:, 2]].reshape(-1, 2), dtype=torch.long),
        missed_batch_idx=_long(missed_array[:, 0]),
        missed_person_idx=_long(missed_array[:, 1]),
        false_positive_idx=_long(np.flatnonzero(~taken)),
        num_predictions=int(pred_images.shape[0]),
    )
