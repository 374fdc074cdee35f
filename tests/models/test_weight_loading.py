"""Checkpoint import: ROMP's key names and shapes, backbone pretraining files, loud failures."""

from __future__ import annotations

import argparse

import pytest
import torch
import torchvision

from romp_hydra.models import HRNet, ResNet, ROMPNet
from romp_hydra.models.checkpoint import (
    CheckpointError,
    load_backbone_weights,
    load_network_weights,
    read_checkpoint,
    romp_key_to_ours,
    save_network,
)
from romp_hydra.models.import_romp import main as import_romp_main

ROMP_SMPL_KEY = "module._result_parser.params_map_parser.smpl_model.betas"  # ROMP keeps SMPL inside the model


@pytest.mark.parametrize("backbone, backbone_cls", [("hrnet32", HRNet), ("resnet50", ResNet)])
def test_every_romp_key_maps_to_a_weight_of_the_same_shape(backbone, backbone_cls, romp_listing):
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in ROMPNet(backbone_cls()).state_dict().items()}
    listing = romp_listing(backbone)
    mapped = {romp_key_to_ours(key): shape for key, shape in listing}
    assert len(mapped) == len(listing) == len(own)  # one-to-one
    assert mapped == own


def test_head_key_mapping_examples():
    assert romp_key_to_ours("final_layers.1.0.0.weight") == "smpl_head.reduce.0.weight"
    assert romp_key_to_ours("final_layers.2.1.1.0.bn2.running_var") == "center_head.blocks.1.bn2.running_var"
    assert romp_key_to_ours("final_layers.3.2.bias") == "cam_head.out.bias"
    assert romp_key_to_ours("_result_parser.params_map_parser.smpl_model.v_template") is None
    with pytest.raises(KeyError, match="head index 4"):
        romp_key_to_ours("final_layers.4.2.bias")


def _plant_known_outputs(state: dict) -> None:
    """Zero the heads' last convs and give them recognisable biases, so each head's output is a constant."""
    for index, channels in ((1, 142), (2, 1), (3, 3)):
        state[f"module.final_layers.{index}.2.weight"].zero_()
    state["module.final_layers.1.2.bias"] = torch.arange(142, dtype=torch.float32) / 100
    state["module.final_layers.2.2.bias"] = torch.tensor([0.3])
    state["module.final_layers.3.2.bias"] = torch.tensor([0.5, 0.1, -0.2])


@pytest.mark.parametrize("backbone, backbone_cls", [("hrnet32", HRNet), ("resnet50", ResNet)])
def test_romp_checkpoint_imports_completely_and_matches_direct_loading(
    backbone, backbone_cls, romp_state_dict, tmp_path
):
    state = romp_state_dict(backbone, seed=1)
    _plant_known_outputs(state)
    state[ROMP_SMPL_KEY] = torch.zeros(64, 10)
    src, dst = tmp_path / "romp.pkl", tmp_path / "ours.pt"
    torch.save(state, src)

    direct = ROMPNet(backbone_cls(), init_weights=False).eval()
    report = load_network_weights(direct, src)
    assert report.source_format == "romp"
    assert (len(report.missing), len(report.unexpected), len(report.shape_mismatched)) == (0, 0, 0)
    assert len(report.loaded) == len(state) - 1
    assert report.ignored == [ROMP_SMPL_KEY[len("module.") :]]

    assert import_romp_main([str(src), str(dst)]) == 0  # backbone recognised from the keys
    imported = ROMPNet(backbone_cls(), init_weights=False).eval()
    report = load_network_weights(imported, dst, strict=True)
    assert report.source_format == "ours" and report.is_complete
    _, meta = read_checkpoint(dst)
    assert meta["backbone"] == backbone

    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        direct_out, imported_out = direct(images), imported(images)
        features = direct.backbone(images)
        assert torch.equal(imported.backbone(images), features)
        assert features.abs().sum() > 0
    for key in ("center_map", "params_maps"):
        assert torch.equal(direct_out[key], imported_out[key])
    params = direct_out["params_maps"][0]
    # ROMP's final_layers.3 is the camera, .2 the centre, .1 the SMPL parameters.
    torch.testing.assert_close(params[0], torch.full((8, 8), 1.1**0.5))
    torch.testing.assert_close(params[1:3], torch.tensor([0.1, -0.2])[:, None, None].expand(2, 8, 8))
    torch.testing.assert_close(params[3:], (torch.arange(142) / 100)[:, None, None].expand(142, 8, 8))
    torch.testing.assert_close(direct_out["center_map"], torch.full((1, 1, 8, 8), 0.3))


def test_higherhrnet_style_backbone_file_loads_and_its_heads_are_ignored(tmp_path, tiny_backbone_kwargs):
    source = HRNet(**tiny_backbone_kwargs["hrnet"])
    state = {"module." + k: v + 1.0 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    state["module.final_layers.0.weight"] = torch.zeros(34, 8, 1, 1)  # HigherHRNet's own heads
    state["module.deconv_layers.0.0.0.weight"] = torch.zeros(8, 8, 4, 4)
    path = tmp_path / "pose_higher_hrnet_w32_512.pth"
    torch.save(state, path)

    target = ROMPNet(HRNet(**tiny_backbone_kwargs["hrnet"]), head_channels=8)
    report = load_backbone_weights(target.backbone, path)
    assert report.source_format == "backbone" and report.is_complete
    assert sorted(report.ignored) == ["deconv_layers.0.0.0.weight", "final_layers.0.weight"]
    torch.testing.assert_close(target.backbone.conv1.weight, source.conv1.weight + 1.0)
    with pytest.raises(CheckpointError, match="bare backbone weights"):
        load_network_weights(target, path)


def test_torchvision_resnet50_imagenet_keys_load_into_the_resnet_backbone(tmp_path):
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    backbone = ResNet()
    report = load_backbone_weights(backbone, path)
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert (len(report.unexpected), len(report.shape_mismatched)) == (0, 0)
    # Only ROMP's deconvolutions are new: 3 ConvTranspose weights + 3 BNs x 4 tensors
    # (num_batches_tracked is not reported).
    assert len(report.missing) == 15 and all(k.startswith("deconv_layers.") for k in report.missing)


def test_backbone_part_of_a_whole_network_checkpoint_can_seed_the_backbone(tmp_path, make_tiny_net):
    source = make_tiny_net("resnet")
    path = tmp_path / "ours.pt"
    save_network(source, path, {"note": "test"})
    target = make_tiny_net("resnet")
    report = load_backbone_weights(target.backbone, path)
    assert report.is_complete and report.source_format == "ours"
    assert all(not key.startswith("backbone.") for key in report.ignored) and len(report.ignored) > 0
    assert torch.equal(target.backbone.layer1[0].conv1.weight, source.backbone.layer1[0].conv1.weight)


def test_missing_file_fails_naming_it(tmp_path, make_tiny_net):
    missing = tmp_path / "pretrain_hrnet.pkl"
    with pytest.raises(CheckpointError, match="pretrain_hrnet.pkl.*does not exist"):
        load_backbone_weights(make_tiny_net("hrnet").backbone, missing)


def test_file_for_another_network_fails_loudly(tmp_path, make_tiny_net):
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(CheckpointError, match="unrelated.pt.*does not fit"):
        load_network_weights(make_tiny_net("hrnet"), unrelated, source_format="ours")

    resnet_file = tmp_path / "resnet_backbone.pt"
    torch.save(make_tiny_net("resnet").backbone.state_dict(), resnet_file)  # a few BN shapes coincide
    with pytest.raises(CheckpointError, match="resnet_backbone.pt.*does not fit"):
        load_backbone_weights(make_tiny_net("hrnet").backbone, resnet_file)


def test_strict_loading_reports_what_is_missing(tmp_path, make_tiny_net):
    state = make_tiny_net("hrnet").state_dict()
    del state["cam_head.out.bias"]
    path = tmp_path / "partial.pt"
    torch.save({"model": state, "meta": {}}, path)
    with pytest.raises(CheckpointError, match="(?s)1 missing.*cam_head.out.bias"):
        load_network_weights(make_tiny_net("hrnet"), path, strict=True)
    report = load_network_weights(make_tiny_net("hrnet"), path)
    assert report.missing == ["cam_head.out.bias"]


def test_pickled_objects_are_refused_unless_trusted(tmp_path, make_tiny_net):
    net = make_tiny_net("hrnet")
    path = tmp_path / "pickled.pt"
    torch.save({"model": net.state_dict(), "meta": {"args": argparse.Namespace(lr=1e-4)}}, path)
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        load_network_weights(make_tiny_net("hrnet"), path)
    assert load_network_weights(make_tiny_net("hrnet"), path, trust_pickle=True).is_complete


def test_import_cli_fails_with_a_message_on_a_bad_source(tmp_path, capsys):
    assert import_romp_main([str(tmp_path / "nope.pkl"), str(tmp_path / "out.pt"), "backbone=hrnet32"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
