"""Centre-map focal loss (CornerNet's variant of focal loss, as ROMP trains its centre heatmap)."""

from __future__ import annotations

import torch

from romp_hydra.losses.common import check_person_mask, masked_mean

__all__ = ["centermap_focal_loss"]

# CornerNet's exponents: alpha down-weights easy positives/negatives, beta the negatives near a peak.
FOCAL_ALPHA = 2
FOCAL_BETA = 4
# Keeps both logarithms finite; ROMP clamps the prediction to [1e-3, 1 - 1e-3] inside the logs only.
LOG_CLAMP = 1e-3
POSITIVE_EPS = 1e-4


def centermap_focal_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    image_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """CornerNet focal loss between a predicted and a ground-truth centre heatmap, mean over images.

    Per selected image, with ``p`` the prediction, ``p' = clamp(p, 1e-3, 1 - 1e-3)`` and positives the cells
    where ``gt == 1`` exactly (the Gaussian peaks):

        L_pos = sum_pos log(p') * (1 - p)^2
        L_neg = sum_{gt < 1} log(1 - p') * p^2 * (1 - gt)^4
        loss  = -(L_pos + L_neg) / (n_pos + 1e-4)   if n_pos > 0,   else  -L_neg

    The prediction is the **raw** head output, with no sigmoid, exactly as in ROMP: the head learns to
    output values in (0, 1) itself. Outside that range the clamped logs stop giving a gradient and only the
    modulating factors ``(1 - p)^2`` / ``p^2`` (computed on the unclamped value) pull it back. Applying a
    sigmoid here would change the meaning of the map the parser thresholds at 0.2.

    Args:
        pred: [B, 1, C, C] (or [B, C, C]) raw centre-map output.
        gt: ground-truth heatmap of the same shape, values in [0, 1], peaks exactly 1.
        image_mask: optional [B] bool; only these images are used (ROMP: ``all_persons_labelled``, because
            an image with unlabelled people would teach the head that those people are background).

    Returns:
        Scalar loss; an exact graph-connected 0 when no image is selected.
    """
    if pred.shape != gt.shape:
        raise ValueError(
            f"centermap_focal_loss: pred shape {tuple(pred.shape)} must equal gt shape {tuple(gt.shape)}"
        )
    if pred.dim() < 3:
        raise ValueError(f"centermap_focal_loss expects [B, (1,) C, C] maps, got shape {tuple(pred.shape)}")
    if image_mask is not None and image_mask.shape != pred.shape[:1]:
        raise ValueError(
            f"centermap_focal_loss: image_mask must have shape ({pred.shape[0]},), got {tuple(image_mask.shape)}"
        )
    selected = check_person_mask(image_mask, pred.shape[0], "centermap_focal_loss", pred.device)

    # Losses in float32 even under autocast: log(1e-3) and the fourth power underflow in fp16.
    pred = pred.float().flatten(start_dim=1)
    gt = gt.float().flatten(start_dim=1)
    # Images left out are replaced by an empty map predicted as empty, so whatever they hold reaches neither
    # the value nor the gradient (no boolean indexing: its shape would depend on the mask).
    pred = torch.where(selected[:, None], pred, 0.0)
    gt = torch.where(selected[:, None], gt, 0.0)
    positive = gt == 1
    negative = gt < 1
    clamped = pred.clamp(LOG_CLAMP, 1.0 - LOG_CLAMP)

    zero = torch.zeros_like(pred)
    pos_terms = torch.log(clamped) * (1.0 - pred).pow(FOCAL_ALPHA)
    neg_terms = torch.log(1.0 - clamped) * pred.pow(FOCAL_ALPHA) * (1.0 - gt).pow(FOCAL_BETA)
    pos_loss = torch.where(positive, pos_terms, zero).sum(dim=1)
    neg_loss = torch.where(negative, neg_terms, zero).sum(dim=1)
    num_pos = positive.sum(dim=1).to(pred.dtype)

    per_image = torch.where(num_pos > 0, -(pos_loss + neg_loss) / (num_pos + POSITIVE_EPS), -neg_loss)
    return masked_mean(per_image, selected)
