"""build(cfg) with this repository's conf/backbone and conf/model files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from romp_hydra.models import CheckpointError, HRNet, ResNet, ROMPNet, build

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose(backbone: str, **backbone_overrides):
    cfg = OmegaConf.create(
        {
            "backbone": OmegaConf.load(CONF_DIR / "backbone" / f"{backbone}.yaml"),
            "model": OmegaConf.load(CONF_DIR / "model" / "romp.yaml"),
        }
    )
    for key, value in backbone_overrides.items():
        cfg.backbone[key] = value
    return cfg


@pytest.mark.parametrize(
    "backbone, cls, params", [("hrnet32", HRNet, 29_048_274), ("resnet50", ResNet, 33_120_914)]
)
def test_full_size_configs_build_romps_networks(backbone, cls, params):
    with torch.device("meta"):
        net = build(compose(backbone, pretrained=None))  # ROMP's pretrain file is not in the test data
    assert isinstance(net, ROMPNet) and isinstance(net.backbone, cls)
    assert sum(p.numel() for p in net.parameters()) == params


@pytest.mark.parametrize("backbone, channels", [("hrnet_tiny", 8), ("resnet_tiny", 16)])
def test_tiny_configs_build_and_run(backbone, channels):
    cfg = compose(backbone)
    cfg.model.head_channels = 16
    net = build(cfg).eval()
    assert net.backbone.out_channels == channels
    assert net.cam_head.out.in_channels == 16
    with torch.no_grad():
        out = net(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    assert out["params_maps"].shape == (1, 145, 8, 8)


def test_pretrained_backbone_is_loaded(tmp_path):
    source = build(compose("resnet_tiny"))
    path = tmp_path / "pretrain_resnet.pkl"
    torch.save(
        {k: v + 0.25 if v.is_floating_point() else v for k, v in source.backbone.state_dict().items()}, path
    )
    net = build(compose("resnet_tiny", pretrained=str(path)))
    torch.testing.assert_close(net.backbone.conv1.weight, source.backbone.conv1.weight + 0.25)
    assert torch.all(net.cam_head.out.bias == 0)  # heads keep ROMP's init


def test_missing_pretrained_file_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build(compose("hrnet_tiny", pretrained=str(tmp_path / "pretrain_hrnet.pkl")))


def test_config_mistakes_are_named():
    cfg = compose("hrnet_tiny")
    cfg.model.head_chanels = 32
    with pytest.raises(ValueError, match="head_chanels"):
        build(cfg)
    cfg = compose("hrnet_tiny")
    del cfg.backbone["_target_"]
    with pytest.raises(ValueError, match="backbone=hrnet32"):
        build(cfg)


def test_backbone_init_kaiming_rescales_the_backbone_and_keeps_romps_heads():
    torch.manual_seed(0)
    romp = build(compose("hrnet_tiny"))
    torch.manual_seed(0)
    kaiming = build(compose("hrnet_tiny", init="kaiming"))
    # ROMP's init: every conv N(0, 0.001); He normal for a 3x3 conv with 16 outputs: std sqrt(2 / 144) = 0.118.
    assert romp.backbone.conv1.weight.std() < 0.002
    assert 0.08 < kaiming.backbone.conv1.weight.std() < 0.16
    assert torch.equal(romp.smpl_head.out.weight, kaiming.smpl_head.out.weight)
    with pytest.raises(ValueError, match="backbone.init='he'; use one of romp, kaiming"):
        build(compose("hrnet_tiny", init="he"))
