"""Sweep parent runs: the Hydra callback creates one, jobs find it through the sweep dir and nest under it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from romp_hydra.tracking import MLflowSweepCallback, find_parent_run_id
from romp_hydra.tracking.mlflow_tracker import MLflowTracker
from romp_hydra.tracking.run_info import PARENT_RUN_ID_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]


def sweep_config(tracking_uri: str, sweep_dir: Path, kind: str = "mlflow"):
    """What on_multirun_start receives: the composed config with its hydra node."""
    return OmegaConf.create(
        {
            "task_name": "train",
            "logger": {"kind": kind, "tracking_uri": tracking_uri, "experiment_name": "tests"},
            "hydra": {
                "sweep": {"dir": str(sweep_dir)},
                "sweeper": {
                    "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"sampling.weights.coco": "0.2,0.5"},
                },
                "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
                "overrides": {"task": ["sampling.weights.coco=0.2,0.5"]},
            },
        }
    )


def run_job(tiny_cfg, hydra_job, sweep_dir: Path, num: int, weight: float, status: str) -> MLflowTracker:
    """One sweep job as the training loop runs it; status RUNNING leaves the run open like a crashed loop."""
    hydra_job(
        "MULTIRUN",
        [f"sampling.weights.coco={weight}"],
        sweep_dir=sweep_dir,
        job_num=num,
        output_dir=sweep_dir / str(num),
    )
    (sweep_dir / str(num)).mkdir(parents=True, exist_ok=True)
    tracker = MLflowTracker(tiny_cfg.logger.tracking_uri, "tests")
    tracker.start(tiny_cfg, sweep_dir / str(num))
    tracker.log_metrics({"val/PA_MPJPE": 50.0 + num}, step=10)
    if status == "RUNNING":
        tracker.flush()
    else:
        tracker.finish(status)
    return tracker


def test_parent_run_with_two_nested_children(tiny_cfg, tracking_uri, tmp_path, hydra_job):
    sweep_dir = tmp_path / "multirun"
    config = sweep_config(tracking_uri, sweep_dir)
    callback = MLflowSweepCallback()
    callback.on_multirun_start(config)
    parent_id = (sweep_dir / PARENT_RUN_ID_FILE).read_text()
    assert parent_id == callback.parent_run_id

    hydra_job("MULTIRUN", sweep_dir=sweep_dir, job_num=0)
    assert find_parent_run_id() == parent_id
    finished = run_job(tiny_cfg, hydra_job, sweep_dir, 0, 0.2, "FINISHED").run_id
    crashed_tracker = run_job(tiny_cfg, hydra_job, sweep_dir, 1, 0.5, "RUNNING")  # died before finish()
    crashed = crashed_tracker.run_id

    job_config = OmegaConf.create(
        {"logger": config.logger, "hydra": {"runtime": {"output_dir": str(sweep_dir / "1")}}}
    )
    callback.on_job_end(
        job_config, JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("CUDA OOM"))
    )
    callback.on_multirun_end(config)

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"  # one job succeeded
    assert parent.info.run_name == "train-sweep-coco"  # the task and the swept key
    assert parent.data.tags["sweep.swept_keys"] == "sampling.weights.coco"
    assert parent.data.tags["sweep.params"] == "sampling.weights.coco=0.2,0.5"
    assert parent.data.tags["sweep.launcher"].endswith("BasicLauncher")
    assert parent.data.tags["sweep.num_jobs"] == "2"
    children = {run_id: client.get_run(run_id) for run_id in (finished, crashed)}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert children[finished].info.run_name == "coco=0.2"  # only what differs between the jobs
    assert children[crashed].info.run_name == "coco=0.5"
    assert children[crashed].data.tags["hydra.overrides"] == "sampling.weights.coco=0.5"  # the full list
    assert children[finished].data.tags["sweep.job_num"] == "0"
    assert children[crashed].info.status == "FAILED"
    assert children[crashed].data.tags["error"] == "RuntimeError: CUDA OOM"
    summary = json.loads(
        Path(client.download_artifacts(parent_id, "sweep_summary.json", str(tmp_path))).read_text()
    )
    assert summary["statuses"] == {"FINISHED": 1, "FAILED": 1}
    assert [job["job_num"] for job in summary["jobs"]] == ["0", "1"]
    assert summary["jobs"][0]["metrics"] == {"val/PA_MPJPE": 50.0}
    crashed_tracker.finish("FAILED")  # stop its writer thread


def test_parent_fails_when_every_job_failed(tiny_cfg, tracking_uri, tmp_path, hydra_job):
    sweep_dir = tmp_path / "multirun"
    config = sweep_config(tracking_uri, sweep_dir)
    callback = MLflowSweepCallback()
    callback.on_multirun_start(config)
    run_job(tiny_cfg, hydra_job, sweep_dir, 0, 0.2, "FAILED")
    callback.on_multirun_end(config)
    assert MlflowClient(tracking_uri).get_run(callback_parent(sweep_dir)).info.status == "FAILED"


def callback_parent(sweep_dir: Path) -> str:
    return (sweep_dir / PARENT_RUN_ID_FILE).read_text()


def test_no_parent_outside_a_sweep(tmp_path, hydra_job):
    assert find_parent_run_id() is None  # not in a Hydra job at all
    hydra_job("RUN")
    assert find_parent_run_id() is None
    hydra_job("MULTIRUN", sweep_dir=tmp_path)  # a sweep started without the callback
    assert find_parent_run_id() is None


def test_callback_is_inert_without_mlflow(tmp_path):
    config = sweep_config(f"sqlite:///{tmp_path / 'never.db'}", tmp_path / "multirun", kind="none")
    callback = MLflowSweepCallback()
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "never.db").exists()


def test_callback_config_instantiates(compose_cfg):
    cfg = compose_cfg(["hydra/callbacks=mlflow_sweep", "logger=none"])
    assert isinstance(instantiate(cfg.hydra.callbacks.mlflow_sweep), MLflowSweepCallback)


APP = """
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from romp_hydra.tracking import build_tracker

@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg):
    tracker = build_tracker(cfg)
    with tracker:
        tracker.start(cfg, HydraConfig.get().runtime.output_dir)
        tracker.log_metrics({"objective": cfg.weight * 10}, step=1)
        if cfg.weight > 0.4:
            raise ValueError("diverged")

if __name__ == "__main__":
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name="config", node={
        "task_name": "toy", "weight": 0.1,
        "logger": {"kind": "mlflow", "tracking_uri": "TRACKING_URI", "experiment_name": "toy"},
        "hydra": {"sweep": {"dir": "SWEEP_DIR"},
                  "callbacks": {"sweep": {"_target_": "romp_hydra.tracking.callbacks.MLflowSweepCallback"}}},
    })
    main()
"""


def test_real_hydra_multirun_nests_jobs_and_closes_the_parent(tmp_path, tracking_uri):
    """Hydra's basic sweeper stops at the failing job without calling on_multirun_end: the parent is still
    closed (FAILED, as an aborted sweep) when the process exits."""
    app = tmp_path / "toy_app.py"
    app.write_text(
        textwrap.dedent(APP)
        .replace("TRACKING_URI", tracking_uri)
        .replace("SWEEP_DIR", str(tmp_path / "sweep"))
    )
    out = subprocess.run(
        [sys.executable, str(app), "-m", "weight=0.2,0.3,0.5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode != 0 and "diverged" in out.stderr

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("toy")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parent = next(run for run in runs if run.data.tags.get("sweep.is_parent") == "true")
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [child.info.run_name for child in children] == [
        "weight=0.2",
        "weight=0.3",
        "weight=0.5",
    ]
    assert parent.info.run_name == "toy-sweep-weight"
    assert [child.info.status for child in children] == ["FINISHED", "FINISHED", "FAILED"]
    assert [child.data.metrics["objective"] for child in children] == [2.0, 3.0, 5.0]
    assert parent.info.status == "FAILED"
    assert (
        json.loads(
            Path(
                client.download_artifacts(parent.info.run_id, "sweep_summary.json", str(tmp_path))
            ).read_text()
        )["aborted"]
        is True
    )
