"""Which weights a backbone starts from: the message for a missing pretrain file and the run's `init` tag.

ROMP v1 starts HRNet-32 from ``trained_models/pretrain_hrnet.pkl`` and ResNet-50 from ``pretrain_resnet.pkl``
(``config.py`` ``hrnet_pretrain`` / ``resnet_pretrain``) and silently trains from its random init when the file is
missing, which its users report as 2-3 weeks of training instead of 1-2 days (ROMP issues #115, #118, #161).
Here the v1 backbones point at those files (``conf/backbone/hrnet32.yaml``, ``resnet50.yaml``) and a missing
file stops the run before any work, with this module's message.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRETRAINED_FILES", "initialisation_tag", "missing_pretrained_message"]

# File name -> where it comes from and what can replace it.
PRETRAINED_FILES: dict[str, str] = {
    "pretrain_hrnet.pkl": (
        "HRNet-32 pretrained on 2D pose by ROMP's author; in trained_models.zip of ROMP's GitHub release v1.1 "
        "(https://github.com/Arthur151/ROMP/releases). HigherHRNet-W32 COCO weights "
        "(pose_higher_hrnet_w32_512.pth) also work (ROMP issues #177, #244)"
    ),
    "pretrain_resnet.pkl": (
        "ResNet-50 from trained_models.zip of ROMP's GitHub release v1.1 "
        "(https://github.com/Arthur151/ROMP/releases). torchvision's ImageNet resnet50 weights also work, "
        "converging more slowly (ROMP issues #115, #149)"
    ),
}


def missing_pretrained_message(path: str | os.PathLike) -> str:
    """What to tell a user whose ``backbone.pretrained`` file does not exist: where to get it, how to opt out."""
    path = Path(path)
    origin = PRETRAINED_FILES.get(path.name, "the backbone weights you meant to start from")
    return (
        f"backbone.pretrained={str(path)!r} does not exist.\n"
        f"  It is {origin}.\n"
        f"  fix: put the file at {str(path)!r} (paths.model_dir is its folder), or point backbone.pretrained at "
        f"it, or train from ROMP's random init with backbone.pretrained=null (ROMP's users report weeks instead "
        f"of days from scratch)"
    )


def initialisation_tag(pretrained: str | os.PathLike | None, ckpt_path: str | os.PathLike | None = None) -> str:
    """The run's ``init`` tag: ``ckpt:<path>`` (whole network from a checkpoint: fine-tuning or resume, which
    overwrites the backbone too), else ``pretrained:<path>`` (backbone file), else ``scratch`` (ROMP's init)."""
    if ckpt_path:
        return f"ckpt:{os.fspath(ckpt_path)}"
    if pretrained:
        return f"pretrained:{os.fspath(pretrained)}"
    return "scratch"
