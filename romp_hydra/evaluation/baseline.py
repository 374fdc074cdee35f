"""The mean baseline of a validation set: what predicting the training set's mean person everywhere scores.

``MeanBaseline.from_config(cfg)`` (when ``cfg.val.baseline`` is true) averages the SMPL parameters of the
training mixture; ``baseline.metrics(loader, predictor, protocol, device)`` scores that mean person at every GT
centre of the validation set with the model's own evaluation code (``romp_hydra.metrics.baseline``) and
returns ``{"val/baseline_mpjpe": ..., "val/baseline_pa_mpjpe": ..., "val/baseline_pve": ...}``, computed once
(it does not depend on the network) and reported with every validation.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import torch

from romp_hydra.evaluation.protocols import Protocol
from romp_hydra.evaluation.runner import evaluate_batches
from romp_hydra.metrics.baseline import MeanParamsNetwork, mean_smpl_params, params_from_sources
from romp_hydra.models.predictor import Predictor

log = logging.getLogger(__name__)

__all__ = ["BASELINE_PREFIX", "MeanBaseline"]

BASELINE_PREFIX = "baseline_"


class MeanBaseline:
    """The training set's mean person, scored on a validation set.

    Args:
        mean_params: (76,) mean SMPL pose and shape (``metrics.baseline.mean_smpl_params``).
        centermap_size: the network's map size (``cfg.data.centermap_size``).
    """

    def __init__(self, mean_params: np.ndarray, centermap_size: int):
        self.mean_params = np.asarray(mean_params, dtype=np.float32)
        self.network = MeanParamsNetwork(self.mean_params, centermap_size)
        self._metrics: dict[str, float] | None = None

    @classmethod
    def from_config(cls, cfg) -> MeanBaseline | None:
        """From the training mixture of ``cfg`` when ``cfg.val.baseline`` is true, else None."""
        if not cfg.get("val") or not cfg.val.get("baseline", False):
            return None
        from romp_hydra.data.loader import build_sources  # the sources are cached: this only reads them

        params = params_from_sources(build_sources(cfg.dataset).values())
        log.info("mean baseline: the mean pose and shape of %d training people", len(params))
        return cls(mean_smpl_params(params), int(cfg.data.centermap_size))

    def metrics(
        self, loader, predictor: Predictor, protocol: Protocol, device: torch.device, prefix: str = "val/"
    ) -> dict[str, float]:
        """``{"<prefix>baseline_<metric>": value}`` for the protocol's 3D metrics (computed on the first call).

        Each GT person is read at its own centre cell (``matching="gt_center"``): nobody is missed, so the
        numbers are the floor a model's 3D errors must beat, whatever it detects.
        """
        if self._metrics is None:
            at_gt_centres = dataclasses.replace(protocol, matching="gt_center")
            result = evaluate_batches(self.network.to(device), predictor, loader, at_gt_centres, device)
            self._metrics = {
                f"{prefix}{BASELINE_PREFIX}{name}": float(value)
                for name, value in result.overall.compute().items()
                if math.isfinite(value)
            }
        return dict(self._metrics)
