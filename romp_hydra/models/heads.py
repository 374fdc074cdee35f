"""ROMP's map heads and the CoordConv step that feeds them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from romp_hydra.models.blocks import BasicBlock, batch_norm


def coord_maps(features: Tensor) -> Tensor:
    """Two channels (x, y), each mapped linearly to [-1, 1] over the feature map's actual width / height.

    Channel 0 is x (column j -> j/(W-1)*2-1), channel 1 is y (row i), as ROMP's `get_coord_maps`. Computed for
    the given size, dtype and device on every call (cheap), so any input size and AMP work and nothing enters
    the state dict. Returns ``B x 2 x H x W``.
    """
    batch, _, height, width = features.shape
    xs = torch.linspace(-1.0, 1.0, width, device=features.device, dtype=features.dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=features.device, dtype=features.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y)).unsqueeze(0).expand(batch, -1, -1, -1)


def add_coord_maps(features: Tensor) -> Tensor:
    """CoordConv input: features with the (x, y) coordinate channels appended (C -> C + 2)."""
    return torch.cat([features, coord_maps(features)], dim=1)


class MapHead(nn.Module):
    """One ROMP head: stride-2 conv3x3 (+bias) -> BN -> ReLU -> `num_blocks` BasicBlocks -> conv1x1 (+bias).

    Takes the stride-4 CoordConv features and predicts `out_channels` maps at stride 8.

    Submodules and their ROMP counterparts (`final_layers.N` in ROMP's checkpoints, see
    `romp_hydra.models.checkpoint`): ``reduce`` = ``[0]``, ``blocks.k`` = ``[1].k.0`` (ROMP wraps each
    BasicBlock in its own Sequential), ``out`` = ``[2]``.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 64, num_blocks: int = 2):
        super().__init__()
        if channels < 1 or num_blocks < 0:
            raise ValueError(
                f"MapHead channels={channels}, num_blocks={num_blocks}: need channels >= 1, num_blocks >= 0"
            )
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=3, stride=2, padding=1, bias=True),
            batch_norm(channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*(BasicBlock(channels, channels) for _ in range(num_blocks)))
        self.out = nn.Conv2d(channels, out_channels, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.blocks(self.reduce(x)))
