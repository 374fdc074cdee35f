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
from romp_hydra.training.distributed import DistInfo, StopVote, all_ranks_finite, all_reduce_mean

log = logging.getLogger(__name__)

# A second stop signal within this many seconds is the same request, forwarded by a launcher.
REPEATED_SIGNAL_S = 5.0


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses: training cannot continue meaningfully."""


class ValidationInterrupted(Exception):
    """A stop signal arrived during a validation: the validation is abandoned so the checkpoint comes first."""


class StepMeter:
    """What the loop logs, summed on the device between log intervals (read with one sync at log time).

    Per step: whether it was finite, the total and the terms of finite steps, the samples; across steps the
    NaN counters (total, consecutive) and which terms were non-finite; on the host the time spent waiting for
    the loader.
    """

    def __init__(self, device: torch.device, nan_steps: int = 0, consecutive_nan: int = 0):
        self.device = device
        self.nan_steps = torch.tensor(nan_steps, dtype=torch.int64, device=device)
        self.consecutive_nan = torch.tensor(consecutive_nan, dtype=torch.int64, device=device)
        self.bad: dict[str, torch.Tensor] = {}
        self._reset()

    def _reset(self) -> None:
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self.loss, self.count, self.samples = zero.clone(), zero.clone(), zero.clone()
        self.window_nan = torch.zeros((), dtype=torch.int64, device=self.device)
        self.terms: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.start = time.perf_counter()
        self.data_wait = 0.0

    def timed(self, loader):
        """Iterate `loader`, adding the time blocked in `next()` to the window's data wait."""
        iterator = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.data_wait += time.perf_counter() - start
            yield batch

    def add(self, total: torch.Tensor, terms: dict[str, torch.Tensor], samples: int) -> torch.Tensor:
        """Add one forward pass; returns its on-device finite flag."""
        total = total.detach()
        finite = torch.isfinite(total)
        for value in terms.values():
            finite = finite & torch.isfinite(value)
        weight = finite.to(torch.float64)
        self.loss += torch.where(finite, total.double(), 0.0)
        self.count += weight
        self.samples += weight * samples
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + torch.where(finite, value.double(), 0.0)
            bad = ~torch.isfinite(value)
            self.bad[name] = self.bad[name] | bad if name in self.bad else bad
        not_finite = (~finite).to(torch.int64)
        self.nan_steps += not_finite
        self.window_nan += not_finite
        self.consecutive_nan = (self.consecutive_nan + 1) * not_finite
        self.steps += 1
        return finite

    def counters(self) -> tuple[int, int]:
        """(NaN steps in total, consecutive NaN steps now): one host sync."""
        both = torch.stack([self.nan_steps, self.consecutive_nan]).tolist()
        return int(both[0]), int(both[1])

    def bad_terms(self) -> list[str]:
        """Terms that were non-finite at least once (host sync; for diagnostics)."""
        return [name for name, bad in self.bad.items() if bool(bad)]

    def read_window(self) -> dict[str, Any]:
        """The window's sums as Python numbers (one host sync), then a fresh window."""
        names = list(self.terms)
        values = torch.stack([self.loss, self.count, self.samples, self.window_nan.double(),
                              *(self.terms[name] for name in names)]).tolist()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        window = {"loss": values[0], "count": int(values[1]), "samples": values[2], "nan_steps": int(values[3]),
                  "terms": dict(zip(names, values[4:])), "elapsed": elapsed,
                  "data_wait_share": min(self.data_wait / elapsed, 1.0)}
        self._reset()
        return window


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
        # ROMP's dynamic loss scaler, for fp16 on CUDA only.
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and self.precision == "fp16")
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._stop_signal: int | None = None
        self._signal_time = 0.0
        self._stop_vote = StopVote(dist)  # every rank stops after the same step
        self._stop_agreed = False
        self._validating = False
        self._meter: StepMeter | None = None
        self._data_wait_warnings = 0

    # -- checkpoints --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._read_counters()
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
        self.tracker.flush()  # a run resumed from this checkpoint finds every metric logged before it
        return path

    # -- signals -------------------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict:
        def request_stop(signum, _frame):
            if self._stop_signal is not None and time.monotonic() - self._signal_time < REPEATED_SIGNAL_S:
                return  # launchers (torchrun, srun) forward the signal the whole group already got
            if self._stop_signal is not None:  # second signal: stop immediately
                raise KeyboardInterrupt
            self._stop_signal, self._signal_time = signum, time.monotonic()
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
    def _forward_loss(self, batch: dict, vertices: bool = False) -> tuple[torch.Tensor, dict, dict]:
        """The loss of one batch and the model's output dict (maps and GT-matched people; their meshes only
        with `vertices`: no loss term needs them)."""
        targets = {key: batch[key].to(self.device, non_blocking=True) for key in TARGET_KEYS}
        output = forward_step(self.net, self.predictor, batch["image"], self.device, self.picker,
                              centers=targets["centers"], person_mask=targets["person_mask"],
                              precision=self.precision, channels_last=self.settings.channels_last,
                              vertices=vertices)
        matched = gather_matched_targets(targets, output["batch_idx"], output["person_idx"])
        total, terms = self.criterion(output, matched, output["center_map"], targets["centermap"],
                                      targets["all_persons_labelled"].bool())
        # Every head stays in the graph even when nothing was matched (DDP, find_unused_parameters=False).
        return total + heads_in_graph(output), terms, output

    def _optimizer_step(self, finite: torch.Tensor) -> None:
        """Update the weights unless `finite` (an on-device flag) is False, without waiting for the device:
        the fp16 scaler and the fused optimisers (conf/optim: ``fused: true``) skip on the device; any other
        optimiser needs one host read of the flag."""
        if self.settings.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip_norm)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif getattr(self.optimizer, "_step_supports_amp_scaling", False):
            # The interface torch's GradScaler uses: a fused kernel leaves weights and state as they are.
            self.optimizer.grad_scale, self.optimizer.found_inf = None, (~finite).float()
            self.optimizer.step()
        elif bool(finite):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _diagnose_nan(self, bad_terms: list[str]) -> str:
        lr = self.optimizer.param_groups[0]["lr"]
        return (f"{self.state.consecutive_nan} consecutive steps had a non-finite loss (terms: {', '.join(bad_terms) or 'total'};"
                f" lr={lr:g}, step {self.state.step}, {self.state.nan_steps} NaN steps in total). Likely causes: a "
                "learning rate too high for this batch size, fp16 overflow (try trainer.precision=bf16 or fp32), or "
                "corrupt annotations (run python -m romp_hydra.data.check on the mixture).")

    def _read_counters(self) -> None:
        """Copy the on-device NaN counters into the loop state (one host sync; at log / check / save time)."""
        if self._meter is not None:
            nan_steps, consecutive = self._meter.counters()
            self.state.nan_steps, self.state.consecutive_nan = nan_steps, consecutive

    def _check_divergence(self) -> None:
        """Stop with a diagnosis after `max_consecutive_nan` non-finite steps in a row (read at intervals)."""
        self._read_counters()
        if self.state.consecutive_nan >= self.settings.max_consecutive_nan:
            raise TrainingDiverged(self._diagnose_nan(self._meter.bad_terms()))

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train until `epochs` or `max_steps`; returns the last validation metrics (may be empty)."""
        s = self.settings
        previous_handlers = self._install_signal_handlers()
        sampler = self.loader.sampler
        total_steps = s.max_steps if s.max_steps is not None else None
        progress = tqdm(total=total_steps, initial=self.state.step, disable=not self.dist.is_main,
                        dynamic_ncols=True, desc="train", mininterval=1.0)
        self._meter = meter = StepMeter(self.device, self.state.nan_steps, self.state.consecutive_nan)
        stopped = False
        try:
            if self.validate is not None and s.val_at_start and self.state.step == 0:
                self._run_validation()
            self.net.train()
            while self.state.epoch < s.epochs and not stopped:
                sampler.set_epoch(self.state.epoch)
                micro, step_finite = 0, None
                for batch in meter.timed(self.loader):
                    # (iterating the loader advances the sampler); meshes only for a step that draws them
                    total, terms, output = self._forward_loss(batch, vertices=self._draws(self.state.step + 1))
                    # No host sync: whether the step is finite stays on the device. The criterion leaves
                    # non-finite terms out of the total; such a step is still skipped, by the optimiser on the
                    # device (`_optimizer_step`).
                    finite = meter.add(total, terms, int(batch["image"].shape[0]) * self.dist.world_size)
                    step_finite = finite if step_finite is None or micro == 0 else step_finite & finite
                    if self.scaler.is_enabled():  # NaN gradients: the fp16 scaler's inf check skips the step
                        total = total * torch.where(finite, 1.0, float("nan"))
                    self.scaler.scale(total / s.accumulate_steps).backward()
                    micro += 1
                    if micro < s.accumulate_steps:
                        continue
                    micro = 0
                    # DDP averaged the gradients: a non-finite step on any rank is skipped by all of them.
                    self._optimizer_step(all_ranks_finite(step_finite, self.dist))
                    self.state.step += 1
                    progress.update(1)
                    step = self.state.step

                    if step % s.log_every_steps == 0 or step == 1:
                        self._log_window(meter, progress)
                    elif step % s.max_consecutive_nan == 0:
                        self._check_divergence()
                    if self._draws(step):
                        self.draw_train(batch, output, output, step)
                    # A checkpoint comes before every validation, so a failing validation loses no steps.
                    validating = self.validate is not None and step % s.val_every_steps == 0
                    if step % s.ckpt_every_steps == 0 or validating:
                        self.save()
                    self._stop_agreed = self._stop_vote.vote(self._stop_signal is not None)
                    if self._stop_agreed or (s.max_steps is not None and step >= s.max_steps):
                        stopped = True
                        break
                    if validating:
                        self._run_validation()
                        if self._stop_signal is not None and not self.dist.enabled:  # arrived during it
                            stopped = True
                            break
                else:
                    # The epoch ran to its end: ROMP steps its MultiStepLR once per epoch.
                    self.state.epoch += 1
                    if self.scheduler is not None:
                        self.scheduler.step()
            self._stop_vote.finish()
            if meter.steps:
                self._log_window(meter, progress)
            # Save first: a stop signal must not wait for a validation, and a validation that fails must not
            # lose the steps since the last periodic checkpoint.
            self.save()
            if (self.validate is not None and not self.interrupted
                    and self.state.last_val.get("step") != self.state.step):
                self._run_validation()
                self.save()  # with the final validation's metrics (and best value) in the loop state
        finally:
            progress.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        return {k: v for k, v in self.state.last_val.items() if k != "step"}

    def _draws(self, step: int) -> bool:
        """Whether optimiser step `step` ends with a picture of the training batch (its meshes are needed)."""
        return (self.draw_train is not None and self.dist.is_main
                and (step % self.settings.vis_every_steps == 0 or step == 1))

    @property
    def interrupted(self) -> bool:
        return self._stop_signal is not None or self._stop_agreed

    def _log_window(self, meter: StepMeter, progress) -> None:
        """Read the window's sums from the device (the only host sync of the train step), log them, check for
        divergence."""
        window = meter.read_window()
        self._read_counters()
        count = max(window["count"], 1)
        loss = all_reduce_mean(torch.tensor(window["loss"] / count), self.dist).item()
        metrics = {"train/loss": loss, "train/samples_per_s": window["samples"] / window["elapsed"],
                   "train/lr": self.optimizer.param_groups[0]["lr"], "train/nan_steps": float(self.state.nan_steps),
                   "train/data_wait_share": window["data_wait_share"]}
        metrics.update({f"train/{name}": value / count for name, value in window["terms"].items()})
        if hasattr(self.loader, "data_metrics"):  # skipped (unreadable / malformed) samples so far
            metrics.update(self.loader.data_metrics())
        progress.set_postfix(loss=f"{loss:.2f}", sps=f"{metrics['train/samples_per_s']:.1f}", refresh=False)
        if self.dist.is_main:
            terms = " ".join(f"{name}={value / count:.3f}" for name, value in window["terms"].items())
            log.info("epoch %d step %d | loss %.3f | %s | lr %.2e | %.1f samples/s", self.state.epoch,
                     self.state.step, loss, terms, metrics["train/lr"], metrics["train/samples_per_s"])
            if window["nan_steps"]:
                log.warning("%d non-finite step(s) skipped since the last log (terms: %s)", window["nan_steps"],
                            ", ".join(meter.bad_terms()) or "total")
            self._warn_data_wait(window["data_wait_share"])
            self.tracker.log_metrics(metrics, step=self.state.step)
        if self.state.consecutive_nan >= self.settings.max_consecutive_nan:
            raise TrainingDiverged(self._diagnose_nan(meter.bad_terms()))

    def _warn_data_wait(self, share: float) -> None:
        if share <= self.settings.data_wait_warn_share:
            return
        self._data_wait_warnings += 1
        if self._data_wait_warnings in (1, 10) or self._data_wait_warnings % 100 == 0:
            log.warning("the step waits for data %.0f%% of the time (train/data_wait_share): raise data.num_workers, "
                        "check the disk, or see benchmarks/data_pipeline.py", 100 * share)

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
