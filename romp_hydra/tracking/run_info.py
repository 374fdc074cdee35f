"""What a run is called and says about itself: names, tags and params from the config and the Hydra job.

No MLflow import: the sweep callback, the tracker and the sweep report share these, and tests check them
without a store. The caller decides what else to log (e.g. training logs the normalised mixture weights as
`mixture.<member>` params itself).

Sweeps: `MLflowSweepCallback` writes `<sweep dir>/mlflow_sweep.json` (the overrides every job shares and the
swept keys) next to `mlflow_parent_run_id`; a job reads both, so it is named by what differs between the jobs
(`synth_crowd=0.5`) and nested under the parent, whatever process or host it runs in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from romp_hydra.tracking.naming import (
    MAX_TAG_VALUE_LENGTH,
    build_run_name,
    flatten_config,
    sweep_job_name,
    truncate,
)

PARENT_RUN_ID_FILE = "mlflow_parent_run_id"
SWEEP_INFO_FILE = "mlflow_sweep.json"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"  # the tag that makes the MLflow UI nest a run under its parent
# Config roots that are not hyper-parameters: Hydra's own node, and paths (they differ per job and would
# crowd the UI's list of differing params; they are tags instead).
NON_PARAM_ROOTS = ("hydra", "paths")


def current_hydra_config() -> DictConfig | None:
    """The `hydra` node of the running job, or None outside a Hydra app (tests, notebooks)."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get()


def is_multirun(hydra_cfg: DictConfig | None) -> bool:
    if hydra_cfg is None:
        return False
    mode = OmegaConf.select(hydra_cfg, "mode", default=None)
    return getattr(mode, "name", str(mode)) == "MULTIRUN"


def _sweep_dir(hydra_cfg: DictConfig | None) -> Path | None:
    if not is_multirun(hydra_cfg):
        return None
    sweep_dir = OmegaConf.select(hydra_cfg, "sweep.dir", default=None)
    return Path(str(sweep_dir)) if sweep_dir else None


def find_parent_run_id(hydra_cfg: DictConfig | None = None) -> str | None:
    """The sweep's parent run id written by `MLflowSweepCallback.on_multirun_start`, or None.

    `hydra_cfg` is the `hydra` node (default: the running job's). None in RUN mode, and in a sweep started
    without the callback.
    """
    hydra_cfg = current_hydra_config() if hydra_cfg is None else hydra_cfg
    sweep_dir = _sweep_dir(hydra_cfg)
    if sweep_dir is None:
        return None
    try:
        return (sweep_dir / PARENT_RUN_ID_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def read_sweep_info(hydra_cfg: DictConfig | None) -> dict[str, Any]:
    """{fixed_overrides, swept_keys} written by the sweep callback; {} outside a sweep or without it."""
    sweep_dir = _sweep_dir(hydra_cfg)
    if sweep_dir is None:
        return {}
    try:
        return json.loads((sweep_dir / SWEEP_INFO_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_atomically(path: Path, text: str) -> None:
    """Readers in other processes see the whole file or none of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def sweep_job_tags(hydra_cfg: DictConfig | None = None) -> dict[str, str]:
    """Tags that place a job in its sweep (parent run, job number, sweep dir); empty in RUN mode."""
    hydra_cfg = current_hydra_config() if hydra_cfg is None else hydra_cfg
    if not is_multirun(hydra_cfg):
        return {}
    # job.num is MISSING outside a launched job, hence select with a default.
    tags = {
        "sweep.dir": str(OmegaConf.select(hydra_cfg, "sweep.dir", default="")),
        "sweep.job_num": str(OmegaConf.select(hydra_cfg, "job.num", default="")),
    }
    parent = find_parent_run_id(hydra_cfg)
    if parent:
        tags["sweep.parent_run_id"] = parent
        tags[PARENT_RUN_ID_TAG] = parent
    return {key: value for key, value in tags.items() if value}


def job_overrides(hydra_cfg: DictConfig | None) -> list[str]:
    if hydra_cfg is None:
        return []
    return [str(o) for o in OmegaConf.select(hydra_cfg, "overrides.task", default=[]) or []]


def config_params(cfg: DictConfig) -> dict[str, str]:
    """The flattened resolved config as params, without the Hydra node and paths (see NON_PARAM_ROOTS)."""
    return flatten_config(cfg, exclude=NON_PARAM_ROOTS)


def run_tags(cfg: DictConfig, run_dir: Path, hydra_cfg: DictConfig | None) -> dict[str, str]:
    """Tags that say where a run comes from: code, machine, body model, mixture, paths, overrides, sweep."""
    members = list(OmegaConf.select(cfg, "dataset.members", default=None) or [])
    user_tags = OmegaConf.select(cfg, "tags", default=None) or []
    tags = {
        "task_name": str(OmegaConf.select(cfg, "task_name", default="train")),
        "body_model": str(OmegaConf.select(cfg, "body_model.kind", default="unknown")),
        "mixture.name": str(OmegaConf.select(cfg, "dataset.name", default="")),
        "mixture.members": ",".join(str(m) for m in members),
        "host": socket.gethostname(),
        "run_dir": str(run_dir),
        "git.commit": git_commit(OmegaConf.select(cfg, "paths.root_dir", default=None)),
    }
    paths = OmegaConf.select(cfg, "paths", default=None)
    if isinstance(paths, DictConfig):
        tags.update({f"paths.{key}": value for key, value in flatten_config(paths, exclude=()).items()})
    if tags["git.commit"] != "unknown":
        tags["mlflow.source.git.commit"] = tags["git.commit"]  # shown by the MLflow UI
    if user_tags:
        tags["tags"] = ",".join(str(t) for t in user_tags)
    if hydra_cfg is not None:
        tags["hydra.overrides"] = " ".join(job_overrides(hydra_cfg))  # the full list; the name has the gist
        tags.update(sweep_job_tags(hydra_cfg))
    return {key: truncate(value, MAX_TAG_VALUE_LENGTH) for key, value in tags.items() if value != ""}


def default_run_name(cfg: DictConfig, hydra_cfg: DictConfig | None) -> str:
    """A sweep job: the overrides that differ between the jobs (`synth_crowd=0.5`; its parent run carries the
    task and the swept keys). Otherwise task_name plus the job's key overrides (`quickstart-lr=0.001`); a
    sweep
    started without the callback puts the job number first so that names stay distinct and ordered."""
    task_name = str(OmegaConf.select(cfg, "task_name", default="train"))
    overrides = job_overrides(hydra_cfg)
    if is_multirun(hydra_cfg):
        info = read_sweep_info(hydra_cfg)
        if info:
            name = sweep_job_name(overrides, info.get("fixed_overrides", []))
            if name:
                return name
        job_num = OmegaConf.select(hydra_cfg, "job.num", default=None)
        if job_num is not None:
            task_name = f"{task_name}-job{job_num}"
    return build_run_name(task_name, overrides)


def git_commit(root: str | Path | None = None) -> str:
    """HEAD of the git checkout at `root` (default: this package's checkout), or 'unknown'."""
    root = Path(root) if root else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"
