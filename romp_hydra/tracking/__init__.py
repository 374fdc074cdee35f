"""Experiment tracking: the `Tracker` interface the training loop uses, MLflow behind it, and Hydra callbacks
that nest a sweep's runs under one parent run.

Modules, lowest first: `naming` (pure key/name/value rules), `store` (URIs, experiment, locks, retries),
`run_info` (names and tags from the config and the Hydra job), `writers` (store / local fallback), `replay`
(fallback -> store), `base` (interface, NullTracker), `mlflow_tracker` (the tracker), `factory`, `callbacks`.
MLflow is imported only by the modules that talk to the store, loaded by `build_tracker` when
`logger.kind == mlflow`, so importing this package stays cheap.
"""

from romp_hydra.tracking.base import NullTracker, Tracker, status_for_exception
from romp_hydra.tracking.callbacks import MLflowSweepCallback
from romp_hydra.tracking.factory import build_tracker
from romp_hydra.tracking.naming import build_run_name, flatten_config
from romp_hydra.tracking.run_info import find_parent_run_id

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
