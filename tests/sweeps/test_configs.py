"""The sweep-related config files compose, validate and point at code that exists."""
from __future__ import annotations

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from romp_hydra.config import normalized_weights, validate_config
from romp_hydra.sweeps.simplex import dirichlet_space


@pytest.mark.parametrize("sampling, expected", [
    ("synthetic_solo_heavy", {"synth_solo": 0.8, "synth_crowd": 0.2}),
    ("synthetic_crowd_heavy", {"synth_solo": 0.2, "synth_crowd": 0.8}),
])
def test_synthetic_weight_sets(compose_cfg, sampling, expected):
    cfg = compose_cfg(["experiment=quickstart", f"sampling={sampling}"])
    validate_config(cfg)
    assert normalized_weights(cfg.sampling, list(cfg.dataset.members)) == pytest.approx(expected)


@pytest.mark.parametrize("sampling", ["v1", "uniform", "v1_3d_heavy", "v1_2d_heavy"])
def test_v1_weight_sets_validate_against_the_v1_mixture(compose_cfg, sampling):
    cfg = compose_cfg(["dataset=v1_mix", f"sampling={sampling}"])
    validate_config(cfg)
    weights = normalized_weights(cfg.sampling, list(cfg.dataset.members))
    assert sum(weights.values()) == pytest.approx(1.0)


def test_v1_3d_heavy_scales_the_3d_group_by_1_4_and_keeps_its_proportions(compose_cfg):
    v1 = compose_cfg(["dataset=v1_mix", "sampling=v1"]).sampling.weights
    heavy = compose_cfg(["dataset=v1_mix", "sampling=v1_3d_heavy"]).sampling.weights
    for name in ("h36m", "mpiinf", "muco"):
        assert heavy[name] == pytest.approx(v1[name] * 1.4)
    for name in ("coco", "lsp", "mpii", "crowdpose"):
        assert heavy[name] == pytest.approx(v1[name] * 0.6)


def test_mixture_optuna_searches_the_simplex(compose_cfg):
    cfg = compose_cfg(["experiment=quickstart", "hparams_search=mixture_optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert sweeper.direction == "minimize" and cfg.val.metric == "val/mpjpe"
    assert get_method(sweeper.custom_search_space) is dirichlet_space
    assert sweeper.study_name == "mixture_synthetic" and sweeper.sampler.seed == cfg.seed


def test_every_run_registers_the_mlflow_sweep_callback(compose_cfg):
    callbacks = compose_cfg(["experiment=quickstart"]).hydra.callbacks
    assert callbacks.mlflow_sweep._target_ == "romp_hydra.tracking.callbacks.MLflowSweepCallback"


def test_slurm_launcher_is_submitit_with_one_gpu_per_job(compose_cfg):
    launcher = compose_cfg(["experiment=quickstart", "hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert OmegaConf.select(launcher, "submitit_folder", throw_on_resolution_failure=False) is not None
