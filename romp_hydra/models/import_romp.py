"""Convert a ROMP checkpoint into a romp_hydra checkpoint, once.

    python -m romp_hydra.models.import_romp SRC DST [backbone=hrnet32|resnet50] [--trust-pickle]

SRC is a checkpoint saved by ROMP (`module.`-prefixed keys, e.g. ROMP_HRNet32_V1.pkl or ROMP_ResNet50_V1.pkl).
Without ``backbone=`` the backbone is recognised from the keys. The weights are loaded into a full-size
`ROMPNet` and must fit completely (no missing, unexpected or mis-shaped weight; ROMP's SMPL buffers are
dropped), then saved as ``{"model": state_dict, "meta": {...}}`` for ``ckpt_path=DST``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from romp_hydra.models.build import STANDARD_BACKBONES
from romp_hydra.models.checkpoint import (
    CheckpointError,
    LoadReport,
    load_network_weights,
    read_checkpoint,
    save_network,
)
from romp_hydra.models.romp import ROMPNet


def guess_backbone(src: str, trust_pickle: bool = False) -> str:
    """'hrnet32' or 'resnet50' from the checkpoint's backbone keys."""
    state, _ = read_checkpoint(src, trust_pickle)
    if any(key.startswith("backbone.stage4.") for key in state):
        return "hrnet32"
    if any(key.startswith("backbone.layer4.") for key in state):
        return "resnet50"
    raise CheckpointError(
        f"cannot tell the backbone of {src!r} from its keys; pass backbone=hrnet32 or backbone=resnet50"
    )


def convert(src: str, dst: str, backbone: str | None = None, trust_pickle: bool = False) -> LoadReport:
    """Load ROMP checkpoint `src` strictly into a full-size network and save it to `dst` in our format."""
    name = backbone or guess_backbone(src, trust_pickle)
    if name not in STANDARD_BACKBONES:
        raise ValueError(
            f"backbone={name!r} is not a ROMP backbone; use one of {', '.join(STANDARD_BACKBONES)}"
        )
    net = ROMPNet(STANDARD_BACKBONES[name](), init_weights=False)
    report = load_network_weights(net, src, source_format="romp", strict=True, trust_pickle=trust_pickle)
    meta = {
        "source": os.path.abspath(src),
        "source_format": "romp",
        "backbone": name,
        "loaded_keys": len(report.loaded),
        "ignored_keys": len(report.ignored),
    }
    save_network(net, dst, meta)
    return report


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m romp_hydra.models.import_romp",
        description="Convert a ROMP checkpoint (module.* keys) into a romp_hydra checkpoint.",
    )
    parser.add_argument("src", help="ROMP checkpoint (.pkl / .pth)")
    parser.add_argument("dst", help="output file for romp_hydra (ckpt_path=...)")
    parser.add_argument(
        "overrides", nargs="*", help="backbone=hrnet32 or backbone=resnet50 (default: from the keys)"
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow pickled non-tensor objects in SRC (only for files you trust)",
    )
    args = parser.parse_args(argv)
    args.backbone = None
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if key != "backbone" or not sep:
            parser.error(f"unknown argument {item!r}; the only option is backbone=hrnet32|resnet50")
        args.backbone = value
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_args(argv)
    try:
        report = convert(args.src, args.dst, args.backbone, args.trust_pickle)
    except (CheckpointError, ValueError) as err:
        print(f"import_romp: {err}", file=sys.stderr)
        return 1
    print(f"{report.summary()}\nwrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
