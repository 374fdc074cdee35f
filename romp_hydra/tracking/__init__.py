"""Experiment tracking: the `Tracker` interface the training loop uses, MLflow behind it, and Hydra callbacks
that nest a sweep's runs under one parent run.

MLflow is imported only by `romp_hydra.tracking.mlflow_tracker` (loaded by `build_tracker` when
`logger.kind == mlflow`), so importing this package stays cheap.
"""

from romp_hydra.tracking.base import NullTracker, Tracker, build_tracker, status_for_exception
from romp_hydra.tracking.callbacks import MLflowSweepCallback, find_parent_run_id
from romp_hydra.tracking.naming import build_run_name, flatten_config

__all__ = [
    "MLflowSweepCallback",
    "NullTracker",
    "Tracker",
    "build_run_name",
    "build_tracker",
    "find_parent_run_id",
    "flatten_config",
    "status_for_exception",
]
