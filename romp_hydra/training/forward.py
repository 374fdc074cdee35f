"""The model path shared by training, validation and evaluation: network -> centres -> parameters -> people."""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from romp_hydra.models.parser import Selection, match_to_gt, parse, sample_params
from romp_hydra.models.predictor import PersonOutputs, Predictor

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device, precision: str):
    """bf16/fp16 autocast on CUDA; fp32 (no autocast) everywhere else."""
    if device.type == "cuda" and precision in AMP_DTYPES:
        return torch.autocast(device_type="cuda", dtype=AMP_DTYPES[precision])
    return nullcontext()


def run_network(net: nn.Module, images: Tensor, device: torch.device, precision: str = "fp32",
                channels_last: bool = False) -> dict[str, Tensor]:
    images = images.to(device, non_blocking=True)
    if channels_last and device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast_context(device, precision):
        maps = net(images)
    # Parsing, SMPL and the losses run in fp32 (SVD and the focal log are not fp16-safe).
    return {key: value.float() for key, value in maps.items()}


def people_from_maps(
    maps: Mapping[str, Tensor],
    predictor: Predictor,
    *,
    centers: Tensor | None = None,
    person_mask: Tensor | None = None,
    match_mode: str = "nearest_peak",
    threshold: float = 0.2,
    top_k: int = 64,
) -> tuple[PersonOutputs, Selection]:
    """Matched to ground truth when `centers`/`person_mask` are given (training, evaluation), else every
    detected centre is a person (inference)."""
    if centers is None:
        selection = parse(maps["center_map"], threshold=threshold, top_k=top_k)
    else:
        selection = match_to_gt(maps["center_map"], centers, person_mask, mode=match_mode,
                                threshold=threshold, top_k=top_k)
    params = sample_params(maps["params_maps"], selection)
    return predictor(params, selection), selection
