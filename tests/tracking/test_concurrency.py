"""Parallel sweep jobs sharing one brand-new SQLite store: the first use (schema creation, experiment
creation) races without the lock file; with it every job's run and metrics arrive."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

STEPS = 30


def log_one_run(tracking_uri: str, run_dir: str, job_num: int, barrier) -> None:
    """One sweep job in its own process (module level: spawn pickles it by name)."""
    from romp_hydra.tracking.mlflow_tracker import MLflowTracker

    cfg = OmegaConf.create({"task_name": "train", "seed": job_num, "optim": {"lr": 1e-4 * (job_num + 1)}})
    tracker = MLflowTracker(tracking_uri, "parallel", run_name=f"job{job_num}", flush_every=10)
    barrier.wait(timeout=60)  # both jobs touch the fresh store at the same moment
    tracker.start(cfg, run_dir)
    for step in range(STEPS):
        tracker.log_metrics({"loss": float(job_num * 100 + step)}, step=step)
    tracker.finish()
    if tracker.using_fallback:
        raise SystemExit(3)  # the store failed for this job: the test must see it


def test_two_processes_share_one_fresh_sqlite_store(tmp_path: Path):
    tracking_uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    jobs = [
        context.Process(target=log_one_run, args=(tracking_uri, str(tmp_path / f"job{num}"), num, barrier))
        for num in range(2)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
    assert [job.exitcode for job in jobs] == [0, 0]

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("parallel")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["job0", "job1"]
    for num in range(2):
        run = runs[f"job{num}"]
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, float(num * 100 + s)) for s in range(STEPS)]
        assert run.data.params["seed"] == str(num)
