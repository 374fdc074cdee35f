"""A sweep job's failure handling and GPU placement, in-process (the entry point without @hydra.main's wrapper)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict, read_write

from romp_hydra.sweeps.jobs import failure_objective, job_device, record_failed_job
from romp_hydra.train import main
from romp_hydra.training.run import FAILED_OBJECTIVE
from tests.training.test_train import TINY

train_job = main.__wrapped__  # what Hydra calls for each job


@pytest.fixture(autouse=True)
def no_hydra_job_left_behind():
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture
def store(tmp_path: Path, store_template: Path) -> str:
    """The store `compose_cfg` points logger.tracking_uri at, with its schema already created."""
    shutil.copyfile(store_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def sweep_job_cfg(compose_cfg, tmp_path: Path):
    """sweep_job_cfg(overrides, job_num) -> the config of job `job_num` of a MULTIRUN sweep in tmp_path/sweep."""

    def _compose(overrides: list[str], job_num: int = 0) -> DictConfig:
        cfg = compose_cfg([*TINY, "trainer.max_steps=1", *overrides])
        output_dir = tmp_path / "sweep" / str(job_num)
        output_dir.mkdir(parents=True)
        with read_write(cfg.hydra), open_dict(cfg):  # the hydra node is read-only
            cfg.hydra.mode = "MULTIRUN"
            cfg.hydra.sweep.dir = str(tmp_path / "sweep")
            cfg.hydra.job.num = job_num
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.paths.output_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        return cfg

    return _compose


def only_run(tracking_uri: str):
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("romp_hydra").experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_a_single_run_is_not_turned_into_a_failure_objective(compose_cfg, tmp_path, capsys):
    """Outside a sweep a missing input stops the run: the preflight's message and status 2, no traceback."""
    cfg = compose_cfg([*TINY, "logger=none", f"ckpt_path={tmp_path / 'missing.pt'}"])
    with pytest.raises(SystemExit) as stopped:
        train_job(cfg)
    assert stopped.value.code == 2
    assert "missing.pt: no such file" in capsys.readouterr().err


def test_a_failing_sweep_job_returns_the_failure_objective_and_a_failed_run(sweep_job_cfg, store, tmp_path):
    cfg = sweep_job_cfg([f"ckpt_path={tmp_path / 'missing.pt'}"], job_num=3)
    assert train_job(cfg) == FAILED_OBJECTIVE
    run = only_run(store)
    assert run.info.status == "FAILED"
    assert "missing.pt" in run.data.tags["error"]
    assert run.data.tags["sweep.job_num"] == "3"
    assert run.data.params["mixture.synth_solo"] == "0.3"  # sampling=synthetic's
    assert (tmp_path / "sweep" / "3" / "mlflow_run_id").read_text() == run.info.run_id


def test_an_invalid_sweep_job_config_is_a_failed_run_not_an_exit(sweep_job_cfg, store):
    cfg = sweep_job_cfg(["sampling.weights.synth_crowd=-1", "val.mode=max"])
    assert train_job(cfg) == -FAILED_OBJECTIVE  # loses when the sweep maximises
    run = only_run(store)
    assert run.info.status == "FAILED" and "sampling.weights.synth_crowd" in run.data.tags["error"]


def test_a_job_whose_run_is_open_gets_it_closed_as_failed(sweep_job_cfg, store, tmp_path):
    from romp_hydra.tracking.mlflow_tracker import MLflowTracker

    cfg = sweep_job_cfg([])
    output_dir = tmp_path / "sweep" / "0"
    tracker = MLflowTracker(store)
    run_id = tracker.start(cfg, output_dir)
    tracker.flush()
    assert record_failed_job(cfg, output_dir, RuntimeError("loss is NaN")) == run_id
    run = only_run(store)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "RuntimeError: loss is NaN"
    tracker.finish("FAILED")


@pytest.mark.parametrize("device, job_num, gpus, expected", [
    ("auto", 3, 2, "cuda:1"),
    ("cuda", 4, 2, "cuda:0"),
    ("auto", 5, 4, "cuda:1"),
    ("auto", 5, 1, "auto"),      # one GPU: nothing to spread
    ("auto", 5, 0, "auto"),      # CPU only
    ("cpu", 1, 2, "cpu"),
    ("cuda:1", 0, 4, "cuda:1"),  # an explicit choice is kept
])
def test_job_i_uses_gpu_i_mod_n(device, job_num, gpus, expected):
    assert job_device(device, job_num, gpus) == expected


def test_failure_objective_is_finite_and_loses_in_either_direction(compose_cfg):
    assert failure_objective(compose_cfg(["experiment=quickstart"])) == FAILED_OBJECTIVE
    assert failure_objective(compose_cfg(["experiment=quickstart", "val.mode=max"])) == -FAILED_OBJECTIVE
