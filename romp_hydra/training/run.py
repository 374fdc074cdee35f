"""`train(cfg)`: build everything from the validated config and run the loop (called by romp_hydra.train)."""
from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from romp_hydra.body.smpl import build_body_model
from romp_hydra.evaluation.runner import Validator
from romp_hydra.losses.criterion import Criterion
from romp_hydra.models import build as build_network
from romp_hydra.models.checkpoint import load_network_weights
from romp_hydra.models.predictor import Predictor
from romp_hydra.tracking import build_tracker
from romp_hydra.training.checkpointing import find_resume_checkpoint, load_checkpoint
from romp_hydra.training.distributed import DistInfo, cleanup_distributed, init_distributed
from romp_hydra.training.loop import LoopSettings, Trainer, TrainingDiverged
from romp_hydra.viz.panels import TrainingPictures

log = logging.getLogger(__name__)

# Objective handed to sweepers when a job has no finite metric (Optuna crashes on NaN, see ecosystem notes).
FAILED_OBJECTIVE = 1.0e6


def select_device(name: str, dist: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist is not None and dist.enabled:
        name = f"cuda:{dist.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but CUDA is not available here; use trainer.device=cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, rank: int = 0) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def run_directory(cfg: DictConfig) -> Path:
    """Hydra's output directory for this job (cfg.paths.output_dir, which defaults to it)."""
    try:
        return Path(cfg.paths.output_dir)
    except Exception:  # composed without @hydra.main (tests, notebooks): no runtime output dir
        return Path(HydraConfig.get().run.dir)


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
                            (device_name == "auto" and torch.cuda.is_available()) else "cpu")
    device = select_device(device_name, dist)
    seed_everything(int(cfg.seed), dist.rank)

    run_dir = run_directory(cfg)
    resume_ckpt = None
    if cfg.resume not in (False, None, "false", "False"):
        resume_ckpt = find_resume_checkpoint(cfg.resume, Path(cfg.paths.log_dir) / cfg.task_name / "runs")
        run_dir = resume_ckpt.parent.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    _attach_log_file(run_dir, cfg.task_name)
    log.info("run directory: %s | device: %s | world size %d", run_dir, device, dist.world_size)

    body_model = build_body_model(cfg.body_model.kind, cfg.body_model.model_dir, gender=cfg.body_model.gender,
                                  root_align=False).to(device)
    predictor = Predictor(body_model, root_align=bool(cfg.body_model.root_align)).to(device)
    net = build_network(cfg).to(device)
    if cfg.ckpt_path and resume_ckpt is None:
        report = load_network_weights(net, cfg.ckpt_path)
        log.info("fine-tuning from %s: %s", cfg.ckpt_path, report.summary())
    if device.type == "cuda" and cfg.trainer.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False)
    criterion = Criterion(**{k: v for k, v in OmegaConf.to_container(cfg.loss, resolve=True).items()
                             if k != "_target_"}).to(device)
    optimizer = hydra_instantiate(cfg.optim.optimizer)(params=[p for p in net.parameters() if p.requires_grad])
    scheduler = hydra_instantiate(cfg.optim.scheduler)(optimizer=optimizer) if cfg.optim.get("scheduler") else None

    from romp_hydra.data.loader import build_train_loader  # data imports OpenCV; keep it after the model

    loader = build_train_loader(cfg, rank=dist.rank, world_size=dist.world_size)

    tracker = build_tracker(cfg, rank=dist.rank)
    checkpoint_state = load_checkpoint(resume_ckpt) if resume_ckpt is not None else None
    pictures = TrainingPictures(run_dir, tracker, faces=body_model.faces.cpu().numpy(),
                                input_size=int(cfg.data.input_size))
    validator = Validator.from_config(cfg, net, predictor, device, pictures=pictures) if cfg.get("val") else None

    settings = LoopSettings(
        epochs=int(cfg.trainer.epochs), max_steps=cfg.trainer.max_steps, precision=cfg.trainer.precision,
        channels_last=bool(cfg.trainer.channels_last), grad_clip_norm=cfg.trainer.grad_clip_norm,
        accumulate_steps=int(cfg.trainer.accumulate_steps), log_every_steps=int(cfg.trainer.log_every_steps),
        vis_every_steps=int(cfg.trainer.vis_every_steps), val_every_steps=int(cfg.trainer.val_every_steps),
        ckpt_every_steps=int(cfg.trainer.ckpt_every_steps), max_consecutive_nan=int(cfg.trainer.max_consecutive_nan),
        match_mode=cfg.model.get("matching", "nearest_peak"), center_threshold=float(cfg.model.get("center_threshold", 0.2)),
        top_k=int(cfg.model.get("max_detections", 64)),
        val_metric=cfg.val.metric if cfg.get("val") else None, val_mode=cfg.val.mode if cfg.get("val") else "min",
        val_at_start=bool(cfg.trainer.val_at_start),
    )
    trainer = Trainer(net, predictor, criterion, optimizer, scheduler, loader, device, settings, run_dir, tracker, dist,
                      validate=validator, draw_train=pictures.draw_train,
                      checkpoint_extra={"config": OmegaConf.to_container(cfg, resolve=False)})
    if checkpoint_state is not None:
        trainer.load_state_dict(checkpoint_state)

    # The run opens only once everything is built, so a failure above leaves no run stuck in RUNNING.
    trainer.state.tracker_run_id = tracker.start(cfg, run_dir, resume_run_id=trainer.state.tracker_run_id)
    status = "FAILED"
    try:
        final = trainer.fit()
        status = "KILLED" if trainer.interrupted else "FINISHED"
    except TrainingDiverged as err:
        log.error("training diverged: %s", err)
        trainer.save()
        tracker.set_tags({"failure": str(err)[:500]})
        raise
    finally:
        tracker.log_metrics({"final/step": float(trainer.state.step), "final/nan_steps": float(trainer.state.nan_steps)},
                            step=trainer.state.step)
        tracker.finish(status)
        cleanup_distributed(dist)
    return objective(final, settings.val_metric, trainer)


def objective(final: dict, metric: str | None, trainer: Trainer) -> float | None:
    """What a sweeper minimises: the best validation metric, never NaN."""
    if metric is None:
        return None
    value = trainer.state.best_value if trainer.state.best_value is not None else final.get(metric)
    if value is None or not math.isfinite(value):
        worst = FAILED_OBJECTIVE if trainer.settings.val_mode == "min" else -FAILED_OBJECTIVE
        log.warning("no finite %s was measured (e.g. nothing detected yet); the sweep objective is %g", metric, worst)
        return worst
    return float(value)


def hydra_instantiate(node):
    from hydra.utils import instantiate

    return instantiate(node)
