"""The training criterion: every ROMP loss term, weighted, clipped and NaN-guarded, summed into one scalar."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from romp_hydra import batch as masks
from romp_hydra.batch import MATCHED_TARGET_KEYS
from romp_hydra.losses.common import graph_zero
from romp_hydra.losses.focal import centermap_focal_loss
from romp_hydra.losses.keypoints import PAMPJPE_JOINT_MODES, kp2d_loss, mpjpe_loss, pampjpe_loss
from romp_hydra.losses.params import pose_loss, shape_loss
from romp_hydra.losses.prior import build_pose_prior, pose_prior_loss

__all__ = ["LOSS_TERMS", "TERM_NAMES", "Criterion", "LossInputs", "gather_matched_targets"]


def _require(mapping: Mapping[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in mapping:
        raise KeyError(
            f"Criterion needs {where}['{key}'] for an enabled loss term; present keys: {sorted(mapping)}"
        )
    return mapping[key]


def gather_matched_targets(
    batch: Mapping[str, torch.Tensor], batch_idx: torch.Tensor, person_idx: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Pick the GT of every matched person out of a collated training batch.

    Args:
        batch: the collated batch (``kp2d`` (B, MP, 54, 2), ``kp3d`` (B, MP, 54, 3), ``params`` (B, MP, 76),
            ``valid_masks`` (B, MP, 8)).
        batch_idx: [N] image of each matched person (``PersonOutputs["batch_idx"]``).
        person_idx: [N] GT slot of each matched person (``PersonOutputs["person_idx"]``; must be >= 0,
            i.e. the outputs come from matching, not from parsing mode).

    Returns:
        ``{"kp2d": (N, 54, 2), "kp3d": (N, 54, 3), "params": (N, 76), "valid_masks": (N, 8) bool}``.
    """
    if batch_idx.shape != person_idx.shape or batch_idx.dim() != 1:
        raise ValueError(
            f"gather_matched_targets: batch_idx {tuple(batch_idx.shape)} and person_idx {tuple(person_idx.shape)} "
            "must be 1-D and of equal length"
        )
    if person_idx.numel():
        message = ("gather_matched_targets: person_idx contains -1 (outputs from parsing mode); the loss needs "
                   "outputs matched to GT slots (parser.match_to_gt)")
        try:  # checked on the device, without waiting for it (no host sync in the train step)
            torch._assert_async(person_idx.min() >= 0, message)
        except RuntimeError as err:  # raised at once on the CPU
            raise ValueError(message) from err
    gathered = {}
    for key in MATCHED_TARGET_KEYS:
        tensor = _require(batch, key, "batch")
        gathered[key] = tensor[batch_idx.to(tensor.device), person_idx.to(tensor.device)]
    gathered["valid_masks"] = gathered["valid_masks"].bool()
    return gathered


@dataclass(frozen=True)
class LossInputs:
    """What one loss evaluation sees (shapes in :meth:`Criterion.forward`)."""

    outputs: Mapping[str, torch.Tensor]
    targets: Mapping[str, torch.Tensor]
    centre_pred: torch.Tensor
    centre_gt: torch.Tensor
    image_mask: torch.Tensor | None

    def output(self, key: str) -> torch.Tensor:
        return _require(self.outputs, key, "person_outputs")

    def target(self, key: str) -> torch.Tensor:
        return _require(self.targets, key, "matched_targets")

    def valid(self, column: int) -> torch.Tensor:
        return self.target("valid_masks").bool()[:, column]


def _centermap_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    return centermap_focal_loss(inputs.centre_pred, inputs.centre_gt, inputs.image_mask)


def _kp2d_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    return kp2d_loss(inputs.output("pj2d"), inputs.target("kp2d"), inputs.valid(masks.KP2D))


def _mpjpe_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    return mpjpe_loss(inputs.output("joints54"), inputs.target("kp3d"), inputs.valid(masks.KP3D))


def _pampjpe_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    return pampjpe_loss(
        inputs.output("joints54"), inputs.target("kp3d"), inputs.valid(masks.KP3D), criterion.pampjpe_joints
    )


def _pose_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    return pose_loss(
        inputs.output("pose_rotmat"),
        inputs.target("params"),
        inputs.valid(masks.GLOBAL_ORIENT),
        inputs.valid(masks.BODY_POSE),
    )


def _shape_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    return shape_loss(inputs.output("betas"), inputs.target("params"), inputs.valid(masks.BETAS))


def _prior_term(criterion: Criterion, inputs: LossInputs) -> torch.Tensor:
    assert criterion.prior is not None  # the term is enabled only when the GMM loaded
    return pose_prior_loss(criterion.prior, inputs.output("body_pose"))


# name -> unweighted value; the order is the order of the terms dict (and of the logs). ROMP's `Cam` term is
# absent: it needs `supervise_cam_params`, off in every v1 config, and there is no camera target.
LOSS_TERMS: dict[str, Callable[[Criterion, LossInputs], torch.Tensor]] = {
    "centermap": _centermap_term,
    "kp2d": _kp2d_term,
    "mpjpe": _mpjpe_term,
    "pampjpe": _pampjpe_term,
    "pose": _pose_term,
    "shape": _shape_term,
    "prior": _prior_term,
}
TERM_NAMES: tuple[str, ...] = tuple(LOSS_TERMS)


class Criterion(nn.Module):
    """ROMP's weighted loss (``Loss`` + ``Learnable_Loss``) over matched persons and centre maps.

    Built from ``conf/loss/*.yaml`` by ``hydra.utils.instantiate(cfg.loss)``: the constructor takes exactly
    that file's keys. Each enabled term is ``weight * value``; a term that reaches ``loss_thresh`` is rescaled
    to exactly the threshold as ``term * (thresh / term.detach())`` (value capped, gradient scaled by the same
    factor, as ROMP does). Non-finite terms (NaN, or inf which rescaling turns into NaN) are left out of the
    total and reported as NaN in the terms dict, so the training loop can count NaN steps; the total itself is
    then the sum of the finite terms (an exact graph-connected 0 if none is finite).

    Terms (:data:`LOSS_TERMS`; a missing key or weight 0 switches the term off):

    ========== =============================================== ===============================
    name       value                                           gate
    ========== =============================================== ===============================
    centermap  focal loss of the centre map (raw head output)  ``image_mask`` (all labelled)
    kp2d       2D projection error, leaves re-parented         ``valid_masks[:, KP2D]``
    mpjpe      hip-aligned 3D joint error (m)                  ``valid_masks[:, KP3D]``
    pampjpe    Procrustes-aligned 3D joint error (m)           ``valid_masks[:, KP3D]``
    pose       rotation-matrix distance to GT pose             ``GLOBAL_ORIENT``, ``BODY_POSE``
    shape      PCA-weighted beta error + beta regulariser      ``valid_masks[:, BETAS]``
    prior      GMM pose prior / 100, 0 below 5                 all matched persons
    ========== =============================================== ===============================

    Args:
        weights: term name -> weight (ROMP v1: ``conf/loss/v1.yaml``).
        loss_thresh: cap applied to each weighted term (ROMP: 1000).
        gmm_path: SMPLify's ``gmm_08.pkl``; ``None`` or a missing file turns the prior off with one warning.
        pampjpe_joints: ``batch`` (ROMP: joints labelled in every person of the batch) or ``person``
            (each person's own joints); see :func:`romp_hydra.losses.keypoints.pampjpe_loss`.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        loss_thresh: float = 1000.0,
        gmm_path: str | os.PathLike | None = None,
        pampjpe_joints: str = "batch",
    ) -> None:
        super().__init__()
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(
                f"Criterion: unknown loss term(s) {unknown} in loss.weights; known terms: {list(LOSS_TERMS)}"
                + (" (ROMP's Cam term has no target in v1 and does not exist here; remove loss.weights.cam)"
                   if "cam" in unknown else "")
            )
        weights = {name: float(value) for name, value in weights.items()}
        negative = {name: value for name, value in weights.items() if value < 0 or math.isnan(value)}
        if negative:
            raise ValueError(f"Criterion: loss weights must be >= 0, got {negative}")
        if not loss_thresh > 0:
            raise ValueError(f"Criterion: loss_thresh must be > 0, got {loss_thresh}")
        if pampjpe_joints not in PAMPJPE_JOINT_MODES:
            raise ValueError(
                f"Criterion: loss.pampjpe_joints={pampjpe_joints!r}; use one of {', '.join(PAMPJPE_JOINT_MODES)}"
            )
        self.loss_thresh = float(loss_thresh)
        self.pampjpe_joints = pampjpe_joints
        self.prior = build_pose_prior(gmm_path) if weights.get("prior", 0.0) > 0 else None
        if self.prior is None:
            weights.pop("prior", None)
        # Only enabled terms are computed, in the table's order.
        self.weights = {name: weights[name] for name in LOSS_TERMS if weights.get(name, 0.0) > 0}

    def extra_repr(self) -> str:
        return f"weights={self.weights}, loss_thresh={self.loss_thresh}, pampjpe_joints={self.pampjpe_joints}"

    def forward(
        self,
        person_outputs: Mapping[str, torch.Tensor],
        matched_targets: Mapping[str, torch.Tensor],
        centre_pred: torch.Tensor,
        centre_gt: torch.Tensor,
        image_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total loss and the per-term values.

        Args:
            person_outputs: ``PersonOutputs`` of the N matched persons (keys used: ``pj2d`` (N, 54, 2),
                ``joints54`` (N, 54, 3), ``pose_rotmat`` (N, 22, 3, 3), ``betas`` (N, 10), ``body_pose`` (N, 63)).
            matched_targets: GT gathered per matched person (see :func:`gather_matched_targets`):
                ``kp2d`` (N, 54, 2), ``kp3d`` (N, 54, 3), ``params`` (N, 76), ``valid_masks`` (N, 8) bool with
                columns KP2D=0, KP3D=1, TRACK_ID=2, GLOBAL_ORIENT=3, BODY_POSE=4, BETAS=5, VERTS=6, DEPTH=7.
            centre_pred: (B, 1, C, C) raw centre map from the network.
            centre_gt: (B, 1, C, C) GT centre heatmap.
            image_mask: (B,) bool, images whose persons are all labelled (gates ``centermap``); None = all.

        Returns:
            ``(total, terms)``: the scalar to back-propagate and ``{name: weighted, clipped, detached value}``
            for every enabled term, NaN where the term was non-finite and left out of the total.
        """
        inputs = LossInputs(person_outputs, matched_targets, centre_pred, centre_gt, image_mask)
        weighted: dict[str, torch.Tensor] = {}
        for name, weight in self.weights.items():
            term = weight * LOSS_TERMS[name](self, inputs)
            detached = term.detach()
            scale = torch.where(
                detached >= self.loss_thresh, self.loss_thresh / detached, torch.ones_like(detached)
            )
            weighted[name] = term * scale

        total = graph_zero(centre_pred)
        terms: dict[str, torch.Tensor] = {}
        for name, term in weighted.items():
            # Decided on the device (no host sync in the train step): a non-finite term adds 0 to the total.
            finite = torch.isfinite(term.detach())
            total = total + torch.where(finite, term, torch.zeros_like(term))
            terms[name] = torch.where(finite, term.detach(), torch.full_like(term.detach(), float("nan")))
        return total, terms
