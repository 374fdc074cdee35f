"""What a training job does differently when it is one job of a Hydra sweep (`-m`, MULTIRUN).

* A job that raises must not take the sweep down: Hydra's basic sweeper stops at the first failing job, and
  the Optuna sweeper crashes on a failed or NaN trial (ecosystem notes §6.1). The entry point catches the
  error, records the job's MLflow run as FAILED (creating the run if the job died before it had one) and
  hands the sweeper `failure_objective(cfg)`, a finite value worse than any real one.
* Parallel jobs on a machine with several GPUs spread over them: job i uses GPU i % n (`job_device`).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from romp_hydra.config import normalized_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepJob:
    """Where a job sits in its sweep."""

    num: int
    output_dir: Path
    sweep_dir: Path


def current_sweep_job() -> SweepJob | None:
    """The running job's place in its sweep, or None outside a Hydra MULTIRUN job (a plain run, a test)."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    mode = OmegaConf.select(hydra_cfg, "mode", default=None)
    if getattr(mode, "name", str(mode)) != "MULTIRUN":
        return None
    return SweepJob(
        num=int(OmegaConf.select(hydra_cfg, "job.num", default=0)),
        output_dir=Path(str(hydra_cfg.runtime.output_dir)),
        sweep_dir=Path(str(hydra_cfg.sweep.dir)),
    )


def failure_objective(cfg: DictConfig) -> float:
    """The objective of a failed job: the training code's sentinel, signed so that it loses whichever way the
    sweep optimises (`val.mode=max` metrics are maximised). Finite, because Optuna crashes on NaN."""
    from romp_hydra.training.run import FAILED_OBJECTIVE

    mode = OmegaConf.select(cfg, "val.mode", default="min")
    return -FAILED_OBJECTIVE if mode == "max" else FAILED_OBJECTIVE


def job_device(device: str, job_num: int, gpu_count: int) -> str:
    """The device of sweep job `job_num`: with several GPUs visible and `device` auto or cuda, GPU
    job_num % gpu_count; otherwise `device` unchanged (an explicit cuda:N is the user's choice)."""
    if device not in ("auto", "cuda") or gpu_count < 2:
        return device
    return f"cuda:{job_num % gpu_count}"


def place_job_on_gpu(cfg: DictConfig, job_num: int) -> str:
    """Set `cfg.trainer.device` per `job_device` and make that GPU current; returns the device.

    Skipped under torchrun or a multi-task SLURM job (several ranks), where every rank takes its local rank's GPU.
    Run `hydra/launcher=joblib hydra.launcher.n_jobs=<number of GPUs>` so that concurrent jobs never share a GPU.
    """
    from romp_hydra.training.distributed import launched_world_size

    device = str(cfg.trainer.device)
    if launched_world_size() > 1:
        return device
    import torch

    placed = job_device(device, job_num, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if placed != device:
        with open_dict(cfg):
            cfg.trainer.device = placed
        torch.cuda.set_device(torch.device(placed))
        log.info("sweep job %d runs on %s (%d GPUs visible)", job_num, placed, torch.cuda.device_count())
    return placed


def forget_previous_run_id(cfg: DictConfig, output_dir: Path) -> None:
    """Remove an `mlflow_run_id` left in a reused job directory (same hydra.sweep.dir twice), so that a failure
    of this job is never recorded on the earlier job's run."""
    if OmegaConf.select(cfg, "logger.kind", default="none") != "mlflow":
        return  # nothing to forget, and no reason to import MLflow
    from romp_hydra.tracking.store import RUN_ID_FILE

    (output_dir / RUN_ID_FILE).unlink(missing_ok=True)


def record_failed_job(cfg: DictConfig, output_dir: Path, error: BaseException) -> str | None:
    """Make the job's MLflow run say FAILED, with the error as the tag `error`; returns the run id.

    The run exists when training got as far as starting its tracker (its id is in `<output_dir>/mlflow_run_id`);
    it is closed as FAILED if still RUNNING. A job that died earlier (bad checkpoint path, bad config, data
    error) gets a new run with the job's params and tags, nested under the sweep's parent, already FAILED.
    Never raises: a tracking problem is logged and the sweep goes on.
    """
    if OmegaConf.select(cfg, "logger.kind", default="none") != "mlflow":
        return None
    from mlflow.tracking import MlflowClient

    from romp_hydra.tracking.mlflow_tracker import MLflowTracker
    from romp_hydra.tracking.store import mark_run_failed, normalize_tracking_uri, read_run_id, retry_transient

    message = f"{type(error).__name__}: {error}"[:8000]
    tracking_uri = OmegaConf.select(cfg, "logger.tracking_uri", default=None)
    try:
        run_id = read_run_id(output_dir)
        if run_id is not None:
            client = MlflowClient(tracking_uri=normalize_tracking_uri(tracking_uri))
            retry_transient(lambda: client.set_tag(run_id, "error", message))
            mark_run_failed(tracking_uri, run_id)
            return run_id
        tracker = MLflowTracker(
            tracking_uri=tracking_uri,
            experiment_name=OmegaConf.select(cfg, "logger.experiment_name", default=None) or "romp_hydra",
            run_name=OmegaConf.select(cfg, "logger.run_name", default=None),
        )
        run_id = tracker.start(cfg, output_dir)
        with contextlib.suppress(KeyError, TypeError, ValueError, ZeroDivisionError):  # it may be what failed
            tracker.log_params({"mixture": normalized_weights(cfg.sampling, list(cfg.dataset.members))})
        tracker.set_tags({"error": message})
        tracker.finish("FAILED")
        return run_id
    except Exception as failure:  # noqa: BLE001  (the sweep matters more than the record of one failed job)
        log.warning("could not record the failed job in MLflow (%s: %s)", type(failure).__name__, failure)
        return None
