"""ROMPNet: backbone -> CoordConv -> centre / camera / SMPL heads (ROMP v1, `romp_model.py::ROMP`).

Channel layout of ``params_maps`` (145 channels; ROMP's `SMPLWrapper` layout):

=========  ======  ===================================================================
slice      size    meaning
=========  ======  ===================================================================
0:3        3       weak-perspective camera (s, tx, ty), s already ``1.1 ** raw`` (> 0)
3:9        6       global orientation, 6D (ROMP interleaving, see geometry.rotations)
9:135      126     body pose, 21 joints x 6D (SMPL joints 1..21)
135:145    10      SMPL betas
=========  ======  ===================================================================
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from romp_hydra.models.blocks import init_romp_weights
from romp_hydra.models.heads import MapHead, add_coord_maps

CAM_DIM = 3
POSE_JOINTS = 22  # SMPL root + 21 body joints; the two hand joints are always zero.
ROT6D_DIM = 6
BETAS_DIM = 10
SMPL_DIM = POSE_JOINTS * ROT6D_DIM + BETAS_DIM  # 142
PARAMS_DIM = CAM_DIM + SMPL_DIM  # 145

CAM_SLICE = slice(0, 3)
GLOBAL_ORIENT_6D_SLICE = slice(3, 9)
BODY_POSE_6D_SLICE = slice(9, 135)
BETAS_SLICE = slice(135, 145)

# The camera scale is predicted as an exponent so that it stays positive: s = CAM_SCALE_BASE ** raw.
CAM_SCALE_BASE = 1.1


class ROMPNet(nn.Module):
    """ROMP's network: ``forward(images) -> {"center_map": (B,1,H/8,W/8), "params_maps": (B,145,H/8,W/8)}``.

    Args:
        backbone: module mapping ``B x 3 x H x W`` RGB images in 0..255 (uint8 or float) to stride-4 features;
            it must expose ``out_channels`` and normalises the images itself.
        head_channels: width of each head (ROMP: 64).
        head_blocks: BasicBlocks per head (ROMP: 2).
        init_weights: apply ROMP's from-scratch initialisation (conv N(0, 0.001), BN 1/0) to the whole
            network, as ROMP does before loading a backbone pretrain file.

    The outputs are float32 even under autocast (as ROMP's `.float()`); the raw centre map has no sigmoid
    (ROMP thresholds it at 0.2 directly). No SMPL data lives inside the network.

    Difference to ROMP: ROMP raises the camera scale to ``1.1 ** raw`` in place, which breaks backward
    ("a variable needed for gradient computation has been modified by an inplace operation"); here the same
    values are built out of place.
    """

    def __init__(
        self, backbone: nn.Module, head_channels: int = 64, head_blocks: int = 2, init_weights: bool = True
    ):
        super().__init__()
        if not hasattr(backbone, "out_channels"):
            raise TypeError(
                f"ROMPNet backbone {type(backbone).__name__} has no `out_channels` attribute; "
                "backbones must say how many feature channels they return"
            )
        self.backbone = backbone
        in_channels = int(backbone.out_channels) + 2  # + CoordConv x, y
        self.smpl_head = MapHead(in_channels, SMPL_DIM, head_channels, head_blocks)
        self.center_head = MapHead(in_channels, 1, head_channels, head_blocks)
        self.cam_head = MapHead(in_channels, CAM_DIM, head_channels, head_blocks)
        if init_weights:
            self.apply(init_romp_weights)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"ROMPNet expects images of shape B x 3 x H x W (RGB, 0..255), got {tuple(images.shape)}; "
                "a B x H x W x 3 batch (ROMP's layout) needs images.permute(0, 3, 1, 2)"
            )
        features = add_coord_maps(self.backbone(images))
        smpl = self.smpl_head(features)
        center = self.center_head(features)
        raw_cam = self.cam_head(features)
        cam = torch.cat([torch.pow(CAM_SCALE_BASE, raw_cam[:, :1]), raw_cam[:, 1:]], dim=1)
        return {
            "center_map": center.float(),
            "params_maps": torch.cat([cam, smpl], dim=1).float(),
        }
