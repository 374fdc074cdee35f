"""The model path: images -> maps -> people, one module for training, validation, evaluation and inference.

    model = build_model(cfg, device)                 # network + predictor (body model) + how people are picked
    out = forward_step(model.net, model.predictor, images, device, model.picker,
                       centers=batch["centers"], person_mask=batch["person_mask"])   # training: GT-matched
    out = forward_step(model.net, model.predictor, images, device, model.picker)     # inference: every peak

`out` is one dict: the maps (``center_map`` (B,1,C,C), ``params_maps`` (B,145,C,C)) and the people
(`PersonOutputs`: ``batch_idx``, ``person_idx``, ``center_yx``, ``score``, ``cam``, ..., ``pj2d``; N rows).
Evaluation matches with the protocol's settings through `evaluate_people` (misses and false positives too).

The steps: `run_network` (autocast, channels_last) -> `parser.parse` / `parser.match_to_gt` (centre parsing
and the one matcher) -> `parser.sample_params` -> `Predictor` (SMPL, projection).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from romp_hydra.body.smpl import build_body_model
from romp_hydra.config.schema import PRECISIONS
from romp_hydra.models.build import build
from romp_hydra.models.parser import (
    MATCH_MODES,
    MatchResult,
    Selection,
    match_gt_to_predictions,
    match_to_gt,
    parse,
    sample_params,
)
from romp_hydra.models.predictor import Predictor

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision that runs: ``mixed`` -> bf16 (CUDA with bf16) or fp16 (older CUDA) or fp32 (CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "mixed":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_context(device: torch.device, precision: str):
    """bf16/fp16 autocast on CUDA; fp32 (no autocast) everywhere else."""
    if device.type == "cuda" and precision in AMP_DTYPES:
        return torch.autocast(device_type="cuda", dtype=AMP_DTYPES[precision])
    return nullcontext()


def run_network(net: nn.Module, images: Tensor, device: torch.device, precision: str = "fp32",
                channels_last: bool = False) -> dict[str, Tensor]:
    """The network's maps, in fp32 whatever the autocast precision (parsing, SMPL and the losses need it:
    SVD and the focal log are not fp16-safe). ``precision`` may be ``mixed`` (see `resolve_precision`)."""
    precision = resolve_precision(precision, device)
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast_context(device, precision):
        maps = net(images)
    return {key: value.float() for key, value in maps.items()}


@dataclass(frozen=True)
class PeoplePicker:
    """How people are picked from the maps (``cfg.model``: matching, center_threshold, max_detections)."""

    matching: str
    center_threshold: float
    max_detections: int

    def __post_init__(self) -> None:
        if self.matching not in MATCH_MODES:
            raise ValueError(f"model.matching={self.matching!r}; use one of {', '.join(MATCH_MODES)}")

    def select(self, center_map: Tensor, centers: Tensor | None = None,
               person_mask: Tensor | None = None) -> Selection:
        """GT-matched cells when `centers` / `person_mask` are given (training), else every detected peak."""
        if centers is None:
            return parse(center_map, threshold=self.center_threshold, top_k=self.max_detections)
        return match_to_gt(center_map, centers, person_mask, mode=self.matching,
                           threshold=self.center_threshold, top_k=self.max_detections)


def people_at(maps: Mapping[str, Tensor], predictor: Predictor, selection: Selection,
              vertices: bool = True) -> dict[str, Tensor]:
    """The one output dict: the maps and the people read at `selection`'s cells (meshes unless `vertices` is
    False)."""
    people = predictor(sample_params(maps["params_maps"], selection), selection, vertices=vertices)
    return {**maps, **people}


def forward_step(net: nn.Module, predictor: Predictor, images: Tensor, device: torch.device,
                 picker: PeoplePicker, *, centers: Tensor | None = None, person_mask: Tensor | None = None,
                 precision: str = "fp32", channels_last: bool = False, vertices: bool = True) -> dict[str, Tensor]:
    """Network -> people: matched to the GT when `centers` / `person_mask` are given, else every peak
    (`vertices`: see `Predictor.forward`)."""
    maps = run_network(net, images, device, precision, channels_last)
    return people_at(maps, predictor, picker.select(maps["center_map"], centers, person_mask), vertices)


def heads_in_graph(output: Mapping[str, Tensor]) -> Tensor:
    """An exact 0 that depends on every head: added to the loss, every parameter gets a gradient even on a
    step where nothing was matched (DDP with find_unused_parameters=False needs that; ROMP supervises a dummy
    person instead). One cell of each map, so it costs nothing; non-finite values there cannot leak in."""
    cells = torch.cat([output["center_map"][:1, :, :1, :1].flatten(), output["params_maps"][:1, :, :1, :1].flatten()])
    return (cells.nan_to_num(0.0, 0.0, 0.0) * 0.0).sum()


@torch.no_grad()
def evaluate_people(maps: Mapping[str, Tensor], predictor: Predictor, centers: Tensor, person_mask: Tensor, *,
                    matching: str, center_threshold: float, top_k: int,
                    one_to_one: bool = False) -> tuple[dict[str, Tensor] | None, MatchResult, Selection]:
    """Evaluation's pick: every detected peak, each GT person matched to one (the protocol's settings).

    Returns (output dict of the matched people, or None when nobody is matched; the match with misses and
    false positives; the detections).
    """
    center_map = maps["center_map"]
    detections = parse(center_map, threshold=center_threshold, top_k=top_k)
    match = match_gt_to_predictions(centers, detections.batch_idx, detections.center_yx, center_map.shape[-1],
                                    mode=matching, one_to_one=one_to_one, person_mask=person_mask)
    if match.num_matched == 0:
        return None, match, detections
    device = center_map.device
    images, cells = match.batch_idx.to(device), match.sample_yx.to(device)
    selection = Selection(batch_idx=images, person_idx=match.person_idx.to(device), center_yx=cells,
                          score=center_map[images, 0, cells[:, 0], cells[:, 1]])
    return people_at(maps, predictor, selection), match, detections


class Model(NamedTuple):
    """What `build_model` returns."""

    net: nn.Module
    predictor: Predictor
    picker: PeoplePicker


def build_model(cfg: Any, device: torch.device | str = "cpu") -> Model:
    """The network (``cfg.backbone``, ``cfg.model``; backbone pretraining loaded), the predictor with its body
    model (``cfg.body_model``) and the people picker (``cfg.model``), on `device`. Whole-network weights
    (fine-tuning, resume, evaluation) are loaded by the caller (`models.checkpoint.load_network_weights`)."""
    body = cfg.body_model
    body_model = build_body_model(body.kind, body.model_dir, gender=body.gender, root_align=False)
    predictor = Predictor(body_model, root_align=bool(body.root_align)).to(device)
    net = build(cfg).to(device)
    picker = PeoplePicker(matching=str(cfg.model.matching), center_threshold=float(cfg.model.center_threshold),
                          max_detections=int(cfg.model.max_detections))
    return Model(net, predictor, picker)
