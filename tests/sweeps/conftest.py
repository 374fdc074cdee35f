"""Real Hydra sweeps in subprocesses (`python -m romp_hydra.train -m ...`) with the tiny quickstart recipe.

Each sweep writes into its own temporary folder and SQLite store; the synthetic images and the stand-in body model
come from the session's shared cache, so they are generated once per test session.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.training.test_train import TINY

REPO_ROOT = Path(__file__).resolve().parents[2]
SWEEP_STEPS = 2
EXPERIMENT = "romp_hydra"


@dataclass
class Sweep:
    """A finished sweep: its directory, its store, and what the process printed."""

    sweep_dir: Path
    tracking_uri: str
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An SQLite store with MLflow's schema already created (the migrations take seconds); tests copy it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("sweep_store_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


# Real loader worker processes (data.num_workers=1, what the default `auto` gives on 2 cores): the sweep tests once
# ran in-process and missed that no worker could start under the joblib launcher. (The quickstart itself loads
# in-process on 2 cores; any other experiment, or the quickstart on more cores, has workers.)
SWEEP_TINY = [option for option in TINY if not option.startswith("data.num_workers=")] + ["data.num_workers=1"]


def run_sweep(root: Path, overrides: list[str], cache_dir: Path, store_template: Path | None = None,
              timeout_s: int = 300, returncode: int = 0) -> Sweep:
    """Run a tiny quickstart sweep under `root` (sweep dir root/sweep, store root/mlflow.db) and check its exit
    status (0 unless `returncode` says otherwise).

    `store_template=None` starts from a store that does not exist yet (first use creates it).
    """
    root.mkdir(parents=True, exist_ok=True)
    database = root / "mlflow.db"
    if store_template is not None:
        shutil.copyfile(store_template, database)
    tracking_uri = f"sqlite:///{database}"
    command = [
        sys.executable, "-m", "romp_hydra.train", "-m", *SWEEP_TINY, f"trainer.max_steps={SWEEP_STEPS}",
        f"hydra.sweep.dir={root / 'sweep'}", f"paths.log_dir={root / 'logs'}", f"paths.cache_dir={cache_dir}",
        f"logger.tracking_uri={tracking_uri}", *overrides,
    ]
    # One thread per job: parallel jobs on a 2-core machine must not oversubscribe it.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s,
                         check=False)
    assert out.returncode == returncode, f"sweep exited with {out.returncode}:\n{out.stderr[-6000:]}"
    return Sweep(root / "sweep", tracking_uri, out.stdout, out.stderr)


def sweep_runs(sweep: Sweep):
    """(parent run, job runs ordered by job number) of the sweep's store; asserts there is exactly one parent."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if run.data.tags.get("sweep.is_parent") == "true"]
    assert len(parents) == 1, [run.info.run_name for run in parents]
    parent = parents[0]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1, "every run of the sweep's store must be nested under its parent"
    children.sort(key=lambda run: int(run.data.tags["sweep.job_num"]))
    return parent, children


@pytest.fixture(scope="session")
def grid_sweep(tmp_path_factory, shared_cache_dir, store_template) -> Sweep:
    """The issue's example sweep, shrunk: 3 jobs over the crowd weight, normalised, basic launcher."""
    root = tmp_path_factory.mktemp("grid")
    return run_sweep(root, ["sampling.weights.synth_crowd=0.2,0.5,0.8", "sampling.normalize=true"],
                     shared_cache_dir, store_template)
