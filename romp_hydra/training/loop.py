"""The training loop: optimise, guard against NaN, log, draw, validate, checkpoint, and resume exactly."""
from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from romp_hydra.batch import TARGET_KEYS
from romp_hydra.config.schema import TrainerConfig
from romp_hydra.losses.criterion import Criterion, gather_matched_targets
from romp_hydra.models.model import PeoplePicker, forward_step, heads_in_graph, resolve_precision
from romp_hydra.models.predictor import Predictor
from romp_hydra.training.checkpointing import (
    BEST_NAME,
    LAST_NAME,
    atomic_torch_save,
    capture_rng_state,
    restore_rng_state,
)
from romp_hydra.training.distributed import DistInfo, all_reduce_mean

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses: training cannot continue meaningfully."""


class ValidationInterrupted(Exception):
    """A stop signal arrived during a validation: the validation is abandoned so the checkpoint comes first."""


@dataclass
class LoopState:
    """Everything besides module/optimiser state that a resumed run needs to continue the same sequence."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0
    nan_steps: int = 0
    consecutive_nan: int = 0
    best_value: float | None = None
    best_step: int | None = None
    last_val: dict = field(default_factory=dict)
    tracker_run_id: str | None = None


class Trainer:
    """Runs ROMP's optimisation. Validation and pictures are injected callables so the loop stays readable.

    Args:
        net: the ROMP network (maps from images).
        predictor: parameter vectors -> people (holds the body model).
        picker: how people are picked from the maps (`cfg.model`).
        criterion: the weighted loss.
        optimizer, scheduler: built from `optim` (the scheduler steps once per epoch, as ROMP's).
        loader: a `MixtureLoader`: yields collated batches and advances its `MixtureSampler`, whose position is
            checkpointed.
        device, run_dir, tracker, dist: where.
        settings: ``cfg.trainer`` as its schema object (`config.schema.TrainerConfig`).
        validate: `validate(step) -> dict[str, float]` (metric name -> value), or None; its ``metric`` and
            ``mode`` attributes (``cfg.val.metric`` / ``cfg.val.mode``) choose the best checkpoint.
        draw_train: `draw_train(batch, maps, people, step) -> None` saves/logs pictures, or None.
    """

    def __init__(self, net: nn.Module, predictor: Predictor, picker: PeoplePicker, criterion: Criterion, optimizer,
                 scheduler, loader, device: torch.device, settings: TrainerConfig, run_dir: Path, tracker,
                 dist: DistInfo,
                 validate: Callable[[int], dict] | None = None,
                 draw_train: Callable[..., None] | None = None,
                 checkpoint_extra: dict | None = None):
        self.net, self.predictor, self.picker, self.criterion = net, predictor, picker, criterion
        self.optimizer, self.scheduler, self.loader = optimizer, scheduler, loader
        self.device, self.settings, self.run_dir = device, settings, Path(run_dir)
        self.tracker, self.dist = tracker, dist
        self.validate, self.draw_train = validate, draw_train
        self.val_metric: str | None = getattr(validate, "metric", None)
        self.val_mode: str = getattr(validate, "mode", "min")
        self.checkpoint_extra = checkpoint_extra or {}
        self.state = LoopState()
        # `mixed`: bf16 where the GPU has it, fp16 with a loss scaler otherwise; fp32 on the CPU.
        self.precision = resolve_precision(settings.precision, device)
        if self.precision != settings.precision:
            log.info("trainer.precision=%s runs as %s on %s", settings.precision, self.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and self.precision == "fp16")
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._stop_signal: int | None = None
        self._validating = False

    # -- checkpoints --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        net = self.net.module if hasattr(self.net, "module") else self.net
        return {
            "model": net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "sampler": self.loader.sampler.state_dict(),
            "rng": capture_rng_state(),
            "loop": vars(self.state).copy(),
            **self.checkpoint_extra,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        net = self.net.module if hasattr(self.net, "module") else self.net
        net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.loader.sampler.load_state_dict(ckpt["sampler"])
        restore_rng_state(ckpt["rng"])
        self.state = LoopState(**ckpt["loop"])
        log.info("resumed at step %d (epoch %d, %d samples into it)", self.state.step, self.state.epoch,
                 ckpt["sampler"]["position"])

    def save(self, name: str = LAST_NAME) -> Path | None:
        if not self.dist.is_main:
            return None
        path = atomic_torch_save(self.state_dict(), self.ckpt_dir / name)
        log.info("saved checkpoint %s (step %d)", path, self.state.step)
        return path

    # -- signals -------------------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict:
        def request_stop(signum, _frame):
            if self._stop_signal is not None:  # second signal: stop immediately
                raise KeyboardInterrupt
            self._stop_signal = signum
            if self._validating:  # the checkpoint must not wait for a long validation
                log.warning("received %s during validation: abandoning it, saving a checkpoint, then stopping",
                            signal.Signals(signum).name)
                raise ValidationInterrupted
            log.warning("received %s: saving a checkpoint at the end of this step, then stopping",
                        signal.Signals(signum).name)

        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, request_stop)
            except ValueError:  # not the main thread (e.g. some launchers): keep the default behaviour
                pass
        return previous

    # -- one step ------------------------------------------------------------------------------------------------
    def _forward_loss(self, batch: dict) -> tuple[torch.Tensor, dict, dict]:
        """The loss of one batch and the model's output dict (maps and GT-matched people)."""
        targets = {key: batch[key].to(self.device, non_blocking=True) for key in TARGET_KEYS}
        output = forward_step(self.net, self.predictor, batch["image"], self.device, self.picker,
                              centers=targets["centers"], person_mask=targets["person_mask"],
                              precision=self.precision, channels_last=self.settings.channels_last)
        matched = gather_matched_targets(targets, output["batch_idx"], output["person_idx"])
        total, terms = self.criterion(output, matched, output["center_map"], targets["centermap"],
                                      targets["all_persons_labelled"].bool())
        # Every head stays in the graph even when nothing was matched (DDP, find_unused_parameters=False).
        return total + heads_in_graph(output), terms, output

    def _optimizer_step(self) -> None:
        if self.settings.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _diagnose_nan(self, terms: dict) -> str:
        bad = [name for name, value in terms.items() if not math.isfinite(float(value))]
        lr = self.optimizer.param_groups[0]["lr"]
        return (f"{self.state.consecutive_nan} consecutive steps had a non-finite loss (terms: {', '.join(bad) or 'total'};"
                f" lr={lr:g}, step {self.state.step}, {self.state.nan_steps} NaN steps in total). Likely causes: a "
                "learning rate too high for this batch size, fp16 overflow (try trainer.precision=bf16 or fp32), or "
                "corrupt annotations (run python -m romp_hydra.data.check on the mixture).")

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train until `epochs` or `max_steps`; returns the last validation metrics (may be empty)."""
        s = self.settings
        previous_handlers = self._install_signal_handlers()
        sampler = self.loader.sampler
        total_steps = s.max_steps if s.max_steps is not None else None
        progress = tqdm(total=total_steps, initial=self.state.step, disable=not self.dist.is_main,
                        dynamic_ncols=True, desc="train", mininterval=1.0)
        window = {"loss": 0.0, "count": 0, "samples": 0, "start": time.perf_counter(), "terms": {}}
        stopped = False
        try:
            if self.validate is not None and s.val_at_start and self.state.step == 0:
                self._run_validation()
            self.net.train()
            while self.state.epoch < s.epochs and not stopped:
                sampler.set_epoch(self.state.epoch)
                micro = 0
                for batch in self.loader:
                    batch_size = int(batch["image"].shape[0])
                    total, terms, output = self._forward_loss(batch)  # the loader advances the sampler
                    # The criterion leaves non-finite terms out of the total; such a step is still skipped.
                    finite = bool(torch.isfinite(total)) and all(math.isfinite(float(v)) for v in terms.values())
                    if not finite:
                        self.state.nan_steps += 1
                        self.state.consecutive_nan += 1
                        self.optimizer.zero_grad(set_to_none=True)
                        micro = 0
                        log.warning("non-finite loss at step %d: %s", self.state.step,
                                    {k: float(v) for k, v in terms.items()})
                        if self.state.consecutive_nan >= s.max_consecutive_nan:
                            raise TrainingDiverged(self._diagnose_nan(terms))
                        continue
                    self.state.consecutive_nan = 0
                    self.scaler.scale(total / s.accumulate_steps).backward()
                    micro += 1
                    window["loss"] += float(total.detach())
                    window["count"] += 1
                    window["samples"] += batch_size * self.dist.world_size
                    for name, value in terms.items():
                        window["terms"][name] = window["terms"].get(name, 0.0) + float(value)
                    if micro < s.accumulate_steps:
                        continue
                    micro = 0
                    self._optimizer_step()
                    self.state.step += 1
                    progress.update(1)
                    step = self.state.step

                    if step % s.log_every_steps == 0 or step == 1:
                        self._log_window(window, progress)
                    if self.draw_train is not None and self.dist.is_main and (step % s.vis_every_steps == 0 or step == 1):
                        self.draw_train(batch, output, output, step)
                    # A checkpoint comes before a validation, so a failing validation loses no steps.
                    if step % s.ckpt_every_steps == 0:
                        self.save()
                    if self._stop_signal is not None or (s.max_steps is not None and step >= s.max_steps):
                        stopped = True
                        break
                    if self.validate is not None and step % s.val_every_steps == 0:
                        self._run_validation()
                        if self._stop_signal is not None:  # arrived during the validation
                            stopped = True
                            break
                else:
                    # The epoch ran to its end: ROMP steps its MultiStepLR once per epoch.
                    self.state.epoch += 1
                    if self.scheduler is not None:
                        self.scheduler.step()
            if window["count"]:
                self._log_window(window, progress)
            # Save first: a stop signal must not wait for a validation, and a validation that fails must not
            # lose the steps since the last periodic checkpoint.
            self.save()
            if (self.validate is not None and self._stop_signal is None
                    and self.state.last_val.get("step") != self.state.step):
                self._run_validation()
                self.save()  # with the final validation's metrics (and best value) in the loop state
        finally:
            progress.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        return {k: v for k, v in self.state.last_val.items() if k != "step"}

    @property
    def interrupted(self) -> bool:
        return self._stop_signal is not None

    def _log_window(self, window: dict, progress) -> None:
        count = max(window["count"], 1)
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        loss = all_reduce_mean(torch.tensor(window["loss"] / count), self.dist).item()
        metrics = {"train/loss": loss, "train/samples_per_s": window["samples"] / elapsed,
                   "train/lr": self.optimizer.param_groups[0]["lr"], "train/nan_steps": float(self.state.nan_steps)}
        metrics.update({f"train/{name}": value / count for name, value in window["terms"].items()})
        if hasattr(self.loader, "data_metrics"):  # skipped (unreadable / malformed) samples so far
            metrics.update(self.loader.data_metrics())
        progress.set_postfix(loss=f"{loss:.2f}", sps=f"{metrics['train/samples_per_s']:.1f}", refresh=False)
        if self.dist.is_main:
            terms = " ".join(f"{name}={value / count:.3f}" for name, value in window["terms"].items())
            log.info("epoch %d step %d | loss %.3f | %s | lr %.2e | %.1f samples/s", self.state.epoch,
                     self.state.step, loss, terms, metrics["train/lr"], metrics["train/samples_per_s"])
            self.tracker.log_metrics(metrics, step=self.state.step)
        window.update(loss=0.0, count=0, samples=0, start=time.perf_counter(), terms={})

    def _run_validation(self) -> None:
        if not self.dist.is_main:
            return
        self.net.eval()
        self._validating = True
        try:
            metrics = self.validate(self.state.step)
        except ValidationInterrupted:
            return
        finally:
            self._validating = False
            self.net.train()
        self.state.last_val = {**metrics, "step": self.state.step}
        self.tracker.log_metrics(metrics, step=self.state.step)
        key = self.val_metric
        if key is None or key not in metrics or not math.isfinite(metrics[key]):
            return
        value = metrics[key]
        better = (self.state.best_value is None or
                  (value < self.state.best_value if self.val_mode == "min" else value > self.state.best_value))
        if better:
            self.state.best_value, self.state.best_step = value, self.state.step
            self.tracker.log_metrics({f"best/{key}": value}, step=self.state.step)
            self.save(BEST_NAME)
