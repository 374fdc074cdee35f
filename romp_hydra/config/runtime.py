"""Where a job runs: its device and its Hydra output directory (shared by train, evaluate and predict)."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from romp_hydra.config.errors import ConfigError


def select_device(name: str, key: str = "device", local_rank: int | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` under DDP -> this rank's GPU. A CUDA device on a
    machine without CUDA is a ConfigError naming ``key``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(key, name, "CUDA is not available here", f"use {key}=cpu or {key}=auto")
    return torch.device(name)


def run_directory(cfg: DictConfig) -> Path:
    """Hydra's output directory for this job (``paths.output_dir``; the configured run dir outside a job)."""
    try:
        output_dir = cfg.paths.output_dir
    except OmegaConfBaseException:  # composed without @hydra.main (tests, notebooks): no runtime output dir
        output_dir = None
    if not output_dir:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().run.dir
    return Path(str(output_dir))
