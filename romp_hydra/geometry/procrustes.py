"""Batched similarity Procrustes alignment (the "PA" in PA-MPJPE).

Difference from ROMP: ROMP's ``batch_compute_similarity_transform_torch`` (from VIBE) decides whether to
transpose its input with ``S1.shape[0] not in (2, 3)``; for batched input ``shape[0]`` is the batch size,
so batches of exactly 2 or 3 people are aligned over the wrong axes. Here the layout is fixed
(``[B, J, 3]``) and nothing depends on ``B``.
"""

from __future__ import annotations

import torch

__all__ = ["similarity_procrustes"]

# Below this (float64) spread of the source, or cross-covariance magnitude, no transform is defined.
_DEGENERATE_EPS = 1e-12


def similarity_procrustes(
    source: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align ``source`` to ``target`` with the least-squares similarity transform, per batch element.

    Finds ``scale``, ``rotation`` (a proper rotation, det = +1) and ``translation`` minimising
    ``sum_j mask_j * |scale * R @ source_j + t - target_j|^2`` (Umeyama): SVD of the cross-covariance
    ``U S V^T``, ``R = U diag(1, 1, det(U V^T)) V^T``, ``scale = tr(S D) / var(source)``.

    Joints with ``mask == False`` do not take part in the fit but are still transformed in the output.
    A batch element whose (masked) source has no spread, or whose cross-covariance vanishes (e.g. all-zero
    input, fewer than two valid joints), gets the identity transform and is returned unchanged, without NaN.
    Computed in float64 with autocast disabled; outputs use the source dtype (float32 for 16-bit input).
    Gradients flow through the SVD; as for any SVD they are unstable when two singular values of the
    cross-covariance coincide (e.g. collinear joints).

    Args:
        source: [B, J, 3] points to align (e.g. predicted joints).
        target: [B, J, 3] reference points (e.g. ground truth).
        mask: optional [B, J] bool, True where a joint is used for the fit.

    Returns:
        ``(aligned [B, J, 3], scale [B], rotation [B, 3, 3], translation [B, 3])`` with
        ``aligned = scale * source @ rotation^T + translation``.
    """
    if source.dim() != 3 or source.shape[-1] != 3:
        raise ValueError(
            f"similarity_procrustes expects source of shape [B, J, 3], got {tuple(source.shape)}"
        )
    if target.shape != source.shape:
        raise ValueError(
            f"similarity_procrustes: target shape {tuple(target.shape)} "
            f"must equal source shape {tuple(source.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(source.shape[:2]):
        raise ValueError(
            f"similarity_procrustes: mask must have shape {tuple(source.shape[:2])} (batch, joints), "
            f"got {tuple(mask.shape)}"
        )
    out_dtype = source.dtype if source.dtype in (torch.float32, torch.float64) else torch.float32

    with torch.autocast(device_type=source.device.type, enabled=False):
        src = source.double()
        tgt = target.double()
        if mask is None:
            weights = torch.ones_like(src[..., :1])
        else:
            weights = mask.to(device=src.device, dtype=torch.bool).double()[..., None]
        count = weights.sum(dim=1).clamp(min=1.0)  # [B, 1]
        mean_src = (weights * src).sum(dim=1) / count  # [B, 3]
        mean_tgt = (weights * tgt).sum(dim=1) / count
        src_centred = (src - mean_src[:, None]) * weights
        tgt_centred = (tgt - mean_tgt[:, None]) * weights
        var_src = (src_centred * src_centred).sum(dim=(1, 2))  # [B]
        cross_cov = tgt_centred.transpose(1, 2) @ src_centred  # [B, 3, 3] = sum_j y_j x_j^T

        degenerate = (var_src < _DEGENERATE_EPS) | (cross_cov.abs().amax(dim=(1, 2)) < _DEGENERATE_EPS)
        # Degenerate elements get a well-conditioned stand-in (distinct singular values), so neither the SVD
        # nor its backward pass produces NaN there; their result is replaced by the identity below.
        stand_in = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=src.dtype, device=src.device))
        cross_cov = torch.where(degenerate[:, None, None], stand_in, cross_cov)
        var_src = torch.where(degenerate, torch.ones_like(var_src), var_src)

        u, singular, vh = torch.linalg.svd(cross_cov)
        # Reflection fix: flip the weakest axis when U V^T would be a reflection.
        sign = torch.sign(torch.linalg.det(u @ vh))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        correction = torch.ones_like(singular)
        correction = torch.cat((correction[:, :2], sign[:, None]), dim=1)
        rotation = u @ (correction[:, :, None] * vh)
        scale = (singular * correction).sum(dim=1) / var_src
        translation = mean_tgt - scale[:, None] * (rotation @ mean_src[:, :, None]).squeeze(-1)

        identity = torch.eye(3, dtype=src.dtype, device=src.device).expand_as(rotation)
        rotation = torch.where(degenerate[:, None, None], identity, rotation)
        scale = torch.where(degenerate, torch.ones_like(scale), scale)
        translation = torch.where(degenerate[:, None], torch.zeros_like(translation), translation)

        aligned = scale[:, None, None] * src @ rotation.transpose(1, 2) + translation[:, None]

    return aligned.to(out_dtype), scale.to(out_dtype), rotation.to(out_dtype), translation.to(out_dtype)
