"""ROMPNet: sizes and parameter counts measured on ROMP's code, map semantics, gradients."""

from __future__ import annotations

import pytest
import torch

from romp_hydra.models import HRNet, ResNet, ROMPNet
from romp_hydra.models.heads import add_coord_maps, coord_maps


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "backbone_cls, backbone_params, smpl, center, cam, total",
    [
        # romp_reference_numbers.md: measured on ROMP V2.1 (network only, without SMPL's `betas`).
        (HRNet, 28_535_552, 176_974, 167_809, 167_939, 29_048_274),
        (ResNet, 32_552_896, 195_406, 186_241, 186_371, 33_120_914),
    ],
)
def test_full_size_parameter_counts_match_romp(backbone_cls, backbone_params, smpl, center, cam, total):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        net = ROMPNet(backbone_cls())
    assert count(net.backbone) == backbone_params
    assert (count(net.smpl_head), count(net.center_head), count(net.cam_head)) == (smpl, center, cam)
    assert count(net) == total
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("backbone_cls, feature_channels", [(HRNet, 32), (ResNet, 64)])
def test_full_size_forward_at_512(backbone_cls, feature_channels):
    torch.manual_seed(0)
    net = ROMPNet(backbone_cls()).eval()
    assert net.backbone.out_channels == feature_channels
    images = torch.randint(0, 256, (1, 3, 512, 512), dtype=torch.uint8)
    with torch.no_grad():
        features = net.backbone(images)
        out = net(images)
    assert features.shape == (1, feature_channels, 128, 128)
    assert out["center_map"].shape == (1, 1, 64, 64)
    assert out["params_maps"].shape == (1, 145, 64, 64)
    assert out["center_map"].dtype == out["params_maps"].dtype == torch.float32
    assert bool((out["params_maps"][:, 0] > 0).all())  # scale = 1.1 ** raw


@pytest.mark.parametrize("backbone", ["hrnet", "resnet"])
@pytest.mark.parametrize("height, width", [(128, 128), (64, 96)])
def test_tiny_forward_shapes_follow_input_size(backbone, height, width, make_tiny_net):
    net = make_tiny_net(backbone).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width) * 255)
    assert out["center_map"].shape == (2, 1, height // 8, width // 8)
    assert out["params_maps"].shape == (2, 145, height // 8, width // 8)


def test_coord_maps_span_minus_one_to_one_for_the_actual_size():
    maps = coord_maps(torch.zeros(2, 4, 3, 5))
    assert maps.shape == (2, 2, 3, 5)
    expected_x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    expected_y = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.equal(maps[1, 0], expected_x.expand(3, 5))
    assert torch.equal(maps[1, 1], expected_y[:, None].expand(3, 5))
    assert add_coord_maps(torch.ones(2, 4, 3, 5)).shape == (2, 6, 3, 5)


def test_nothing_but_weights_and_bn_statistics_in_the_state_dict(make_tiny_net):
    net = make_tiny_net("resnet")
    keys = set(net.state_dict())
    assert not any("coord" in key or "pixel_" in key for key in keys)
    assert keys == {name for name, _ in net.named_parameters()} | {
        name for name, _ in net.named_buffers() if "running" in name or "num_batches" in name
    }


def test_output_maps_are_the_heads_with_camera_scale_exponentiated(make_tiny_net):
    torch.manual_seed(0)
    net = make_tiny_net("hrnet").eval()
    with torch.no_grad():
        for p in net.cam_head.out.parameters():
            p.normal_(std=0.5)  # raw camera values well away from 0 so 1.1**raw is distinguishable
        images = torch.rand(1, 3, 64, 64) * 255
        out = net(images)
        features = add_coord_maps(net.backbone(images))
        raw_cam = net.cam_head(features)
        smpl = net.smpl_head(features)
        center = net.center_head(features)
    params = out["params_maps"]
    torch.testing.assert_close(params[:, 0], 1.1 ** raw_cam[:, 0])
    assert not torch.allclose(params[:, 0], raw_cam[:, 0])
    torch.testing.assert_close(params[:, 1:3], raw_cam[:, 1:3])
    torch.testing.assert_close(params[:, 3:], smpl)
    torch.testing.assert_close(out["center_map"], center)


def _captured_conv1_input(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    seen = {}
    handle = backbone.conv1.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        backbone(images)
    handle.remove()
    return seen["x"]


def test_backbones_normalise_uint8_images_like_romp(tiny_backbone_kwargs):
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    images[:, :, :, 16:] = 255
    hrnet_in = _captured_conv1_input(HRNet(**tiny_backbone_kwargs["hrnet"]).eval(), images)
    assert hrnet_in.dtype == torch.float32
    assert torch.equal(hrnet_in[0, :, 0, :2], torch.full((3, 2), -1.0))  # x/255*2-1: 0 -> -1
    assert torch.equal(hrnet_in[0, :, 0, 16:18], torch.full((3, 2), 1.0))  # 255 -> 1
    resnet_in = _captured_conv1_input(ResNet(**tiny_backbone_kwargs["resnet"]).eval(), images)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(resnet_in[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(resnet_in[0, :, 0, 31], (1 - mean) / std)


def test_uint8_and_float_images_give_the_same_maps(make_tiny_net):
    net = make_tiny_net("hrnet").eval()
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        a, b = net(images), net(images.float())
    assert torch.equal(a["params_maps"], b["params_maps"])


def test_channels_last_gives_the_same_maps(make_tiny_net):
    net = make_tiny_net("resnet").eval()
    images = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        reference = net(images)["params_maps"]
        net = net.to(memory_format=torch.channels_last)
        result = net(images.contiguous(memory_format=torch.channels_last))["params_maps"]
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-5)


def test_backward_reaches_camera_head_and_backbone(make_tiny_net):
    net = make_tiny_net("hrnet").train()
    out = net(torch.rand(2, 3, 64, 64) * 255)
    (out["params_maps"][:, 0].sum() + out["center_map"].sum()).backward()  # through the camera scale
    for param in (
        net.cam_head.out.weight,
        net.cam_head.reduce[0].weight,
        net.center_head.out.bias,
        net.backbone.conv1.weight,
    ):
        assert param.grad is not None and bool(param.grad.abs().sum() > 0)
    assert bool((net.smpl_head.out.weight.grad == 0).all())  # not in this loss


def test_romp_initialisation(tiny_backbone_kwargs):
    torch.manual_seed(0)
    net = ROMPNet(ResNet(**tiny_backbone_kwargs["resnet"]), head_channels=16)
    weight = net.backbone.layer4[0].conv2.weight  # 64 x 64 x 3 x 3
    assert abs(weight.std().item() - 0.001) < 1e-4
    assert torch.equal(net.cam_head.out.bias, torch.zeros(3))
    assert torch.equal(net.backbone.deconv_layers[0].weight.abs().max() < 0.01, torch.tensor(True))
    assert torch.equal(net.center_head.reduce[1].weight, torch.ones(16))
    assert torch.equal(net.center_head.reduce[1].bias, torch.zeros(16))


def test_wrong_layout_is_rejected_with_the_fix(make_tiny_net):
    with pytest.raises(ValueError, match="permute"):
        make_tiny_net("hrnet")(torch.zeros(1, 64, 64, 3))


def test_invalid_widths_are_rejected():
    with pytest.raises(ValueError, match="stage_modules"):
        HRNet(stage_modules=(1, 4))
    with pytest.raises(ValueError, match="layers"):
        ResNet(layers=(3, 4, 6))


def test_autocast_needs_no_code_changes(make_tiny_net):
    net = make_tiny_net("resnet").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert out["params_maps"].dtype == out["center_map"].dtype == torch.float32
    assert bool((out["params_maps"][:, 0] > 0).all())
    out["params_maps"].sum().backward()
    assert net.cam_head.out.weight.grad.abs().sum() > 0
