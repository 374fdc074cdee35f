"""Cross-field checks on a composed config. Every entry point calls `validate_config` right after composition,
before any heavy work, so a bad value fails in seconds with one message naming the key, the value and the fix."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from romp_hydra.config.errors import ConfigError
from romp_hydra.config.schema import BACKBONE_INITS, PRECISIONS

# Same tolerance as ROMP's warning band (0.999, 1.001), but here it is an error.
WEIGHT_SUM_TOLERANCE = 1e-3

BODY_MODEL_KINDS = ("smpl", "standin")
LOGGER_KINDS = ("mlflow", "none")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError on the first inconsistency found. Reads only; never builds anything."""
    if "dataset" in cfg:
        members = _check_members(cfg)
        if "sampling" in cfg:
            _check_weights(cfg.sampling, members)
    if "data" in cfg:
        _check_data(cfg.data)
    if "trainer" in cfg:
        _check_trainer(cfg.trainer)
    if "body_model" in cfg:
        _check_choice("body_model.kind", cfg.body_model.kind, BODY_MODEL_KINDS, "body_model=smpl or body_model=standin")
    if "backbone" in cfg and cfg.backbone.get("init") is not None:
        _check_choice("backbone.init", cfg.backbone.init, BACKBONE_INITS,
                      "backbone.init=romp (ROMP's N(0, 0.001)) or backbone.init=kaiming (He normal, from scratch)")
    if "logger" in cfg:
        _check_choice("logger.kind", cfg.logger.kind, LOGGER_KINDS, "logger=mlflow or logger=none")


def normalized_weights(sampling: Mapping[str, Any], members: list[str]) -> dict[str, float]:
    """The weights actually used: the configured ones divided by their sum, or uniform when none are given."""
    weights = dict(sampling.get("weights") or {})
    if not weights:
        return {name: 1.0 / len(members) for name in members}
    total = float(sum(weights.values()))
    return {name: float(weights[name]) / total for name in members}


def _check_members(cfg: DictConfig) -> list[str]:
    members = cfg.dataset.get("members") or {}
    name = cfg.dataset.get("name", "?")
    if len(members) == 0:
        raise ConfigError(
            "dataset.members", {}, f"the mixture '{name}' has no member datasets",
            "list members in the dataset config, e.g. `- /source@members.coco: coco` in its defaults",
        )
    for key in members:
        member = members[key]
        target = member.get("_target_") if isinstance(member, (DictConfig, dict)) else None
        if not target:
            raise ConfigError(
                f"dataset.members.{key}", OmegaConf.to_container(member) if isinstance(member, DictConfig) else member,
                "a mixture member needs a `_target_` naming its dataset class",
                f"add `_target_: your_module.YourDataset` to conf/source/{key}.yaml",
            )
    return list(members.keys())


def _check_weights(sampling: DictConfig, members: list[str]) -> None:
    weights = dict(sampling.get("weights") or {})
    if not weights:
        return
    unknown = [k for k in weights if k not in members]
    if unknown:
        raise ConfigError(
            f"sampling.weights.{unknown[0]}", weights[unknown[0]],
            f"'{unknown[0]}' is not a member of the mixture (members: {', '.join(members)})",
            "remove that weight, choose a sampling= config made for this dataset=, or add the dataset to the mixture",
        )
    missing = [m for m in members if m not in weights]
    if missing:
        raise ConfigError(
            "sampling.weights", weights,
            f"no weight for mixture member(s) {', '.join(missing)}",
            f"add e.g. sampling.weights.{missing[0]}=0.1 (every member needs a weight; 0 is allowed)",
        )
    for key, value in weights.items():
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"sampling.weights.{key}", value, "weights are probabilities and must be finite and >= 0",
                f"set sampling.weights.{key} to a value >= 0",
            )
    total = float(sum(weights.values()))
    if total <= 0:
        raise ConfigError("sampling.weights", weights, "all weights are 0, nothing can be drawn",
                          "give at least one member a positive weight")
    if not sampling.get("normalize", False) and abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        listing = ", ".join(f"{k}={v:g}" for k, v in weights.items())
        raise ConfigError(
            "sampling.weights", listing, f"weights sum to {total:.6g}, not 1",
            "make them sum to 1, or pass sampling.normalize=true to divide them by their sum",
        )
    if int(sampling.get("epoch_samples", 1)) <= 0:
        raise ConfigError("sampling.epoch_samples", sampling.epoch_samples, "an epoch needs at least one sample",
                          "set sampling.epoch_samples to a positive number")


def _check_data(data: DictConfig) -> None:
    size, cmap = int(data.input_size), int(data.centermap_size)
    if size <= 0 or size % 32 != 0:
        raise ConfigError("data.input_size", size, "the backbones downsample by 32, so the input must be a multiple of 32",
                          "use e.g. data.input_size=512 (ROMP) or 128 / 256 for quick runs")
    if cmap * 8 != size:
        raise ConfigError(
            "data.centermap_size", cmap,
            f"the heads run at stride 8, so with data.input_size={size} the centre map is {size // 8}x{size // 8}",
            f"set data.centermap_size={size // 8} (or change data.input_size to {cmap * 8})",
        )
    for key in ("batch_size", "val_batch_size", "max_person"):
        if int(data[key]) < 1:
            raise ConfigError(f"data.{key}", data[key], "must be at least 1", f"set data.{key} to a positive integer")
    _check_loader(data)
    if not 0.0 <= float(data.max_bad_fraction) <= 1.0:
        raise ConfigError("data.max_bad_fraction", data.max_bad_fraction, "is a fraction",
                          "use a value in [0, 1], e.g. 0.01")
    for key, value in data.augment.items():
        if key.endswith("_prob") and not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"data.augment.{key}", value, "is a probability", f"use a value in [0, 1] for data.augment.{key}")


START_METHODS = ("auto", "fork", "forkserver", "spawn")


def _check_loader(data: DictConfig) -> None:
    workers = data.get("num_workers", "auto")
    if str(workers).lower() != "auto" and (not _is_int(workers) or int(workers) < 0):
        raise ConfigError("data.num_workers", workers, "must be auto or an integer >= 0",
                          "use data.num_workers=auto (from the CPU count), or N; 0 loads in-process")
    if str(data.get("pin_memory", "auto")).lower() not in ("auto", "true", "false"):
        raise ConfigError("data.pin_memory", data.pin_memory, "must be auto, true or false",
                          "use data.pin_memory=auto (pinned when training on CUDA)")
    if int(data.get("prefetch_factor", 2)) < 1:
        raise ConfigError("data.prefetch_factor", data.prefetch_factor, "must be at least 1",
                          "use data.prefetch_factor=2 (batches each worker prepares ahead)")
    method = str(data.get("multiprocessing_context", "auto"))
    if method not in START_METHODS:
        raise ConfigError("data.multiprocessing_context", method, f"must be one of {', '.join(START_METHODS)}",
                          "use data.multiprocessing_context=auto (fork on Linux, spawn elsewhere)")
    import multiprocessing

    if method != "auto" and method not in multiprocessing.get_all_start_methods():
        raise ConfigError("data.multiprocessing_context", method, "this platform cannot start processes that way",
                          f"use one of {', '.join(multiprocessing.get_all_start_methods())} or auto")


def _is_int(value: Any) -> bool:
    try:
        return int(value) == float(value)
    except (TypeError, ValueError):
        return False


def _check_trainer(trainer: DictConfig) -> None:
    _check_choice("trainer.precision", trainer.precision, PRECISIONS, "trainer.precision=fp32 (bf16/fp16 need CUDA)")
    if not _DEVICE_PATTERN.match(str(trainer.device)):
        raise ConfigError("trainer.device", trainer.device, "unknown device", "use auto, cpu, cuda or cuda:N")
    for key in ("epochs", "accumulate_steps", "log_every_steps", "val_every_steps", "ckpt_every_steps",
                "vis_every_steps", "max_consecutive_nan"):
        if int(trainer[key]) < 1:
            raise ConfigError(f"trainer.{key}", trainer[key], "must be at least 1", f"set trainer.{key} to a positive integer")
    if trainer.max_steps is not None and int(trainer.max_steps) < 0:
        raise ConfigError("trainer.max_steps", trainer.max_steps, "must be >= 0 or null",
                          "set trainer.max_steps=null to train for trainer.epochs")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...], fix: str) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}", fix)
