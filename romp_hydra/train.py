"""Train ROMP: python -m romp_hydra.train [group=option ...] [key=value ...]

Examples:
  python -m romp_hydra.train experiment=quickstart                 # CPU, synthetic data, stand-in body model
  python -m romp_hydra.train backbone=hrnet32 dataset=v1_mix       # ROMP v1 (needs the datasets and SMPL files)
  python -m romp_hydra.train -m experiment=quickstart sampling.weights.synth_crowd=0.2,0.5,0.8 sampling.normalize=true
  python -m romp_hydra.train experiment=quickstart hparams_search=mixture_optuna   # Optuna over the weight simplex

In a sweep (-m) a job that fails is recorded as FAILED in MLflow and returns a finite "failure" objective, so
the remaining jobs still run; a single run (no -m) raises as usual. Every job writes its outcome to
<job dir>/job_outcome.json; the sweep ends with a summary and exits 1 when no job finished
(romp_hydra/sweeps/outcome.py). See docs/sweeps.md and docs/reliability.md.
"""
from __future__ import annotations

import logging
import math

import hydra
from omegaconf import DictConfig

from romp_hydra.config import ConfigError, exit_with_config_error
from romp_hydra.preflight import PreflightError, check_inputs, exit_with_problems
from romp_hydra.sweeps.jobs import (
    SweepJob,
    current_sweep_job,
    failure_objective,
    forget_previous_run_id,
    place_job_on_gpu,
    record_failed_job,
)
from romp_hydra.sweeps.outcome import FAILED, FINISHED, record_job_outcome
from romp_hydra.sweeps.simplex import apply_simplex_weights

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    job = current_sweep_job()
    try:
        apply_simplex_weights(cfg)  # an Optuna simplex trial's +u_<member> become sampling.weights
        check_inputs(cfg, "train")  # every missing input and bad setting at once, before anything is built
    except (ConfigError, PreflightError) as err:
        if job is None:
            if isinstance(err, PreflightError):
                exit_with_problems(err)
            exit_with_config_error(err)
        return _fail(cfg, job, err)
    from romp_hydra.training.run import train  # heavy imports only after the config is known to be good

    if job is None:
        return train(cfg)
    forget_previous_run_id(cfg, job.output_dir)
    try:
        place_job_on_gpu(cfg, job.num)
        objective = train(cfg)
    except Exception as err:  # noqa: BLE001  (not KeyboardInterrupt: Ctrl-C still stops the whole sweep)
        return _fail(cfg, job, err)
    record_job_outcome(job.output_dir, FINISHED, objective=objective)
    if objective is not None and not math.isfinite(objective):
        log.warning("sweep job %d returned the objective %r; handing the sweeper %g instead", job.num, objective,
                    failure_objective(cfg))
        return failure_objective(cfg)
    return objective


def _fail(cfg: DictConfig, job: SweepJob, err: Exception) -> float:
    """Log the failure (with traceback) in the job's log, mark its MLflow run FAILED, return the failure objective."""
    log.error("sweep job %d failed; the sweep continues with the next job", job.num, exc_info=err)
    record_job_outcome(job.output_dir, FAILED, error=err)
    run_id = record_failed_job(cfg, job.output_dir, err)
    if run_id is not None:
        log.error("MLflow run %s of job %d is marked FAILED", run_id, job.num)
    return failure_objective(cfg)


if __name__ == "__main__":
    main()
