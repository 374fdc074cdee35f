"""Backbones: images (B x 3 x H x W, RGB 0..255) -> stride-4 features; each exposes `out_channels`."""

from romp_hydra.models.backbones.hrnet import HighResolutionModule, HRNet
from romp_hydra.models.backbones.resnet import ResNet

__all__ = ["HRNet", "HighResolutionModule", "ResNet"]
