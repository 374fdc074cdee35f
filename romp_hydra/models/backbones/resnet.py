"""ResNet backbone with three deconvolutions back to stride 4 (ROMP's `ResNet_50`).

With the default arguments: torchvision-style ResNet-50 trunk (conv7x7 s2, maxpool, Bottleneck layers
[3, 4, 6, 3], stride on the 3x3 conv) down to 2048 x H/32 x W/32, then three ConvTranspose2d(k=4, s=2, p=1)
+ BN + ReLU, 2048 -> 256 -> 128 -> 64, giving B x 64 x H/4 x W/4 (32,552,896 parameters).

Attribute names are torchvision's (`conv1`, `bn1`, `layer1..4`) plus ROMP's `deconv_layers`
(a flat Sequential: indices 0/3/6 are the deconvolutions, 1/4/7 their BatchNorms), so ROMP's checkpoints,
ROMP's `pretrain_resnet.pkl` and torchvision's ImageNet ResNet-50 weights (its `fc.*` skipped) all load.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from romp_hydra.models.blocks import Bottleneck, batch_norm, make_layer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet(nn.Module):
    """ResNet trunk + deconvolutions, returning ``B x deconv_channels[-1] x H/4 x W/4`` from RGB in 0..255.

    Args:
        layers: Bottleneck blocks in layer1..layer4 (ResNet-50: 3, 4, 6, 3).
        base_width: stem width and planes of layer1; layer k has ``base_width * 2**(k-1)`` planes and
            ``4x`` that many output channels (ResNet-50: 64, so layer4 outputs 2048).
        deconv_channels: output channels of the three stride-2 deconvolutions (ROMP: 256, 128, 64).

    Images are normalised inside as ROMP does for ResNet: ``x / 255`` then ImageNet mean/std.
    """

    # torchvision's ImageNet classifier; present in its checkpoints, absent here.
    ignored_pretrained_prefixes = ("fc.",)

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 64,
        deconv_channels: Sequence[int] = (256, 128, 64),
    ):
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(
                f"ResNet layers={list(layers)}: need four positive block counts (ResNet-50: [3, 4, 6, 3])"
            )
        if len(deconv_channels) != 3 or min(deconv_channels) < 1:
            raise ValueError(
                f"ResNet deconv_channels={list(deconv_channels)}: need three positive widths "
                "(ROMP: [256, 128, 64]); "
                "three stride-2 deconvolutions bring stride 32 back to stride 4"
            )
        if base_width < 1:
            raise ValueError(f"ResNet base_width={base_width}: must be >= 1 (ResNet-50: 64)")
        self.out_channels = int(deconv_channels[-1])

        self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = batch_norm(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = base_width
        stages = []
        for k, num_blocks in enumerate(layers):
            planes = base_width * 2**k
            stages.append(make_layer(Bottleneck, in_channels, planes, num_blocks, stride=1 if k == 0 else 2))
            in_channels = planes * Bottleneck.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        deconvs = []
        for out_c in deconv_channels:
            deconvs += [
                nn.ConvTranspose2d(
                    in_channels, out_c, kernel_size=4, stride=2, padding=1, output_padding=0, bias=False
                ),
                batch_norm(out_c),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_c
        self.deconv_layers = nn.Sequential(*deconvs)

        # Not persistent: constants, so they stay out of the state dict but follow .to(device).
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False
        )

    def forward(self, images: Tensor) -> Tensor:
        # (x/255 - mean)/std == (x - 255 mean)/(255 std): one subtraction and one division per pixel.
        x = (images.to(torch.float32) - self.pixel_mean) / self.pixel_std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.deconv_layers(x)
