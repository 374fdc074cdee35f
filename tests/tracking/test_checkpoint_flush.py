"""A checkpoint flushes the tracker (issue 12, point 5): metrics logged before it are in the store when
`save()`
returns, so a run killed (-9) after that checkpoint and resumed from it has no gap in MLflow."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from romp_hydra.tracking.mlflow_tracker import MLflowTracker
from tests.training.test_train import TINY


def test_flush_writes_what_was_queued(tiny_cfg, tracking_uri, tmp_path):
    tracker = MLflowTracker(tracking_uri, "tests", flush_interval_s=3600.0)  # only a flush writes
    run_id = tracker.start(tiny_cfg, tmp_path / "run")
    tracker.log_metrics({"train/loss": 2.0}, step=7)
    tracker.flush()
    history = MlflowClient(tracking_uri).get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(7, 2.0)]
    tracker.finish()


def test_checkpoint_save_flushes_the_tracker(compose_cfg, tracking_uri, tmp_path):
    from hydra.utils import instantiate

    from romp_hydra.models.model import build_model
    from romp_hydra.training.distributed import DistInfo
    from romp_hydra.training.loop import Trainer

    cfg = compose_cfg([*TINY, "logger=mlflow"])
    net, predictor, picker = build_model(cfg)
    loader = SimpleNamespace(sampler=SimpleNamespace(state_dict=lambda: {"position": 0}))
    tracker = MLflowTracker(tracking_uri, "tests", flush_interval_s=3600.0)
    trainer = Trainer(
        net, predictor, picker, instantiate(cfg.loss, _convert_="all"),
        torch.optim.SGD(net.parameters(), lr=0.1),
        None, loader, torch.device("cpu"), OmegaConf.to_object(cfg.trainer), tmp_path, tracker, DistInfo(),
    )
    run_id = tracker.start(cfg, tmp_path / "run")
    tracker.log_metrics({"train/loss": 3.0}, step=99)  # the last window before the checkpoint
    trainer.save()
    history = MlflowClient(tracking_uri).get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(99, 3.0)]  # today: still queued for up to 5 s
    tracker.finish()
