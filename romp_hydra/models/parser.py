"""From maps to people: centre-peak detection, the one GT matcher, and parameter sampling.

ROMP reads every person's 145 parameters at one cell of the stride-8 maps (`result_parser.py`,
`centermap.py`):

* **parse** (inference): peaks of the raw centre map (non-maximum suppression = "equals its 5x5 max-pool"),
  top-K per image, score > threshold (0.2 in ROMP's v1 configs). Every peak is a person.
* **matching**, one rule (`nearest_detections`) and one vocabulary (`MATCH_MODES`): each ground-truth person
  takes either the *nearest detected centre* of its own image (``mode="nearest_center"``, ROMP's
  `match_preds_to_gts_for_supervision: True`, used by all v1 training configs) or the cell of its own GT
  centre (``mode="gt_center"``). `match_to_gt` is the training view (a `Selection`, on the device);
  `match_gt_to_predictions` the evaluation view (also misses and false positives; evaluation protocols may
  add a one-to-one assignment on top).
* **sample_params**: ``maps.flatten(2)[batch, :, flat_index]`` -> N x 145.

Differences to ROMP:

* When nothing is matched in the whole batch, ROMP substitutes a dummy person (image 0, slot 0, the middle
  cell) so its graph is never empty. Here the selection is simply empty (N = 0; `Predictor` returns empty
  tensors) and the training step adds a zero that depends on every head (`models.model.heads_in_graph`), so
  every parameter still gets a (zero) gradient.
* Non-peaks are excluded with -inf rather than 0, so a threshold <= 0 cannot turn them into detections.
* Cells are (row, col) = (y, x) in the map; GT centres come in our (x, y) convention and are converted here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# The one vocabulary of matching modes, used by training (`model.matching`) and evaluation (`protocol.matching`).
MatchMode = Literal["nearest_center", "gt_center"]
MATCH_MODES = ("nearest_center", "gt_center")
EMPTY_BELOW = -1.99  # a centre coordinate at or below this marks an empty slot (-2)

# ROMP's parsing settings (v1 configs): `centermap_conf_thresh: 0.2`, top-K = `max_person` = 64, kernel 5.
DEFAULT_THRESHOLD = 0.2
DEFAULT_TOP_K = 64
NMS_KERNEL = 5


@dataclass
class Selection:
    """People chosen on the maps, one entry per person (all tensors have length N, on the maps' device).

    Attributes:
        batch_idx: (N,) long, image of each person.
        person_idx: (N,) long, GT slot matched to the person; -1 for people found by `parse`.
        center_yx: (N, 2) long, map cell (row, col) where the parameters are read.
        score: (N,) float, raw centre-map value at that cell.
    """

    batch_idx: Tensor
    person_idx: Tensor
    center_yx: Tensor
    score: Tensor

    def __len__(self) -> int:
        return int(self.batch_idx.shape[0])

    def to(self, device: torch.device | str) -> Selection:
        return Selection(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def gt_mask(self, batch_size: int, max_person: int) -> Tensor:
        """(batch_size, max_person) bool: True for the GT slots that were matched (ignores parse results)."""
        mask = torch.zeros(batch_size, max_person, dtype=torch.bool, device=self.batch_idx.device)
        matched = self.person_idx >= 0
        mask[self.batch_idx[matched], self.person_idx[matched]] = True
        return mask

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Selection:
        long = {"dtype": torch.long, "device": device}
        return Selection(
            batch_idx=torch.zeros(0, **long),
            person_idx=torch.zeros(0, **long),
            center_yx=torch.zeros(0, 2, **long),
            score=torch.zeros(0, device=device),
        )


def _check_center_map(center_map: Tensor) -> None:
    if center_map.dim() != 4 or center_map.shape[1] != 1:
        raise ValueError(f"center_map must be B x 1 x H x W, got {tuple(center_map.shape)}")


@torch.no_grad()
def parse(
    center_map: Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
    nms_kernel: int = NMS_KERNEL,
) -> Selection:
    """Detect people as local maxima of the raw centre map.

    ROMP's `parse_centermap_heatmap_adaptive_scale_batch`: a cell is a peak when it equals the max over its
    ``nms_kernel`` x ``nms_kernel`` neighbourhood (plateaus of equal values keep every cell, as in ROMP). Per
    image the ``top_k`` highest peaks are kept if their score is ``> threshold``. People are ordered by image,
    then by descending score.

    Args:
        center_map: B x 1 x H x W raw (no sigmoid) centre map.
        threshold: minimum score (exclusive).
        top_k: at most this many people per image.
        nms_kernel: odd window size of the max-pool suppression.

    Returns:
        Selection with ``person_idx = -1``.
    """
    _check_center_map(center_map)
    if top_k < 1:
        raise ValueError(f"parse top_k={top_k}: must be >= 1 (ROMP uses max_person = 64)")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"parse nms_kernel={nms_kernel}: must be a positive odd number (ROMP uses 5)")
    scores = center_map.detach().float()
    pooled = F.max_pool2d(scores, kernel_size=nms_kernel, stride=1, padding=nms_kernel // 2)
    scores = scores.masked_fill(scores != pooled, float("-inf")).flatten(1)  # B x (H*W)
    width = center_map.shape[-1]
    top_scores, top_flat = scores.topk(min(top_k, scores.shape[1]), dim=1)  # sorted, highest first
    keep = top_scores > threshold
    batch_idx = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(top_flat)[keep]
    flat = top_flat[keep]
    center_yx = torch.stack((flat // width, flat % width), dim=1)
    return Selection(
        batch_idx=batch_idx,
        person_idx=torch.full_like(batch_idx, -1),
        center_yx=center_yx,
        score=top_scores[keep],
    )


def gt_center_cells(
    centers: Tensor, person_mask: Tensor | None, map_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Map cells of the valid GT centres, as ROMP quantises them.

    A slot is valid when ``person_mask`` is set (None: every slot) and both centre coordinates are above
    -1.99 (missing = -2). The cell of a normalised coordinate c is ``floor((c + 1) / 2 * map_size)`` (in
    float64) clamped to ``[0, map_size - 1]``.

    Args:
        centers: B x MP x 2 normalised (x, y) centres.
        person_mask: B x MP bool, or None.
        map_size: side of the (square) centre map.

    Returns:
        (batch_idx (G,), person_idx (G,), cell_yx (G, 2)) for the G valid persons, all long, on the centres'
        device.
    """
    if centers.dim() != 3 or centers.shape[-1] != 2 or (
        person_mask is not None and person_mask.shape != centers.shape[:2]
    ):
        raise ValueError(
            f"centers must be B x MP x 2 and person_mask B x MP, got {tuple(centers.shape)} and "
            f"{None if person_mask is None else tuple(person_mask.shape)}"
        )
    valid = (centers > EMPTY_BELOW).all(dim=-1)
    if person_mask is not None:
        valid = valid & person_mask.to(centers.device).bool()
    batch_idx, person_idx = valid.nonzero(as_tuple=True)
    xy = ((centers[batch_idx, person_idx].double() + 1.0) / 2.0 * map_size).floor()
    return batch_idx, person_idx, xy.long().clamp(0, map_size - 1).flip(-1)


def nearest_detections(
    gt_batch_idx: Tensor, gt_yx: Tensor, det_batch_idx: Tensor, det_yx: Tensor
) -> tuple[Tensor, Tensor]:
    """The one matching rule: every GT person takes the closest detection of its own image.

    Euclidean distance in map cells; ties go to the detection listed first (`parse` lists an image's peaks
    by descending score, so the stronger peak). Several GT people may share one detection.

    Returns:
        (index (G,) long into the detections, distance (G,) float64; inf where the image has no detection).
    """
    if det_batch_idx.numel() == 0:
        return (
            torch.zeros_like(gt_batch_idx),
            torch.full(gt_batch_idx.shape, float("inf"), dtype=torch.float64, device=gt_batch_idx.device),
        )
    # G x P squared distances in cells (exact small integers; cdist's matmul shortcut could break ties).
    distance = (gt_yx[:, None, :] - det_yx[None, :, :].to(gt_yx.device)).double().square().sum(dim=-1)
    distance = distance.masked_fill(gt_batch_idx[:, None] != det_batch_idx[None, :].to(gt_yx.device), float("inf"))
    nearest_distance, nearest = distance.min(dim=1)  # the first minimum
    return nearest, nearest_distance.sqrt()


def _check_mode(mode: str, where: str) -> None:
    if mode not in MATCH_MODES:
        raise ValueError(f"{where}: mode={mode!r}; use one of {', '.join(MATCH_MODES)}")


@torch.no_grad()
def match_to_gt(
    center_map: Tensor,
    centers: Tensor,
    person_mask: Tensor,
    mode: MatchMode = "nearest_center",
    threshold: float = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
) -> Selection:
    """Pick, for every valid GT person, the cell whose parameters supervise / evaluate it (on the device).

    * ``"nearest_center"`` (ROMP v1 training, `match_preds_to_gts_for_supervision: True`): among the peaks
      `parse` finds in the person's own image, the one closest to the GT centre cell (`nearest_detections`).
      GT people of an image without any peak are dropped for this batch.
    * ``"gt_center"``: the GT centre cell itself; nobody is dropped.

    Which GT people were kept is in ``person_idx`` (see `Selection.gt_mask`). If no one is matched the
    selection is empty (the model path then supervises a dummy person, see `models.model`).

    Args:
        center_map: B x 1 x C x C raw centre map.
        centers: B x MP x 2 normalised (x, y) GT centres, -2 = missing.
        person_mask: B x MP bool, slot holds a person.
        mode: "nearest_center" or "gt_center".
        threshold, top_k: peak detection settings for "nearest_center".

    Returns:
        Selection ordered by (image, GT slot).
    """
    _check_center_map(center_map)
    _check_mode(mode, "match_to_gt")
    device = center_map.device
    batch_idx, person_idx, gt_yx = gt_center_cells(centers.to(device), person_mask.to(device), center_map.shape[-1])
    flat_map = center_map.detach().float().flatten(1)
    width = center_map.shape[-1]

    if mode == "gt_center":
        score = flat_map[batch_idx, gt_yx[:, 0] * width + gt_yx[:, 1]]
        return Selection(batch_idx=batch_idx, person_idx=person_idx, center_yx=gt_yx, score=score)

    peaks = parse(center_map, threshold=threshold, top_k=top_k)
    nearest, distance = nearest_detections(batch_idx, gt_yx, peaks.batch_idx, peaks.center_yx)
    found = torch.isfinite(distance)
    nearest = nearest[found]
    return Selection(
        batch_idx=batch_idx[found],
        person_idx=person_idx[found],
        center_yx=peaks.center_yx[nearest],
        score=peaks.score[nearest],
    )


@dataclass
class MatchResult:
    """GT people matched to detections, with the leftovers (evaluation); index tensors are CPU ``long``.

    Attributes:
        batch_idx: [M] image of each matched GT person.
        person_idx: [M] GT slot of each matched person.
        pred_idx: [M] index of the matched detection (-1 in ``'gt_center'`` mode).
        sample_yx: [M, 2] map cell (y, x) where the person's parameters are read.
        missed_batch_idx, missed_person_idx: [K] GT people without a detection.
        false_positive_idx: [F] detections that no GT person took.
        num_predictions: number of detections given.
    """

    batch_idx: Tensor
    person_idx: Tensor
    pred_idx: Tensor
    sample_yx: Tensor
    missed_batch_idx: Tensor
    missed_person_idx: Tensor
    false_positive_idx: Tensor
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


def _one_to_one(
    gt_batch_idx: Tensor, gt_yx: Tensor, det_batch_idx: Tensor, det_yx: Tensor, max_distance: float | None
) -> tuple[Tensor, Tensor]:
    """Hungarian assignment per image (each detection serves at most one GT person), on the CPU.

    With ``max_distance``, out-of-range pairs cost more than any set of in-range pairs, so the assignment first
    maximises the number of in-range matches, then minimises their total distance.
    Returns (index (G,), distance (G,)) like `nearest_detections`, inf where a GT person got no detection.
    """
    from scipy.optimize import linear_sum_assignment

    index = torch.zeros_like(gt_batch_idx)
    chosen = torch.full(gt_batch_idx.shape, float("inf"), dtype=torch.float64)
    for image in torch.unique(gt_batch_idx).tolist():
        rows_of = (gt_batch_idx == image).nonzero().flatten()
        cols_of = (det_batch_idx == image).nonzero().flatten()
        if cols_of.numel() == 0:
            continue
        distance = (gt_yx[rows_of][:, None] - det_yx[cols_of][None]).double().square().sum(-1).sqrt().numpy()
        cost = distance
        if max_distance is not None:
            out_of_range_cost = (distance.max() + 1.0) * (min(distance.shape) + 1)
            cost = np.where(distance > max_distance, out_of_range_cost, distance)
        rows, cols = linear_sum_assignment(cost)
        index[rows_of[rows]] = cols_of[cols]
        chosen[rows_of[rows]] = torch.from_numpy(distance[rows, cols])
    return index, chosen


def match_gt_to_predictions(
    gt_centers: Tensor | np.ndarray,
    pred_batch_idx: Tensor | np.ndarray | None,
    pred_center_yx: Tensor | np.ndarray | None,
    map_size: int,
    mode: MatchMode = "nearest_center",
    one_to_one: bool = False,
    max_distance: float | None = None,
    person_mask: Tensor | np.ndarray | None = None,
) -> MatchResult:
    """Match every GT person of a batch to a detection (or to its own centre cell), with the misses and the
    false positives: the evaluation's view of `match_to_gt` (same cells, same rule), on the CPU.

    Args:
        gt_centers: (B, MP, 2) normalised (x, y) GT centres, -2 in empty slots (the batch's ``centers``).
        pred_batch_idx: (P,) image of each detection (`parse`'s ``batch_idx``).
        pred_center_yx: (P, 2) map cell (y, x) of each detection.
        map_size: centre-map size C (64 for a 512 input).
        mode: ``'nearest_center'`` or ``'gt_center'``.
        one_to_one: evaluation protocols' option on top of the rule: a Hungarian assignment per image, so each
            detection serves at most one person (``'nearest_center'`` only).
        max_distance: optional radius in map cells; a GT person whose chosen detection is farther is missed
            (ROMP: no limit).
        person_mask: optional (B, MP) bool selecting the GT slots to match (default: non-empty centres).
    """
    _check_mode(mode, "match_gt_to_predictions")
    centers = torch.as_tensor(gt_centers).detach().cpu()
    if centers.dim() != 3 or centers.shape[-1] != 2:
        raise ValueError(f"gt_centers must have shape (B, MP, 2), got {tuple(centers.shape)}")
    mask = None if person_mask is None else torch.as_tensor(person_mask).detach().cpu().bool()
    batch_idx, person_idx, gt_yx = gt_center_cells(centers, mask, map_size)
    empty = torch.zeros(0, dtype=torch.long)
    if mode == "gt_center":
        return MatchResult(
            batch_idx=batch_idx,
            person_idx=person_idx,
            pred_idx=torch.full_like(batch_idx, -1),
            sample_yx=gt_yx,
            missed_batch_idx=empty,
            missed_person_idx=empty,
            false_positive_idx=empty,
            num_predictions=0 if pred_batch_idx is None else int(torch.as_tensor(pred_batch_idx).numel()),
        )
    if pred_batch_idx is None or pred_center_yx is None:
        raise ValueError("match_gt_to_predictions: mode='nearest_center' needs pred_batch_idx and pred_center_yx")
    det_b = torch.as_tensor(pred_batch_idx).detach().cpu().long().reshape(-1)
    det_yx = torch.as_tensor(pred_center_yx).detach().cpu().long().reshape(-1, 2)
    if det_b.shape[0] != det_yx.shape[0]:
        raise ValueError(f"pred_batch_idx has {det_b.shape[0]} entries but pred_center_yx has {det_yx.shape[0]}")
    if one_to_one:
        nearest, distance = _one_to_one(batch_idx, gt_yx, det_b, det_yx, max_distance)
    else:
        nearest, distance = nearest_detections(batch_idx, gt_yx, det_b, det_yx)
    found = torch.isfinite(distance)
    if max_distance is not None:
        found &= distance <= max_distance
    taken = torch.zeros(det_b.shape[0], dtype=torch.bool)
    taken[nearest[found]] = True
    return MatchResult(
        batch_idx=batch_idx[found],
        person_idx=person_idx[found],
        pred_idx=nearest[found],
        sample_yx=det_yx[nearest[found]].reshape(-1, 2),
        missed_batch_idx=batch_idx[~found],
        missed_person_idx=person_idx[~found],
        false_positive_idx=(~taken).nonzero().flatten(),
        num_predictions=int(det_b.shape[0]),
    )


def sample_params(params_maps: Tensor, selection: Selection) -> Tensor:
    """Read each selected person's parameter vector: ``maps.flatten(2)[batch, :, y * W + x]`` -> N x channels.

    Differentiable with respect to ``params_maps``; N = 0 gives an empty N x channels tensor.
    """
    if params_maps.dim() != 4:
        raise ValueError(f"params_maps must be B x channels x H x W, got {tuple(params_maps.shape)}")
    width = params_maps.shape[-1]
    flat_idx = selection.center_yx[:, 0] * width + selection.center_yx[:, 1]
    return params_maps.flatten(2)[selection.batch_idx, :, flat_idx]
