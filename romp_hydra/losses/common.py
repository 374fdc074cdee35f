"""Small helpers shared by the loss terms: missing-value rules, graph-safe zeros, masked reductions."""

from __future__ import annotations

import torch

__all__ = ["check_person_mask", "graph_zero", "masked_mean", "visible_2d", "visible_3d"]

# Batch conventions (docs/architecture.md): a 2D keypoint is missing when a coordinate is <= -1.99;
# a 3D joint is missing when it carries the -2 filler.
MISSING_2D_BELOW = -1.99
MISSING_3D_VALUE = -2.0
_MISSING_3D_TOLERANCE = 1e-4


def graph_zero(*tensors: torch.Tensor) -> torch.Tensor:
    """An exact 0 that is part of the autograd graph of ``tensors``.

    Summing an empty slice gives 0 with a ``grad_fn`` but touches no element, so it stays 0 even when the
    tensors hold NaN or inf. Returning it instead of a fresh ``torch.zeros(())`` keeps ``backward()`` and
    DDP's unused-parameter bookkeeping working when a term has nothing to supervise.
    """
    if not tensors:
        raise ValueError("graph_zero needs at least one tensor to attach the zero to")
    zero = tensors[0].reshape(-1)[:0].sum()
    for tensor in tensors[1:]:
        zero = zero + tensor.reshape(-1)[:0].sum()
    return zero


def visible_2d(kp2d: torch.Tensor) -> torch.Tensor:
    """[..., J, 2] normalised keypoints -> [..., J] bool, True where both coordinates are annotated."""
    return (kp2d > MISSING_2D_BELOW).all(dim=-1)


def visible_3d(kp3d: torch.Tensor) -> torch.Tensor:
    """[..., J, 3] joints in metres -> [..., J] bool, False where any coordinate holds the -2 filler.

    Root-centred joints can legitimately lie below -1.99 m on one axis only in theory, but an exact -2 is
    the padding value, so the test is equality (with a float tolerance) rather than a threshold.
    """
    return ((kp3d - MISSING_3D_VALUE).abs() > _MISSING_3D_TOLERANCE).all(dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` (broadcast to ``values``) is True; 0 where none is.

    Reduces over ``dim`` (all dimensions when ``None``), e.g. [N, J] -> [N] over each person's joints, or
    [N] -> scalar over the valid persons, without a data-dependent shape or a host sync. Masked entries are
    replaced (not multiplied) by 0, so a NaN or inf there cannot reach the value; their gradient stays finite
    only if the caller also fed them finite inputs (``0 * NaN`` is NaN in the backward pass).
    """
    mask = mask.expand_as(values)
    cleaned = torch.where(mask, values, torch.zeros_like(values))
    if dim is None:
        return cleaned.sum() / mask.sum().to(values.dtype).clamp(min=1.0)
    return cleaned.sum(dim=dim) / mask.sum(dim=dim).to(values.dtype).clamp(min=1.0)


def check_person_mask(
    mask: torch.Tensor | None, num_persons: int, name: str, device: torch.device
) -> torch.Tensor:
    """Validate an optional per-person gate [N] and return it as a bool tensor (all True when ``None``)."""
    if mask is None:
        return torch.ones(num_persons, dtype=torch.bool, device=device)
    if mask.shape != (num_persons,):
        raise ValueError(
            f"{name}: expected a per-person mask of shape ({num_persons},), got {tuple(mask.shape)}"
        )
    return mask.to(device=device, dtype=torch.bool)
