"""HRNet backbone (the HigherHRNet-W32 trunk that ROMP uses), returning stride-4 features.

Structure with the default arguments (HRNet-W32, 28,535,552 parameters):

* stem: conv3x3 s2 (3 -> 64), BN, ReLU, conv3x3 s2 (64 -> 64), BN, ReLU             -> 1/4 resolution
* layer1: 4 Bottlenecks (64 -> 256)
* stage 2: 1 module, 2 branches; stage 3: 4 modules, 3 branches; stage 4: 3 modules, 4 branches.
  Branch k has ``width * 2**k`` channels and runs at 1/(4 * 2**k) resolution; every module runs
  ``blocks_per_branch`` BasicBlocks per branch and then fuses all branches into each other by summation.
* the last module of stage 4 only produces the highest-resolution branch -> B x width x H/4 x W/4.

Attribute names mirror HigherHRNet / ROMP (`conv1`, `bn1`, `conv2`, `bn2`, `layer1`, `transition1..3`,
`stage2..4` with `branches` and `fuse_layers`), so ROMP's `backbone.*` keys, ROMP's `pretrain_hrnet.pkl` and
HigherHRNet's COCO weights load without renaming. Where HigherHRNet stores `None` (a branch that needs no
transition, a branch fused with itself) this module uses `nn.Identity`, which has no state-dict keys either.

Difference to HigherHRNet: the fuse step upsamples to the exact size of the target branch instead of by a
fixed factor. For inputs that are multiples of 32 (ROMP always uses 512) the result is identical; other sizes
work instead of failing on a shape mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from romp_hydra.models.blocks import BasicBlock, Bottleneck, batch_norm, conv1x1, conv3x3, make_layer


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride), batch_norm(out_channels), nn.ReLU(inplace=True)
    )


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by the all-to-all multi-resolution fusion."""

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(make_layer(BasicBlock, c, c, num_blocks) for c in channels)
        # With multi_scale_output=False only the highest-resolution output (branch 0) is fused and returned.
        num_outputs = len(channels) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_layer(channels, src, dst) for src in range(len(channels)))
            for dst in range(num_outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_layer(channels: Sequence[int], src: int, dst: int) -> nn.Module:
        """Brings branch `src` to the width of branch `dst` (resolution: striding here, or in `forward`)."""
        if src == dst:
            return nn.Identity()
        if src > dst:
            # Lower resolution -> 1x1 conv to the target width; upsampled in forward().
            return nn.Sequential(conv1x1(channels[src], channels[dst]), batch_norm(channels[dst]))
        # Higher resolution -> (dst - src) stride-2 3x3 convs; only the last changes width and has no ReLU.
        steps = []
        for step in range(dst - src):
            if step == dst - src - 1:
                steps.append(
                    nn.Sequential(conv3x3(channels[src], channels[dst], 2), batch_norm(channels[dst]))
                )
            else:
                steps.append(_conv_bn_relu(channels[src], channels[src], 2))
        return nn.Sequential(*steps)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for dst, row in enumerate(self.fuse_layers):
            target_size = xs[dst].shape[-2:]
            total = None
            for src, layer in enumerate(row):
                y = layer(xs[src])
                if src > dst:
                    y = F.interpolate(y, size=target_size, mode="nearest")
                total = y if total is None else total + y
            fused.append(self.relu(total))
        return fused


class HRNet(nn.Module):
    """HRNet trunk returning ``B x width x H/4 x W/4`` features from ``B x 3 x H x W`` RGB images in 0..255.

    Args:
        width: channels of the highest-resolution branch (32 for HRNet-W32); branch k has ``width * 2**k``.
        stem_channels: channels of the two stem convolutions; layer1 outputs ``4 * stem_channels``.
        layer1_blocks: Bottlenecks in layer1 (4 in HRNet).
        stage_modules: number of HighResolutionModules in stages 2, 3 and 4 (HRNet: 1, 4, 3).
        blocks_per_branch: BasicBlocks per branch in every module (4 in HRNet).

    Images are normalised inside as ROMP does for HRNet: ``x / 255 * 2 - 1``.
    """

    # Keys that HigherHRNet's COCO checkpoints carry besides the trunk (its own heads); skipped when loading.
    ignored_pretrained_prefixes = ("final_layers.", "deconv_layers.")

    def __init__(
        self,
        width: int = 32,
        stem_channels: int = 64,
        layer1_blocks: int = 4,
        stage_modules: Sequence[int] = (1, 4, 3),
        blocks_per_branch: int = 4,
    ):
        super().__init__()
        if len(stage_modules) != 3 or min(stage_modules) < 1:
            raise ValueError(
                f"HRNet stage_modules={list(stage_modules)}: need three positive module counts "
                "for stages 2, 3, 4 "
                "(HRNet-W32 uses [1, 4, 3])"
            )
        if min(width, stem_channels, layer1_blocks, blocks_per_branch) < 1:
            raise ValueError(
                f"HRNet width={width}, stem_channels={stem_channels}, layer1_blocks={layer1_blocks}, "
                f"blocks_per_branch={blocks_per_branch}: all must be >= 1"
            )
        self.out_channels = width

        self.conv1 = conv3x3(3, stem_channels, stride=2)
        self.bn1 = batch_norm(stem_channels)
        self.conv2 = conv3x3(stem_channels, stem_channels, stride=2)
        self.bn2 = batch_norm(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, stem_channels, stem_channels, layer1_blocks)
        layer1_channels = stem_channels * Bottleneck.expansion

        branch_channels = [width * 2**k for k in range(4)]
        self.transition1 = self._make_transition([layer1_channels], branch_channels[:2])
        self.stage2 = self._make_stage(branch_channels[:2], stage_modules[0], blocks_per_branch)
        self.transition2 = self._make_transition(branch_channels[:2], branch_channels[:3])
        self.stage3 = self._make_stage(branch_channels[:3], stage_modules[1], blocks_per_branch)
        self.transition3 = self._make_transition(branch_channels[:3], branch_channels[:4])
        self.stage4 = self._make_stage(
            branch_channels, stage_modules[2], blocks_per_branch, multi_scale_output=False
        )

    @staticmethod
    def _make_transition(in_channels: Sequence[int], out_channels: Sequence[int]) -> nn.ModuleList:
        """Adapts existing branches (if their width changes) and spawns a new, half-resolution branch."""
        layers = []
        for k, out_c in enumerate(out_channels):
            if k < len(in_channels):
                same = in_channels[k] == out_c
                layers.append(nn.Identity() if same else _conv_bn_relu(in_channels[k], out_c, stride=1))
            else:
                # The new branch comes from the lowest-resolution existing branch; the extra Sequential level
                # reproduces HigherHRNet's key names (transitionN.k.0.0.weight).
                layers.append(nn.Sequential(_conv_bn_relu(in_channels[-1], out_c, stride=2)))
        return nn.ModuleList(layers)

    @staticmethod
    def _make_stage(
        channels: Sequence[int], num_modules: int, num_blocks: int, multi_scale_output: bool = True
    ) -> nn.Sequential:
        modules = [
            HighResolutionModule(channels, num_blocks, multi_scale_output or i < num_modules - 1)
            for i in range(num_modules)
        ]
        return nn.Sequential(*modules)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, xs: list[Tensor]) -> list[Tensor]:
        return [layer(xs[k] if k < len(xs) else xs[-1]) for k, layer in enumerate(transition)]

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(torch.float32) / 255.0 * 2.0 - 1.0
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = self._apply_transition(self.transition1, [x])
        xs = self.stage2(xs)
        xs = self._apply_transition(self.transition2, xs)
        xs = self.stage3(xs)
        xs = self._apply_transition(self.transition3, xs)
        return self.stage4(xs)[0]
