"""End-to-end sweeps: grid (basic launcher), a failing job (submitit's local executor), two parallel jobs on one
SQLite store (joblib), and the Optuna simplex search. Each is a real `python -m romp_hydra.train -m` process."""
from __future__ import annotations

import csv
import math

import pytest
import yaml

from romp_hydra.compare import main as compare
from tests.sweeps.conftest import SWEEP_STEPS, run_sweep, sweep_runs

pytestmark = pytest.mark.slow


def test_grid_sweep_nests_three_jobs_under_one_parent(grid_sweep):
    parent, children = sweep_runs(grid_sweep)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "quickstart-sweep-synth_crowd"  # <task>-sweep-<the swept keys>
    assert parent.data.tags["sweep.num_jobs"] == "3"
    assert [child.info.status for child in children] == ["FINISHED"] * 3

    # raw weights as configured (synth_solo stays sampling=synthetic's 0.3), normalised ones divided by their sum
    assert [child.data.params["sampling.weights.synth_crowd"] for child in children] == ["0.2", "0.5", "0.8"]
    assert {child.data.params["sampling.weights.synth_solo"] for child in children} == {"0.3"}
    expected_crowd = [0.2 / 0.5, 0.5 / 0.8, 0.8 / 1.1]
    for child, crowd in zip(children, expected_crowd):
        assert float(child.data.params["mixture.synth_crowd"]) == pytest.approx(crowd, abs=1e-6)
        assert float(child.data.params["mixture.synth_solo"]) == pytest.approx(1 - crowd, abs=1e-6)
        assert child.data.metrics["final/step"] == SWEEP_STEPS
        assert math.isfinite(child.data.metrics["val/mpjpe"]) and child.data.metrics["val/mpjpe"] > 0
    assert [(grid_sweep.sweep_dir / str(num) / "checkpoints" / "last.pt").is_file() for num in range(3)] == [True] * 3


def test_failing_job_is_failed_and_the_others_finish(tmp_path, shared_cache_dir, store_template):
    """Job 0 points at a checkpoint that does not exist and raises before training starts; job 1 must still run.
    Runs on submitit's local executor, i.e. every job in its own process, as on SLURM."""
    missing = tmp_path / "no_such_checkpoint.pt"
    sweep = run_sweep(tmp_path, ["hydra/launcher=submitit_local", f"ckpt_path={missing},null"], shared_cache_dir,
                      store_template)
    parent, children = sweep_runs(sweep)
    assert [child.info.status for child in children] == ["FAILED", "FINISHED"]
    failed, finished = children
    assert "no_such_checkpoint.pt" in failed.data.tags["error"]
    assert failed.data.params["ckpt_path"] == str(missing)  # the failed run still holds the job's config
    assert failed.data.params["mixture.synth_crowd"] == "0.7"
    assert "val/mpjpe" not in failed.data.metrics
    assert finished.data.metrics["final/step"] == SWEEP_STEPS and "val/mpjpe" in finished.data.metrics
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.num_failed"] == "1"
    assert "sweep job 0 failed" in (sweep.sweep_dir / "0" / "quickstart.log").read_text()


def test_parallel_joblib_jobs_share_one_new_sqlite_store(tmp_path, shared_cache_dir):
    """Two jobs in two processes write to a store that does not exist when the sweep starts: nothing is lost.
    The README's parallel sweep with its loader settings (one DataLoader worker per job, started inside loky)."""
    sweep = run_sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                 "sampling.weights.synth_crowd=0.3,0.7", "sampling.normalize=true"], shared_cache_dir)
    parent, children = sweep_runs(sweep)
    assert parent.data.tags["sweep.launcher"].endswith("JoblibLauncher")
    assert [child.info.status for child in children] == ["FINISHED", "FINISHED"]
    assert [child.data.params["sampling.weights.synth_crowd"] for child in children] == ["0.3", "0.7"]
    assert children[0].data.params.keys() == children[1].data.params.keys()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert steps == list(range(1, SWEEP_STEPS + 1)), steps
        assert "val/mpjpe" in child.data.metrics
    # the tracker writes here only when the store failed
    assert not list(sweep.sweep_dir.glob("*/metrics_fallback.jsonl"))


def test_a_sweep_where_every_job_failed_exits_1_with_a_summary(tmp_path, shared_cache_dir, store_template):
    """Every job fails (a checkpoint that does not exist): the command must not exit 0, and it says which jobs
    failed, why, and where their logs are. (The basic launcher: one process, so the test stays short; the summary
    reads the job directories, the same under every launcher.)"""
    missing = tmp_path / "no_such_checkpoint.pt"
    sweep = run_sweep(tmp_path, [f"ckpt_path={missing}", "sampling.weights.synth_crowd=0.2,0.8",
                                 "sampling.normalize=true"],
                      shared_cache_dir, store_template, returncode=1)
    assert f"sweep {sweep.sweep_dir}: 2 job(s), 0 finished, 2 failed" in sweep.stderr
    for num in range(2):
        assert f"log: {sweep.sweep_dir / str(num) / 'quickstart.log'}" in sweep.stderr
    assert "no_such_checkpoint.pt" in sweep.stderr
    parent, children = sweep_runs(sweep)
    assert [child.info.status for child in children] == ["FAILED", "FAILED"]
    assert parent.info.status == "FAILED"  # closed before the exit


def test_optuna_simplex_trials_have_weights_summing_to_one(tmp_path, shared_cache_dir, store_template):
    sweep = run_sweep(tmp_path, ["hparams_search=mixture_optuna", "hydra.sweeper.n_trials=3"], shared_cache_dir,
                      store_template)
    parent, children = sweep_runs(sweep)
    assert parent.data.tags["sweep.sweeper"].endswith("OptunaSweeper")
    assert len(children) == 3 and {child.info.status for child in children} == {"FINISHED"}
    seen = set()
    for child in children:
        params = child.data.params
        u = {name: float(params[f"u_{name}"]) for name in ("synth_solo", "synth_crowd")}
        assert all(0 < value <= 1 for value in u.values())
        raw = {name: -math.log(value) for name, value in u.items()}  # the Dirichlet trick, by hand
        weights = {name: float(params[f"sampling.weights.{name}"]) for name in u}
        used = {name: float(params[f"mixture.{name}"]) for name in u}
        for name in u:  # params hold 6 significant digits
            assert weights[name] == pytest.approx(raw[name] / sum(raw.values()), rel=1e-5)
            assert used[name] == pytest.approx(weights[name], rel=1e-5)
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
        assert params["sampling.name"] == "simplex"
        seen.add(round(weights["synth_crowd"], 6))
    assert len(seen) == 3  # three different points of the simplex

    results = yaml.safe_load((sweep.sweep_dir / "optimization_results.yaml").read_text())
    best = min(children, key=lambda child: child.data.metrics["best/val/mpjpe"])
    assert results["best_value"] == pytest.approx(best.data.metrics["best/val/mpjpe"], rel=1e-6)
    assert results["best_value"] < 1e6  # a real metric, not the failure objective

    # the Optuna sweeper writes no multirun.yaml: compare finds the store in a job's .hydra/config.yaml
    assert compare([str(sweep.sweep_dir), "--out", str(tmp_path / "report"), "--no-log"]) == 0
    with open(tmp_path / "report" / "compare_val_mpjpe.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["u.synth_solo"]) for row in rows] == [float(c.data.params["u_synth_solo"]) for c in children]
