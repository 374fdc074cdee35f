"""Shared fixtures: compose the real conf/ tree with outputs redirected into pytest's temporary folders."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import torch

import romp_hydra.config  # noqa: F401  (registers the schema and resolvers)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_xdist_worker():
    """`pytest -n 2` runs two workers on CI's 2 cores. With torch's default threads (one per core) in each, the
    cores are oversubscribed and a training test slows about sevenfold (the synthetic benchmark test: 469 s in
    the suite against 62 s alone), so each worker computes on one thread."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory) -> Path:
    """One cache per test session (stand-in body model, synthetic images): generated once, reused."""
    return tmp_path_factory.mktemp("romp_cache")


@pytest.fixture
def compose_cfg(tmp_path: Path, shared_cache_dir: Path) -> Callable[..., DictConfig]:
    """compose_cfg(overrides, config_name='train') -> the composed config, as an entry point would see it.

    Logs, MLflow store and outputs go to tmp_path; the cache is the session's shared one.
    """

    def _compose(overrides: Iterable[str] = (), config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="test"):
            cfg = compose(
                config_name,
                overrides=[
                    f"paths.log_dir={tmp_path / 'logs'}",
                    f"paths.cache_dir={shared_cache_dir}",
                    f"hydra.run.dir={tmp_path / 'run'}",
                    *overrides,
                ],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve
        with open_dict(cfg):
            if "logger" in cfg and cfg.logger.get("kind") == "mlflow":
                cfg.logger.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        (tmp_path / "run").mkdir(exist_ok=True)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
