"""Cross-field validation: each bad config fails with a ConfigError naming the key, the value and the fix."""
from __future__ import annotations

import pytest
from omegaconf import open_dict

from romp_hydra.config import ConfigError, normalized_weights, validate_config

V1 = {"h36m": 0.2, "mpiinf": 0.16, "coco": 0.2, "lsp": 0.06, "mpii": 0.1, "muco": 0.14, "crowdpose": 0.14}


def test_v1_mix_composes_with_romp_weights(compose_cfg):
    cfg = compose_cfg(["backbone=hrnet32", "dataset=v1_mix"])
    validate_config(cfg)
    assert dict(cfg.sampling.weights) == V1
    assert set(cfg.dataset.members) == set(V1)
    assert cfg.dataset.members.h36m._target_.endswith("H36M")


def test_pw3d_finetune_weights(compose_cfg):
    cfg = compose_cfg(["dataset=pw3d_ft"])
    validate_config(cfg)
    assert dict(cfg.sampling.weights) == {"crowdpose": 0.2, "pw3d": 0.8}


def test_single_dataset_defaults_to_uniform(compose_cfg):
    cfg = compose_cfg(["dataset=coco"])
    validate_config(cfg)
    assert dict(cfg.sampling.weights) == {}
    assert normalized_weights(cfg.sampling, list(cfg.dataset.members)) == {"coco": 1.0}


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["+sampling.weights.up=0.1"], "sampling.weights.up", ["not a member", "h36m"]),
        (["~sampling.weights.lsp", "sampling.normalize=true"], "sampling.weights", ["no weight", "lsp"]),
        (["sampling.weights.lsp=-0.06", "sampling.weights.h36m=0.32"], "sampling.weights.lsp", [">= 0"]),
        (["sampling.weights.lsp=0.12"], "sampling.weights", ["sum to 1.06", "sampling.normalize=true"]),
        (["data.centermap_size=32"], "data.centermap_size", ["data.centermap_size=64"]),
        (["data.input_size=500", "data.centermap_size=62"], "data.input_size", ["multiple of 32"]),
        (["trainer.precision=fp8"], "trainer.precision", ["fp32", "bf16", "fp16"]),
        (["trainer.device=gpu0"], "trainer.device", ["cuda:N"]),
        (["data.augment.flip_prob=1.5"], "data.augment.flip_prob", ["[0, 1]"]),
    ],
)
def test_bad_values_are_named(compose_cfg, overrides, key, words):
    cfg = compose_cfg(["dataset=v1_mix", *overrides])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == key
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert "fix:" in message


def test_normalize_accepts_any_positive_sum(compose_cfg):
    cfg = compose_cfg(["dataset=v1_mix", "sampling.weights.lsp=0.12", "sampling.normalize=true"])
    validate_config(cfg)
    weights = normalized_weights(cfg.sampling, list(cfg.dataset.members))
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["lsp"] == pytest.approx(0.12 / 1.06)


def test_all_zero_weights_rejected(compose_cfg):
    cfg = compose_cfg(["dataset=pw3d_ft", "sampling.weights.crowdpose=0", "sampling.weights.pw3d=0",
                       "sampling.normalize=true"])
    with pytest.raises(ConfigError, match="all weights are 0"):
        validate_config(cfg)


def test_member_without_target_rejected(compose_cfg):
    cfg = compose_cfg(["dataset=coco"])
    with open_dict(cfg):
        del cfg.dataset.members.coco["_target_"]
    with pytest.raises(ConfigError, match="_target_"):
        validate_config(cfg)
