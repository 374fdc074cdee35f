"""Mixture sweeps: the simplex search space for Optuna, per-job handling inside a sweep (failures, GPU
placement), and the comparison report of a finished sweep (`python -m romp_hydra.compare`).

See docs/sweeps.md. MLflow and matplotlib are imported only by the functions that need them.
"""
from romp_hydra.sweeps.jobs import (
    SweepJob,
    current_sweep_job,
    failure_objective,
    job_device,
    place_job_on_gpu,
    record_failed_job,
)
from romp_hydra.sweeps.simplex import apply_simplex_weights, dirichlet_space, dirichlet_weights

__all__ = [
    "SweepJob",
    "apply_simplex_weights",
    "current_sweep_job",
    "dirichlet_space",
    "dirichlet_weights",
    "failure_objective",
    "job_device",
    "place_job_on_gpu",
    "record_failed_job",
]
