"""Fixtures for the model tests: tiny networks and fake ROMP checkpoints built from ROMP's key listings.

`data/romp_*_network_keys.txt` list the network part of ROMP's state dict (`key<TAB>[shape]`, state-dict
order) as measured on ROMP's own code; the fake checkpoints have exactly those names and shapes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from romp_hydra.models import HRNet, ResNet, ROMPNet

DATA_DIR = Path(__file__).parent / "data"
LISTINGS = {
    "hrnet32": DATA_DIR / "romp_hrnet32_network_keys.txt",
    "resnet50": DATA_DIR / "romp_resnet50_network_keys.txt",
}

TINY_HRNET = {
    "width": 8,
    "stem_channels": 16,
    "layer1_blocks": 1,
    "stage_modules": (1, 1, 1),
    "blocks_per_branch": 1,
}
TINY_RESNET = {"layers": (1, 1, 1, 1), "base_width": 8, "deconv_channels": (32, 16, 16)}


def read_listing(backbone: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in LISTINGS[backbone].read_text().splitlines():
        key, shape = line.split("\t")
        rows.append((key, tuple(ast.literal_eval(shape))))
    return rows


def fake_romp_state_dict(backbone: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values with ROMP's key names and shapes, `module.` prefix as DataParallel saves them.

    BN running variances are positive and num_batches_tracked are int64 scalars, like real ones.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in read_listing(backbone):
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5
        else:
            value = torch.randn(shape, generator=generator) * 0.05
        state["module." + key] = value
    return state


def tiny_net(backbone: str = "hrnet", head_channels: int = 16) -> ROMPNet:
    body = HRNet(**TINY_HRNET) if backbone == "hrnet" else ResNet(**TINY_RESNET)
    return ROMPNet(body, head_channels=head_channels, head_blocks=1)


@pytest.fixture
def make_tiny_net():
    """make_tiny_net('hrnet' | 'resnet', head_channels=16) -> a small ROMPNet of the same code."""
    return tiny_net


@pytest.fixture
def tiny_backbone_kwargs():
    return {"hrnet": dict(TINY_HRNET), "resnet": dict(TINY_RESNET)}


@pytest.fixture
def romp_state_dict():
    """romp_state_dict('hrnet32' | 'resnet50', seed=0) -> a fake ROMP checkpoint (module.* keys)."""
    return fake_romp_state_dict


@pytest.fixture
def romp_listing():
    return read_listing
