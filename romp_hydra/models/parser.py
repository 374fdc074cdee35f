"""From maps to people: centre-peak detection, matching to ground truth, and parameter sampling.

ROMP reads every person's 145 parameters at one cell of the stride-8 maps (`result_parser.py`,
`centermap.py`):

* **parse** (inference): peaks of the raw centre map (non-maximum suppression = "equals its 5x5 max-pool"),
  top-K per image, score > threshold (0.2 in ROMP's v1 configs). Every peak is a person.
* **match_to_gt** (training / evaluation): each ground-truth person takes either the *nearest detected peak*
  of its own image (``mode="nearest_peak"``, ROMP's `match_preds_to_gts_for_supervision: True`, used by all v1
  training configs) or the cell of its own GT centre (``mode="gt_center"``).
* **sample_params**: ``maps.flatten(2)[batch, :, flat_index]`` -> N x 145.

Differences to ROMP:

* When nothing is matched in the whole batch, ROMP substitutes a dummy person (image 0, slot 0, the middle
  cell) so its graph is never empty. Here the selection is simply empty (N = 0); callers must handle N = 0
  (`Predictor` returns empty tensors; a loss over no people should be 0).
* Non-peaks are excluded with -inf rather than 0, so a threshold <= 0 cannot turn them into detections.
* Cells are (row, col) = (y, x) in the map; GT centres come in our (x, y) convention and are converted here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

MatchMode = Literal["nearest_peak", "gt_center"]
MATCH_MODES = ("nearest_peak", "gt_center")

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


def gt_center_cells(centers: Tensor, person_mask: Tensor, map_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Map cells of the valid GT centres.

    A slot is valid when ``person_mask`` is set and both centre coordinates are >= -1 (missing = -2).
    The cell of a normalised coordinate c is ``int((c + 1) / 2 * map_size)`` clamped to ``[0, map_size - 1]``.

    Args:
        centers: B x MP x 2 normalised (x, y) centres.
        person_mask: B x MP bool.
        map_size: side of the (square) centre map.

    Returns:
        (batch_idx (G,), person_idx (G,), cell_yx (G, 2)) for the G valid persons, all long.
    """
    if centers.dim() != 3 or centers.shape[-1] != 2 or person_mask.shape != centers.shape[:2]:
        raise ValueError(
            f"centers must be B x MP x 2 and person_mask B x MP, "
            f"got {tuple(centers.shape)} and {tuple(person_mask.shape)}"
        )
    valid = person_mask.bool() & (centers >= -1).all(dim=-1)
    batch_idx, person_idx = valid.nonzero(as_tuple=True)
    xy = ((centers[batch_idx, person_idx].float() + 1.0) / 2.0 * map_size).long().clamp(0, map_size - 1)
    return batch_idx, person_idx, xy.flip(-1)


@torch.no_grad()
def match_to_gt(
    center_map: Tensor,
    centers: Tensor,
    person_mask: Tensor,
    mode: MatchMode = "nearest_peak",
    threshold: float = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
) -> Selection:
    """Pick, for every valid GT person, the cell whose parameters supervise / evaluate it.

    * ``"nearest_peak"`` (ROMP v1 training): among the peaks `parse` finds in the person's own image, the one
      closest to the GT centre cell (Euclidean, in cells; ties go to the higher-scoring peak). Several GT
      people may share a peak. GT people of an image without any peak are dropped for this batch.
    * ``"gt_center"``: the GT centre cell itself; nobody is dropped.

    Which GT people were kept is in ``person_idx`` (see `Selection.gt_mask`). If no one is matched the
    selection is empty (ROMP would insert a dummy person instead).

    Args:
        center_map: B x 1 x C x C raw centre map.
        centers: B x MP x 2 normalised (x, y) GT centres, -2 = missing.
        person_mask: B x MP bool, slot holds a person.
        mode: "nearest_peak" or "gt_center".
        threshold, top_k: peak detection settings for "nearest_peak".

    Returns:
        Selection ordered by (image, GT slot).
    """
    _check_center_map(center_map)
    if mode not in MATCH_MODES:
        raise ValueError(f"match_to_gt mode={mode!r}: use one of {', '.join(MATCH_MODES)}")
    device = center_map.device
    batch_idx, person_idx, gt_yx = gt_center_cells(
        centers.to(device), person_mask.to(device), center_map.shape[-1]
    )
    flat_map = center_map.detach().float().flatten(1)
    width = center_map.shape[-1]

    if mode == "gt_center":
        score = flat_map[batch_idx, gt_yx[:, 0] * width + gt_yx[:, 1]]
        return Selection(batch_idx=batch_idx, person_idx=person_idx, center_yx=gt_yx, score=score)

    peaks = parse(center_map, threshold=threshold, top_k=top_k)
    if len(peaks) == 0 or batch_idx.numel() == 0:
        return Selection.empty(device)
    # G x P squared distances in cells (exact small integers; cdist's matmul shortcut could break ties).
    distance = (gt_yx[:, None, :] - peaks.center_yx[None, :, :]).float().square().sum(dim=-1)
    # Peaks of other images are out of reach.
    distance = distance.masked_fill(batch_idx[:, None] != peaks.batch_idx[None, :], float("inf"))
    # argmin returns the first minimum; peaks are sorted by score, so ties go to the stronger peak.
    nearest_distance, nearest = distance.min(dim=1)
    found = torch.isfinite(nearest_distance)
    nearest = nearest[found]
    return Selection(
        batch_idx=batch_idx[found],
        person_idx=person_idx[found],
        center_yx=peaks.center_yx[nearest],
        score=peaks.score[nearest],
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
