"""Loading network weights from the files users have, with a report of what matched.

Accepted files (all read with ``torch.load(weights_only=True)``; ROMP's ``.pkl`` files are torch.save'd state
dicts). A leading ``module.`` (DataParallel / DDP) is stripped from every key, and a state dict wrapped as
``{"model": ...}`` (ours) or ``{"state_dict": ...}`` is unwrapped.

==============  =================================================  ===================================
format          what it is                                         keys
==============  =================================================  ===================================
``ours``        saved by romp_hydra (`save_network`, trainer)      ``backbone.*``, ``*_head.*``
``romp``        ROMP's released / self-trained checkpoints         ``backbone.*``, ``final_layers.*``
``backbone``    bare backbone weights: ROMP's pretrain_hrnet.pkl /  ``conv1.weight``, ...
                pretrain_resnet.pkl, HigherHRNet-W32 COCO,
                torchvision ImageNet ResNet-50
==============  =================================================  ===================================

ROMP -> ours key mapping (``N`` = ROMP's head index: 1 = SMPL params (142), 2 = centre (1), 3 = camera (3)):

====================================  ==================================
ROMP                                  romp_hydra
====================================  ==================================
``backbone.<rest>``                   ``backbone.<rest>`` (same names)
``final_layers.N.0.<rest>``           ``<head>.reduce.<rest>``
``final_layers.N.1.<k>.0.<rest>``     ``<head>.blocks.<k>.<rest>``
``final_layers.N.2.<rest>``           ``<head>.out.<rest>``
``_result_parser.*`` (SMPL data)      ignored
====================================  ==================================

with ``<head>`` = ``smpl_head`` (N=1), ``center_head`` (N=2), ``cam_head`` (N=3).

Entries a file is known to carry but the network does not need are *ignored* (counted, not an error):
ROMP's SMPL buffers, HigherHRNet's own heads (``final_layers.*`` / ``deconv_layers.*`` in a bare HRNet file),
torchvision's ``fc.*``. A missing ``num_batches_tracked`` (absent from old torchvision files) is not reported
as missing: with momentum BatchNorm it is never used.

Differences to ROMP: ROMP silently skips a missing pretrain file; here a missing file, an unreadable file, or
a file that does not fit (no weight matches, or more weights are unexpected / mis-shaped than match: the file
is for another backbone) raises `CheckpointError` naming the file.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from romp_hydra.models.backbones.pretrained import missing_pretrained_message

log = logging.getLogger(__name__)

FORMATS = ("auto", "ours", "romp", "backbone")
ROMP_HEAD_NAMES = {1: "smpl_head", 2: "center_head", 3: "cam_head"}
# ROMP keeps its SMPL model (a `betas` parameter and SMPL buffers) inside the network module.
ROMP_IGNORED_PREFIXES = ("_result_parser.",)
DATA_PARALLEL_PREFIX = "module."

_ROMP_HEAD_KEY = re.compile(r"^final_layers\.(\d+)\.(.*)$")
_ROMP_BLOCK_KEY = re.compile(r"^1\.(\d+)\.0\.(.*)$")
_OUR_HEAD_KEY = re.compile(r"^(smpl_head|center_head|cam_head)\.(reduce|blocks|out)\.(.*)$")


class CheckpointError(RuntimeError):
    """A weight file is missing, unreadable, or does not fit the network."""


@dataclass
class LoadReport:
    """What happened when a file was loaded into a module (key names are the module's own)."""

    path: str
    source_format: str
    target: str  # "network" or "backbone"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def is_complete(self) -> bool:
        """True when every weight of the module came from the file and nothing unknown was left over."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def summary(self) -> str:
        text = (
            f"{self.path} ({self.source_format} format) -> {self.target}: {len(self.loaded)} loaded, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatched)} shape-mismatched, {len(self.ignored)} ignored"
        )
        details = []
        if self.missing:
            details.append("missing: " + _preview(self.missing))
        if self.unexpected:
            details.append("unexpected: " + _preview(self.unexpected))
        if self.shape_mismatched:
            details.append(
                "shape-mismatched (file vs model): "
                + _preview(
                    [f"{key} {list(theirs)} vs {list(ours)}" for key, theirs, ours in self.shape_mismatched]
                )
            )
        return "\n  ".join([text, *details])


def _preview(items: list[str], limit: int = 5) -> str:
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# --------------------------------------------------------------------------------------------- key mapping


def romp_key_to_ours(key: str) -> str | None:
    """ROMP network key -> ours, or None for keys that are not network weights (``_result_parser.*``).

    Raises:
        KeyError: for a ``final_layers`` key outside ROMP's three-head layout.
    """
    if key.startswith(ROMP_IGNORED_PREFIXES):
        return None
    if key.startswith("backbone."):
        return key
    match = _ROMP_HEAD_KEY.match(key)
    if match is None:
        return key  # not a ROMP name; left as is so it is reported as unexpected
    index, rest = int(match.group(1)), match.group(2)
    if index not in ROMP_HEAD_NAMES:
        raise KeyError(f"{key}: ROMP head index {index} is not one of 1 (SMPL), 2 (centre), 3 (camera)")
    head = ROMP_HEAD_NAMES[index]
    block = _ROMP_BLOCK_KEY.match(rest)
    if block is not None:
        return f"{head}.blocks.{block.group(1)}.{block.group(2)}"
    if rest.startswith("0."):
        return f"{head}.reduce.{rest[2:]}"
    if rest.startswith("2."):
        return f"{head}.out.{rest[2:]}"
    raise KeyError(f"{key}: not part of ROMP's head layout ([0] conv-BN-ReLU, [1] blocks, [2] conv1x1)")


def romp_to_ours(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename a ROMP state dict (``module.`` stripped) to our keys. Returns (renamed, ignored keys)."""
    renamed, ignored = {}, []
    for key, value in state_dict.items():
        ours = romp_key_to_ours(key)
        if ours is None:
            ignored.append(key)
        else:
            renamed[ours] = value
    return renamed, ignored


# --------------------------------------------------------------------------------------------- reading


def read_checkpoint(
    path: str | os.PathLike, trust_pickle: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a weight file -> (state dict with ``module.`` stripped, meta dict (empty if none)).

    Args:
        path: the file.
        trust_pickle: allow arbitrary pickled objects (``weights_only=False``). Only for files you trust.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"weight file {path!r} does not exist; check the path (relative paths are taken "
            f"from the current directory {os.getcwd()!r})"
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path!r} holds pickled objects other than tensors, which weights_only loading refuses "
            f"({err}).\n"
            "  fix: if you trust the file, load it with trust_pickle=True "
            "(python -m romp_hydra.models.import_romp ... --trust-pickle)"
        ) from err
    except Exception as err:  # torch raises various types for truncated / non-torch files
        raise CheckpointError(
            f"cannot read {path!r} as a torch checkpoint: {type(err).__name__}: {err}"
        ) from err

    meta: dict[str, Any] = {}
    if isinstance(content, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(content.get(wrapper), Mapping):
                meta = dict(content.get("meta") or {})
                content = content[wrapper]
                break
    if not isinstance(content, Mapping) or not any(isinstance(v, Tensor) for v in content.values()):
        raise CheckpointError(
            f"{path!r} does not contain a state dict (found {type(content).__name__}); "
            "expected a mapping of parameter names to tensors"
        )
    state = {
        (key.removeprefix(DATA_PARALLEL_PREFIX)): value
        for key, value in content.items()
        if isinstance(value, Tensor)
    }
    return state, meta


def detect_format(state_dict: Mapping[str, Tensor]) -> str:
    """'romp' (``final_layers.*`` + ``backbone.*``), 'ours' (``backbone.*`` / ``*_head.*``) or 'backbone'."""
    keys = list(state_dict)
    has_backbone = any(k.startswith("backbone.") for k in keys)
    if has_backbone and any(k.startswith("final_layers.") for k in keys):
        return "romp"
    if has_backbone or any(_OUR_HEAD_KEY.match(k) for k in keys):
        return "ours"
    return "backbone"


# --------------------------------------------------------------------------------------------- loading


def load_network_weights(
    net: nn.Module,
    path: str | os.PathLike,
    source_format: str = "auto",
    strict: bool = False,
    trust_pickle: bool = False,
) -> LoadReport:
    """Load a whole-network checkpoint (ours or ROMP's) into a `ROMPNet`.

    Args:
        net: the network.
        path: checkpoint file.
        source_format: "auto", "ours" or "romp" (see the module docstring).
        strict: raise unless every weight was loaded and nothing unknown was left (ignored keys are fine).
        trust_pickle: see `read_checkpoint`.

    Raises:
        CheckpointError: file missing / unreadable, a bare-backbone file, nothing matching, or (strict) any
            missing, unexpected or shape-mismatched key.
    """
    state, _ = read_checkpoint(path, trust_pickle)
    fmt = _resolve_format(state, source_format, path)
    if fmt == "backbone":
        raise CheckpointError(
            f"{os.fspath(path)!r} holds bare backbone weights (keys like {next(iter(state))!r}), "
            "not a whole network.\n"
            "  fix: load it as backbone pretraining (backbone.pretrained=PATH), "
            "or give a ROMP / romp_hydra checkpoint"
        )
    ignored: list[str] = []
    if fmt == "romp":
        state, ignored = romp_to_ours(state)
    return _load_into(net, state, ignored, os.fspath(path), fmt, "network", strict)


def load_backbone_weights(
    backbone: nn.Module,
    path: str | os.PathLike,
    source_format: str = "auto",
    strict: bool = False,
    trust_pickle: bool = False,
) -> LoadReport:
    """Load backbone weights from a bare backbone file or the ``backbone.*`` part of a network checkpoint.

    Keys listed in the backbone's ``ignored_pretrained_prefixes`` (HigherHRNet's heads, torchvision's ``fc``)
    are skipped and counted as ignored. Arguments and errors as in `load_network_weights`.
    """
    if not os.path.isfile(path):
        raise CheckpointError(missing_pretrained_message(path))
    state, _ = read_checkpoint(path, trust_pickle)
    fmt = _resolve_format(state, source_format, path)
    ignored: list[str] = []
    if fmt in ("ours", "romp"):
        ignored = [k for k in state if not k.startswith("backbone.")]
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    skip = tuple(getattr(backbone, "ignored_pretrained_prefixes", ()))
    if skip:
        ignored += [k for k in state if k.startswith(skip)]
        state = {k: v for k, v in state.items() if not k.startswith(skip)}
    return _load_into(backbone, state, ignored, os.fspath(path), fmt, "backbone", strict)


def _resolve_format(state: Mapping[str, Tensor], source_format: str, path: str | os.PathLike) -> str:
    if source_format not in FORMATS:
        raise CheckpointError(
            f"unknown checkpoint format {source_format!r} for {os.fspath(path)!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return detect_format(state) if source_format == "auto" else source_format


def _load_into(
    module: nn.Module,
    state: Mapping[str, Tensor],
    ignored: list[str],
    path: str,
    fmt: str,
    target: str,
    strict: bool,
) -> LoadReport:
    own = module.state_dict()
    report = LoadReport(path=path, source_format=fmt, target=target, ignored=list(ignored))
    loadable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.shape_mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            loadable[key] = value
    report.loaded = list(loadable)
    report.missing = [k for k in own if k not in loadable and not k.endswith("num_batches_tracked")]

    rejected = len(report.unexpected) + len(report.shape_mismatched)
    if not loadable or rejected > len(loadable):
        raise CheckpointError(
            f"{path!r} does not fit the {target} ({type(module).__name__}): {len(loadable)} weights match, "
            f"{rejected} do not; file keys look like "
            f"{_preview(list(state), 3)}; the {target} expects keys like {_preview(list(own), 3)}.\n"
            f"  fix: check that the file is for this backbone (hrnet32 vs resnet50) and the right kind "
            f"({'backbone.pretrained' if target == 'backbone' else 'ckpt_path'})"
        )
    if strict and not report.is_complete:
        raise CheckpointError(f"strict loading failed:\n  {report.summary()}")
    module.load_state_dict(loadable, strict=False)
    if report.is_complete:
        log.info("loaded %s", report.summary())
    else:
        log.warning("loaded with gaps: %s", report.summary())
    return report


# --------------------------------------------------------------------------------------------- saving


def save_network(net: nn.Module, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
    """Save ``{"model": state_dict, "meta": meta}``, the format `load_network_weights` reads as 'ours'.

    ``meta`` should hold only plain Python values (str, numbers, lists, dicts) so the file stays loadable with
    ``weights_only=True``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
    torch.save({"model": state, "meta": dict(meta or {})}, path)
