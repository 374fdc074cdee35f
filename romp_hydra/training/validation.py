"""Validation during training: the evaluation protocol of ``cfg.val`` run on a held-out set every so often."""
from __future__ import annotations

import logging
import math

import torch
from torch import nn

from romp_hydra.config.errors import ConfigError
from romp_hydra.evaluation.baseline import MeanBaseline
from romp_hydra.evaluation.protocols import Protocol, protocol_from_config
from romp_hydra.evaluation.runner import ChainedLoaders, evaluate_batches
from romp_hydra.models.model import resolve_precision
from romp_hydra.models.predictor import Predictor
from romp_hydra.viz.curves import LearningCurve

log = logging.getLogger(__name__)


class Validator:
    """Validation during training: `validator(step) -> {"val/<metric>": value, ...}` on a held-out set."""

    def __init__(
        self,
        loader,
        net: nn.Module,
        predictor: Predictor,
        protocol: Protocol,
        device: torch.device,
        precision: str = "fp32",
        max_batches: int | None = None,
        pictures=None,
        num_pictures: int = 4,
        metric: str | None = None,
        mode: str = "min",
        baseline: MeanBaseline | None = None,
        curve: LearningCurve | None = None,
    ):
        self.loader, self.net, self.predictor, self.protocol = loader, net, predictor, protocol
        self.device, self.precision, self.max_batches = device, precision, max_batches
        self.pictures, self.num_pictures = pictures, num_pictures
        # The metric that picks the best checkpoint (and the sweep objective), and whether lower is better.
        self.metric, self.mode = metric, mode
        # The mean person's errors, reported beside the model's (val.baseline), and the run's learning curve.
        self.baseline, self.curve = baseline, curve

    @classmethod
    def from_config(
        cls, cfg, net: nn.Module, predictor: Predictor, device: torch.device, pictures=None
    ) -> Validator:
        """From ``cfg.val`` (conf/val/*.yaml): its dataset members, protocol, max_batches, num_pictures, metric
        and mode; the precision is training's."""
        from romp_hydra.data.loader import build_eval_loader

        protocol = protocol_from_config(cfg.val.get("protocol"), where="val.protocol")
        if protocol.kind != "mesh3d":
            raise ConfigError(
                "val.protocol.kind",
                protocol.kind,
                "validation during training scores 3D people",
                "pick a 3D protocol for val (e.g. val=pw3d or val=synthetic); evaluate keypoint AP "
                "with python -m romp_hydra.evaluate",
            )
        members = cfg.val.dataset.members
        loader = ChainedLoaders([build_eval_loader(cfg, members[key], key=key) for key in members])
        return cls(
            loader,
            net,
            predictor,
            protocol,
            device,
            precision=resolve_precision(cfg.trainer.precision, device),
            max_batches=cfg.val.get("max_batches"),
            pictures=pictures,
            num_pictures=int(cfg.val.get("num_pictures", 4)),
            metric=cfg.val.get("metric"),
            mode=cfg.val.get("mode", "min"),
            baseline=MeanBaseline.from_config(cfg),
            curve=(LearningCurve(pictures.run_dir, pictures.tracker, cfg.get("task_name", ""))
                   if pictures is not None else None),
        )

    def __call__(self, step: int) -> dict[str, float]:
        drawn = {"done": False}

        def draw_first_batch(batch, maps, people):
            if self.pictures is not None and not drawn["done"]:
                self.pictures.draw_val(batch, maps, people, step, limit=self.num_pictures)
                drawn["done"] = True

        result = evaluate_batches(
            self.net,
            self.predictor,
            self.loader,
            self.protocol,
            self.device,
            self.precision,
            self.max_batches,
            on_batch=draw_first_batch,
        )
        metrics = {
            k: v for k, v in result.metrics("val/").items() if isinstance(v, float) and not math.isnan(v)
        }
        if self.baseline is not None:
            metrics.update(self.baseline.metrics(self.loader, self.predictor, self.protocol, self.device))
        if self.curve is not None:
            self.curve.update(step, metrics)
        log.info("validation at step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return metrics
