"""The Dirichlet trick that turns Optuna's independent uniforms into mixture weights on the simplex."""
from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from romp_hydra.config import ConfigError, validate_config
from romp_hydra.sweeps.simplex import (
    UNIFORM_HIGH,
    UNIFORM_LOW,
    apply_simplex_weights,
    dirichlet_space,
    dirichlet_weights,
)


def test_weights_are_normalised_negative_logs():
    # -log(e^-1) = 1 and -log(e^-3) = 3, so the weights are 1/4 and 3/4
    weights = dirichlet_weights({"solo": math.exp(-1.0), "crowd": math.exp(-3.0)})
    assert weights == pytest.approx({"solo": 0.25, "crowd": 0.75}, abs=1e-12)


def test_u_of_one_gives_weight_zero_and_all_ones_give_uniform():
    assert dirichlet_weights({"a": 1.0, "b": 0.5}) == {"a": 0.0, "b": 1.0}
    assert dirichlet_weights({"a": 1.0, "b": 1.0, "c": 1.0}) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan])
def test_u_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="u_b"):
        dirichlet_weights({"a": 0.5, "b": bad})


def test_uniform_draws_cover_the_simplex_uniformly():
    """Dirichlet(1,1,1): every weight has mean 1/3 and P(w_a < 1/2) = 1 - (1/2)^2 = 3/4."""
    rng = np.random.default_rng(0)
    draws = rng.uniform(UNIFORM_LOW, UNIFORM_HIGH, size=(20000, 3))
    weights = np.array([list(dirichlet_weights(dict(zip("abc", row))).values()) for row in draws])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.mean(axis=0), 1 / 3, atol=0.01)
    assert np.mean(weights[:, 0] < 0.5) == pytest.approx(0.75, abs=0.01)


class RecordingTrial:
    """The part of optuna.Trial the search-space hook uses."""

    def __init__(self, value: float = 0.5):
        self.suggested: list[tuple[str, float, float]] = []
        self.value = value

    def suggest_float(self, name: str, low: float, high: float) -> float:
        self.suggested.append((name, low, high))
        return self.value


def test_search_space_suggests_one_plus_prefixed_uniform_per_member(compose_cfg):
    trial = RecordingTrial()
    dirichlet_space(compose_cfg(["experiment=quickstart"]), trial)
    assert trial.suggested == [("+u_synth_solo", UNIFORM_LOW, 1.0), ("+u_synth_crowd", UNIFORM_LOW, 1.0)]


def test_search_space_needs_two_members():
    cfg = OmegaConf.create({"dataset": {"name": "one", "members": {"coco": {"_target_": "x.Coco"}}}})
    with pytest.raises(ValueError, match="at least 2 members"):
        dirichlet_space(cfg, RecordingTrial())


def test_raw_params_become_valid_sampling_weights(compose_cfg):
    cfg = compose_cfg(["experiment=quickstart", "+u_synth_solo=0.5", "+u_synth_crowd=0.25"])
    weights = apply_simplex_weights(cfg)
    solo, crowd = -math.log(0.5), -math.log(0.25)  # = log 2 and 2 log 2: weights 1/3 and 2/3
    assert weights == pytest.approx({"synth_solo": solo / (solo + crowd), "synth_crowd": crowd / (solo + crowd)})
    assert dict(cfg.sampling.weights) == weights and cfg.sampling.name == "simplex"
    assert cfg.u_synth_solo == 0.5  # the raw value stays in the config, so the tracker logs it too
    validate_config(cfg)


def test_without_raw_params_nothing_changes(compose_cfg):
    cfg = compose_cfg(["experiment=quickstart", "sampling.weights.synth_crowd=0.8", "sampling.normalize=true"])
    assert apply_simplex_weights(cfg) is None
    assert dict(cfg.sampling.weights) == {"synth_solo": 0.3, "synth_crowd": 0.8}


def test_a_missing_raw_param_is_a_config_error(compose_cfg):
    cfg = compose_cfg(["experiment=quickstart", "+u_synth_solo=0.5"])
    with pytest.raises(ConfigError, match=r"\+u_synth_crowd"):
        apply_simplex_weights(cfg)
