"""`train(cfg)`: build everything from the validated config and run the loop (called by romp_hydra.train)."""
from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from romp_hydra.config import normalized_weights
from romp_hydra.config.runtime import run_directory, select_device
from romp_hydra.config.schema import TrainerConfig
from romp_hydra.models.backbones.pretrained import initialisation_tag
from romp_hydra.models.checkpoint import load_network_weights
from romp_hydra.models.model import build_model
from romp_hydra.tracking import build_tracker
from romp_hydra.training.checkpointing import find_resume_checkpoint, load_checkpoint
from romp_hydra.training.distributed import (
    agree_on_run_dir,
    barrier,
    cleanup_distributed,
    describe_batch,
    exit_failed_rank,
    fail_together,
    init_distributed,
    unwrap,
    wrap_network,
)
from romp_hydra.training.loop import Trainer, TrainingDiverged
from romp_hydra.training.validation import Validator
from romp_hydra.viz.panels import TrainingPictures

log = logging.getLogger(__name__)

# Objective handed to sweepers when a job has no finite metric (Optuna crashes on NaN, see ecosystem notes).
FAILED_OBJECTIVE = 1.0e6


def seed_everything(seed: int, rank: int = 0) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def _attach_log_file(run_dir: Path, task_name: str) -> None:
    """Hydra logs into the new run dir; a resumed run also appends to the original run's log (ROMP's log/)."""
    path = run_dir / f"{task_name}.log"
    root = logging.getLogger()
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)


def train(cfg: DictConfig) -> float | None:
    """Train; returns the objective for sweepers (the validation metric, lower is better) or None."""
    device_name = cfg.trainer.device
    dist = init_distributed("cuda" if device_name.startswith("cuda") or
                            (device_name == "auto" and torch.cuda.is_available()) else "cpu",
                            timeout_s=float(cfg.trainer.dist_timeout_s))
    device = select_device(device_name, "trainer.device", dist.local_rank if dist.enabled else None)
    seed_everything(int(cfg.seed), dist.rank)

    hydra_dir = run_dir = run_directory(cfg)
    resume_ckpt = None
    if cfg.resume not in (False, None, "false", "False"):
        resume_ckpt = find_resume_checkpoint(cfg.resume, Path(cfg.paths.log_dir) / cfg.task_name / "runs")
        run_dir = resume_ckpt.parent.parent
    run_dir = agree_on_run_dir(hydra_dir, run_dir, dist)  # rank 0's, on every rank
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        _attach_log_file(run_dir, cfg.task_name)
    log.info("run directory: %s | device: %s | world size %d", run_dir, device, dist.world_size)
    log.info(describe_batch(int(cfg.data.batch_size), dist, int(cfg.trainer.accumulate_steps)))

    net, predictor, picker = build_model(cfg, device)
    if cfg.ckpt_path and resume_ckpt is None:
        report = load_network_weights(net, cfg.ckpt_path)
        log.info("fine-tuning from %s: %s", cfg.ckpt_path, report.summary())
    if cfg.trainer.channels_last:  # faster on CPU too (oneDNN): 1.3x for a train step of the tiny HRNet
        net = net.to(memory_format=torch.channels_last)
    if cfg.trainer.compile:
        net.compile()  # in place: the module, its state_dict keys and DDP wrapping stay as they are
        log.info("trainer.compile=true: the network runs under torch.compile (the first steps compile it)")
    net = wrap_network(net, dist, device, sync_batchnorm=bool(cfg.trainer.sync_batchnorm))
    criterion = instantiate(cfg.loss, _convert_="all").to(device)
    optimizer = instantiate(cfg.optim.optimizer)(params=[p for p in net.parameters() if p.requires_grad])
    scheduler = instantiate(cfg.optim.scheduler)(optimizer=optimizer) if cfg.optim.get("scheduler") else None

    from romp_hydra.data.loader import build_train_loader  # data imports OpenCV; keep it after the model

    loader = build_train_loader(cfg, rank=dist.rank, world_size=dist.world_size)

    tracker = build_tracker(cfg, rank=dist.rank)
    checkpoint_state = load_checkpoint(resume_ckpt) if resume_ckpt is not None else None
    pictures = TrainingPictures(run_dir, tracker, faces=predictor.body_model.faces.cpu().numpy(),
                                input_size=int(cfg.data.input_size))
    # Rank 0 validates the unwrapped network: DDP's forward would wait for the other ranks.
    validator = Validator.from_config(cfg, unwrap(net), predictor, device, pictures=pictures) if cfg.get("val") else None

    settings: TrainerConfig = OmegaConf.to_object(cfg.trainer)  # the schema object: types checked, one source
    trainer = Trainer(net, predictor, picker, criterion, optimizer, scheduler, loader, device, settings, run_dir,
                      tracker, dist,
                      validate=validator, draw_train=pictures.draw_train,
                      checkpoint_extra={"config": OmegaConf.to_container(cfg, resolve=False)})
    if checkpoint_state is not None:
        trainer.load_state_dict(checkpoint_state)

    # The run opens only once everything is built, so a failure above leaves no run stuck in RUNNING.
    trainer.state.tracker_run_id = tracker.start(cfg, run_dir, resume_run_id=trainer.state.tracker_run_id)
    if resume_ckpt is None:  # a resumed run keeps the tag of how it started
        init = initialisation_tag(cfg.backbone.get("pretrained"), cfg.ckpt_path)
        log.info("initialisation: %s", init)
        tracker.set_tags({"init": init})
    # The weights the sampler draws with (`mixture.<member>`): the ones that compare across sweep jobs.
    tracker.log_params({"mixture": normalized_weights(cfg.sampling, list(cfg.dataset.members))})
    status = "FAILED"
    try:
        with fail_together(dist):  # an error on any rank ends every rank, with that rank's message
            final = trainer.fit()
            barrier(dist)  # leave together (rank 0 may still be validating)
        status = "KILLED" if trainer.interrupted else "FINISHED"
    except TrainingDiverged as err:
        log.error("training diverged: %s", err)
        trainer.save()
        tracker.set_tags({"failure": str(err)[:500]})
        raise
    except Exception as err:
        tracker.set_tags({"failure": f"{type(err).__name__}: {err}"[:500]})
        raise
    finally:
        tracker.log_metrics({"final/step": float(trainer.state.step), "final/nan_steps": float(trainer.state.nan_steps)},
                            step=trainer.state.step)
        tracker.finish(status)
        if status == "FAILED" and dist.enabled:
            exit_failed_rank(dist)
        cleanup_distributed(dist)
    # Only rank 0 validates, so only its objective means anything (the others would warn of no metric).
    return objective(final, trainer.val_metric, trainer) if dist.is_main else None


def objective(final: dict, metric: str | None, trainer: Trainer) -> float | None:
    """What a sweeper minimises: the best validation metric, never NaN."""
    if metric is None:
        return None
    value = trainer.state.best_value if trainer.state.best_value is not None else final.get(metric)
    if value is None or not math.isfinite(value):
        worst = FAILED_OBJECTIVE if trainer.val_mode == "min" else -FAILED_OBJECTIVE
        log.warning("no finite %s was measured (e.g. nothing detected yet); the sweep objective is %g", metric, worst)
        return worst
    return float(value)
