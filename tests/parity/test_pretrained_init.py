"""Backbone initialisation as ROMP v1: the pretrain file by default, a clear stop when it is missing, the run's tag."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from romp_hydra.models.backbones.pretrained import initialisation_tag


def test_missing_pretrain_file_stops_the_run_first_saying_where_to_get_it(compose_cfg, tmp_path):
    from romp_hydra.preflight import find_problems

    cfg = compose_cfg(["backbone=hrnet32", "dataset=v1_mix", f"paths.model_dir={tmp_path}"])
    problems = [p for p in find_problems(cfg, "train") if "backbone.pretrained" in p]
    assert len(problems) == 1, problems
    assert str(tmp_path / "pretrain_hrnet.pkl") in problems[0] and "does not exist" in problems[0]
    assert "release v1.1" in problems[0] and "backbone.pretrained=null" in problems[0]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["backbone=hrnet32", "dataset=v1_mix"], "pretrained:{model_dir}/pretrain_hrnet.pkl"),
        (["experiment=v1_resnet"], "pretrained:{model_dir}/pretrain_resnet.pkl"),
        (["experiment=v1_hrnet_3dpwft"], "ckpt:{model_dir}/ROMP_HRNet32_V1.pkl"),
        (["backbone=hrnet32", "backbone.pretrained=null"], "scratch"),
    ],
)
def test_recipes_start_from_romps_files_and_name_it(compose_cfg, overrides, expected):
    cfg = compose_cfg(overrides)
    tag = initialisation_tag(cfg.backbone.pretrained, cfg.ckpt_path)
    assert tag == expected.format(model_dir=OmegaConf.select(cfg, "paths.model_dir"))
