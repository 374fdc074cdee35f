"""Build ROMP's network from the composed Hydra config.

Config keys (conf/backbone/*.yaml and conf/model/*.yaml):

``backbone``
    ``_target_``            class returning stride-4 features and exposing ``out_channels``:
                            ``romp_hydra.models.backbones.HRNet`` or ``romp_hydra.models.backbones.ResNet``.
    constructor kwargs      HRNet: ``width`` (32), ``stem_channels`` (64), ``layer1_blocks`` (4),
                            ``stage_modules`` ([1, 4, 3]), ``blocks_per_branch`` (4).
                            ResNet: ``layers`` ([3, 4, 6, 3]), ``base_width`` (64),
                            ``deconv_channels`` ([256, 128, 64]).
                            The defaults (in brackets) are HRNet-W32 / ResNet-50 as in ROMP.
    ``pretrained``          null (train from ROMP's init) or a path to backbone weights: ROMP's
                            pretrain_hrnet.pkl / pretrain_resnet.pkl, HigherHRNet-W32 COCO, torchvision
                            ImageNet ResNet-50, or a whole ROMP / romp_hydra checkpoint (its backbone part
                            is used).
                            A missing file is an error (ROMP silently skipped it).
    ``pretrained_format``   auto | backbone | romp | ours (auto detects from the keys).
    ``init``                romp | kaiming: the backbone's initialisation before any pretrained weights
                            (romp: N(0, 0.001) for every conv, as ROMP; kaiming: He normal, which trains a
                            backbone from scratch faster). The heads always get ROMP's.

``model``
    ``head_channels``       width of each head (64).
    ``head_blocks``         BasicBlocks per head (2).
    ``center_threshold``    centre-map detection threshold (0.2)            } not used by `build`; read by
    ``max_detections``      peaks kept per image (64 = ROMP's max_person)   } `models.model.build_model` into
    ``matching``            nearest_center | gt_center (nearest_center)     } its `PeoplePicker`.

The heads always run at stride 8 (one stride-2 conv after the stride-4 backbone), so the centre map is
``input_size / 8`` (ROMP: 512 -> 64); `config.validate` checks ``data.centermap_size`` against that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import hydra.utils
from omegaconf import DictConfig, OmegaConf
from torch import nn

from romp_hydra.config.schema import BACKBONE_INITS
from romp_hydra.models.backbones import HRNet, ResNet
from romp_hydra.models.blocks import init_kaiming
from romp_hydra.models.checkpoint import load_backbone_weights
from romp_hydra.models.romp import ROMPNet

log = logging.getLogger(__name__)

# Keys of cfg.backbone that configure initialisation and loading, not the backbone's constructor.
BACKBONE_LOADING_KEYS = ("pretrained", "pretrained_format", "init")
MODEL_KEYS = ("head_channels", "head_blocks", "center_threshold", "max_detections", "matching")

# Full-size backbones by name (the class defaults are ROMP's), for tools that run without Hydra.
STANDARD_BACKBONES = {"hrnet32": HRNet, "resnet50": ResNet}


def _as_dict(node: Any, name: str) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    if isinstance(node, Mapping):
        return dict(node)
    raise TypeError(f"cfg.{name} must be a mapping, got {type(node).__name__}")


def build_backbone(backbone_cfg: Any) -> nn.Module:
    """Instantiate ``cfg.backbone`` (without its loading keys) through its ``_target_``."""
    options = _as_dict(backbone_cfg, "backbone")
    if "_target_" not in options:
        raise ValueError(
            f"cfg.backbone has no _target_ (keys: {sorted(options)}); "
            "choose a backbone config, e.g. backbone=hrnet32 or backbone=resnet50"
        )
    for key in BACKBONE_LOADING_KEYS:
        options.pop(key, None)
    backbone = hydra.utils.instantiate(options, _convert_="all")
    if not hasattr(backbone, "out_channels"):
        raise TypeError(
            f"backbone {options['_target_']} has no `out_channels`; ROMPNet needs it to size the heads"
        )
    return backbone


def build(cfg: Any) -> ROMPNet:
    """Build the network from the composed config (reads ``cfg.backbone`` and ``cfg.model``, see above).

    Weights are initialised as ROMP does (conv N(0, 0.001), BN 1/0; ``backbone.init=kaiming``: He normal for
    the backbone), then ``backbone.pretrained`` is loaded if set. Whole-network checkpoints (``ckpt_path``, resume) are the trainer's job:
    `romp_hydra.models.checkpoint.load_network_weights`.
    """
    model_cfg = _as_dict(cfg.model, "model")
    unknown = sorted(set(model_cfg) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"cfg.model has unknown key(s) {unknown}; known keys: {', '.join(MODEL_KEYS)}")
    init = str(cfg.backbone.get("init") or "romp")
    if init not in BACKBONE_INITS:  # config.validate says so first for a composed run
        raise ValueError(f"backbone.init={init!r}; use one of {', '.join(BACKBONE_INITS)}")
    net = ROMPNet(
        build_backbone(cfg.backbone),
        head_channels=int(model_cfg.get("head_channels", 64)),
        head_blocks=int(model_cfg.get("head_blocks", 2)),
    )
    if init == "kaiming":  # "romp": ROMPNet's own init is kept
        net.backbone.apply(init_kaiming)
    pretrained = cfg.backbone.get("pretrained")
    if pretrained:
        report = load_backbone_weights(
            net.backbone, pretrained, cfg.backbone.get("pretrained_format") or "auto"
        )
        log.info("backbone pretraining: %s", report.summary())
    return net
