"""Hydra callbacks that group the runs of a sweep under one MLflow parent run.

Register them in the Hydra config (conf/hydra/callbacks/mlflow_sweep.yaml, selected by
`hydra/callbacks=mlflow_sweep`
or from conf/hydra/default.yaml):

    hydra:
      callbacks:
        mlflow_sweep:
          _target_: romp_hydra.tracking.callbacks.MLflowSweepCallback

`on_multirun_start` runs on the launching machine before any job: it creates the parent run with
`MlflowClient.create_run` (no fluent "active run", which would leak into in-process jobs) and writes its id to
`<hydra.sweep.dir>/mlflow_parent_run_id`, and what the jobs share and what they vary to
`<hydra.sweep.dir>/mlflow_sweep.json`. Jobs may run in other processes or on other hosts (joblib, submitit),
so they find the parent and their short names through those files (`run_info`), never through memory.
MLflow is imported only when `logger.kind == mlflow`, so the callback costs nothing otherwise.
"""

from __future__ import annotations

import atexit
import json
import logging
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from romp_hydra.tracking.naming import MAX_TAG_VALUE_LENGTH, override_keys, sweep_parent_name, truncate
from romp_hydra.tracking.run_info import (
    PARENT_RUN_ID_FILE,
    PARENT_RUN_ID_TAG,
    SWEEP_INFO_FILE,
    git_commit,
    write_atomically,
)

log = logging.getLogger(__name__)

SWEEP_SUMMARY_FILE = "sweep_summary.json"


def _tracking_settings(config: DictConfig) -> dict[str, Any] | None:
    """{tracking_uri, experiment_name} when the config tracks with MLflow, else None."""
    logger_cfg = OmegaConf.select(config, "logger", default=None)
    if logger_cfg is None or logger_cfg.get("kind") != "mlflow":
        return None
    return {
        "tracking_uri": logger_cfg.get("tracking_uri"),
        "experiment_name": logger_cfg.get("experiment_name") or "romp_hydra",
    }


def _target_name(config: DictConfig, key: str) -> str:
    node = OmegaConf.select(config, key, default=None)
    if isinstance(node, DictConfig):
        return str(node.get("_target_", "?"))
    return "?"


class MLflowSweepCallback(Callback):
    """One MLflow parent run per Hydra sweep, with the sweep's jobs nested under it."""

    def __init__(self) -> None:
        self._client: Any = None  # MlflowClient, created on the launching machine only
        self._parent_run_id: str | None = None
        self._experiment_id: str | None = None
        self._sweep_dir: Path | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Launchers pickle the callbacks into every job; jobs find the parent through the sweep dir, and only
        # the launching process may close it.
        return {"_client": None, "_parent_run_id": None, "_experiment_id": None, "_sweep_dir": None}

    @property
    def parent_run_id(self) -> str | None:
        return self._parent_run_id

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        settings = _tracking_settings(config)
        if settings is None:
            return
        try:
            self._start_parent(config, settings)
        except Exception as error:  # tracking must never stop a sweep
            log.warning(
                "Could not create the MLflow parent run for this sweep (%s: %s); the jobs will log "
                "runs that are not nested under one.",
                type(error).__name__,
                error,
            )

    def _start_parent(self, config: DictConfig, settings: dict[str, Any]) -> None:
        from romp_hydra.tracking.store import open_experiment

        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client, experiment_id = open_experiment(settings["tracking_uri"], settings["experiment_name"])
        task_name = str(OmegaConf.select(config, "task_name", default="sweep"))
        overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
        fixed, swept = split_sweep_overrides(overrides)
        sweep_params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        swept += [
            key for key in override_keys(f"{k}={v}" for k, v in sweep_params.items()) if key not in swept
        ]
        root_dir = OmegaConf.select(config, "paths.root_dir", default=None)
        sweeper = _target_name(config, "hydra.sweeper")
        tags = {
            "task_name": task_name,
            "sweep.dir": str(sweep_dir),
            "sweep.sweeper": sweeper,
            "sweep.launcher": _target_name(config, "hydra.launcher"),
            "sweep.overrides": " ".join(overrides),
            "sweep.swept_keys": ",".join(swept),
            "sweep.is_parent": "true",
            "host": socket.gethostname(),
            "git.commit": git_commit(root_dir),
        }
        if sweep_params:
            tags["sweep.params"] = " ".join(f"{k}={v}" for k, v in sweep_params.items())
        # A sweeper that draws its own values (Optuna's custom search space) sweeps keys no override names.
        name = sweep_parent_name(task_name, swept) if swept else f"{task_name}-sweep-{sweeper.split('.')[-1]}"
        write_atomically(
            sweep_dir / SWEEP_INFO_FILE, json.dumps({"fixed_overrides": fixed, "swept_keys": swept}, indent=2)
        )
        run = client.create_run(
            experiment_id,
            run_name=name,
            tags={key: truncate(value, MAX_TAG_VALUE_LENGTH) for key, value in tags.items()},
        )
        self._client, self._experiment_id = client, experiment_id
        self._parent_run_id, self._sweep_dir = run.info.run_id, sweep_dir
        write_atomically(sweep_dir / PARENT_RUN_ID_FILE, self._parent_run_id)
        # A failing job makes Hydra's basic sweeper raise before on_multirun_end: close the parent anyway.
        atexit.register(self._close_at_exit)
        log.info("MLflow parent run %s for sweep %s", self._parent_run_id, sweep_dir)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Safety net: a job that failed has its run marked FAILED even if the training loop could not."""
        if job_return.status != JobStatus.FAILED:
            return
        settings = _tracking_settings(config)
        output_dir = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
        if settings is None or not output_dir:
            return
        from romp_hydra.tracking.store import mark_run_failed, read_run_id

        run_id = read_run_id(output_dir)
        if run_id is None:
            return
        try:
            mark_run_failed(settings["tracking_uri"], run_id, _job_exception(job_return))
        except Exception as failure:
            log.warning(
                "Could not mark MLflow run %s as FAILED (%s: %s)", run_id, type(failure).__name__, failure
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close_parent(aborted=False)

    def _close_at_exit(self) -> None:
        if self._parent_run_id is not None:
            self._close_parent(aborted=True)

    def _close_parent(self, aborted: bool) -> None:
        """Summarise the children on the parent and terminate it: FAILED when no job succeeded (or the sweep
        was aborted), FINISHED otherwise."""
        if self._parent_run_id is None or self._client is None:
            return
        parent_id, client = self._parent_run_id, self._client
        self._parent_run_id = None
        atexit.unregister(self._close_at_exit)
        try:
            children = _child_runs(client, self._experiment_id, parent_id)
            counts = Counter(child["status"] for child in children)
            all_failed = not children or counts.get("FAILED", 0) + counts.get("KILLED", 0) == len(children)
            status = "FAILED" if aborted or all_failed else "FINISHED"
            summary = {
                "parent_run_id": parent_id,
                "aborted": aborted,
                "status": status,
                "num_jobs": len(children),
                "statuses": dict(counts),
                "jobs": children,
            }
            client.log_text(parent_id, json.dumps(summary, indent=2, default=str), SWEEP_SUMMARY_FILE)
            client.set_tag(parent_id, "sweep.num_jobs", str(len(children)))
            client.set_tag(parent_id, "sweep.num_failed", str(counts.get("FAILED", 0)))
            for name in ("multirun.yaml", "optimization_results.yaml"):
                path = self._sweep_dir / name if self._sweep_dir else None
                if path is not None and path.is_file():
                    client.log_artifact(parent_id, str(path))
            client.set_terminated(parent_id, status)
            log.info(
                "MLflow parent run %s closed as %s (%d jobs: %s)",
                parent_id,
                status,
                len(children),
                dict(counts),
            )
        except Exception as error:
            log.warning(
                "Could not close the MLflow parent run %s (%s: %s)", parent_id, type(error).__name__, error
            )


def _job_exception(job_return: JobReturn) -> BaseException | None:
    """The exception a failed job raised (JobReturn re-raises it on access)."""
    try:
        job_return.return_value  # noqa: B018
    except Exception as error:
        return error
    return None


def _child_runs(client, experiment_id: str | None, parent_id: str) -> list[dict[str, Any]]:
    """Every run nested under `parent_id`, oldest first, as small dicts for the sweep summary."""
    children, page_token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_RUN_ID_TAG}` = '{parent_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=page_token,
        )
        for run in page:
            children.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    "job_num": run.data.tags.get("sweep.job_num"),
                    "metrics": dict(run.data.metrics),
                }
            )
        page_token = page.token
        if not page_token:
            return children


def split_sweep_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """The sweep command's overrides every job shares, and the keys of those it sweeps (`a=1,2`, ...)."""
    fixed, swept = [], []
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True):
        if parsed.is_sweep_override():
            swept.append(parsed.key_or_group)
        else:
            fixed.append(text)
    return fixed, swept
