"""Fixtures for the tracking tests: a tiny config, a fresh SQLite store per test, and a fake Hydra job."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


@pytest.fixture(autouse=True)
def no_hydra_job():
    """Each test starts outside a Hydra job (other tests leave HydraConfig set) and leaves none behind."""
    HydraConfig.instance().cfg = None
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture(scope="session")
def empty_store_template(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema already created: creating one runs every alembic migration
    (seconds), so tests copy this file instead. The concurrency test uses a truly fresh store."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, empty_store_template: Path) -> str:
    """A store of this test's own at tmp_path/mlflow.db (where `compose_cfg` points logger.tracking_uri)."""
    shutil.copyfile(empty_store_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def tiny_cfg(tracking_uri: str) -> DictConfig:
    """A two-member mixture with weights 1:3 (normalised 0.25 / 0.75) and the keys the tracker reads."""
    return OmegaConf.create(
        {
            "task_name": "train",
            "seed": 0,
            "tags": ["smoke"],
            "paths": {
                "root_dir": str(Path(__file__).resolve().parents[2]),
                "output_dir": "${hydra:runtime.output_dir}",
            },
            "dataset": {
                "name": "pair",
                "members": {"coco": {"_target_": "a.Coco"}, "h36m": {"_target_": "a.H36M"}},
            },
            "sampling": {"name": "pair", "weights": {"coco": 0.1, "h36m": 0.3}, "normalize": True},
            "body_model": {"kind": "standin"},
            "optim": {"lr": 1e-4, "milestones": [60, 80]},
            "logger": {
                "kind": "mlflow",
                "tracking_uri": tracking_uri,
                "experiment_name": "tests",
                "run_name": None,
            },
        }
    )


@pytest.fixture
def hydra_job() -> Callable[..., DictConfig]:
    """hydra_job(mode, overrides, sweep_dir, job_num, output_dir): HydraConfig.get() returns that job."""

    def _set(
        mode: str = "RUN",
        overrides: Iterable[str] = (),
        sweep_dir: Path | None = None,
        job_num: int | None = None,
        output_dir: Path | None = None,
    ) -> DictConfig:
        cfg = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
        cfg.hydra.mode = RunMode[mode]
        cfg.hydra.overrides.task = list(overrides)
        if sweep_dir is not None:
            cfg.hydra.sweep.dir = str(sweep_dir)
        if job_num is not None:
            cfg.hydra.job.num = job_num
        if output_dir is not None:
            cfg.hydra.runtime.output_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        return HydraConfig.get()

    return _set
