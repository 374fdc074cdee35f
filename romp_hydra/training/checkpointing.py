"""Checkpoints that resume exactly: model, optimiser, scheduler, AMP scaler, sampler position, RNG states, step.

Written atomically (temporary file + rename) so a kill during saving never leaves a truncated checkpoint.
"""
from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a kill during an earlier save
        stale.unlink(missing_ok=True)
    return path


def capture_rng_state() -> dict:
    # Plain containers and tensors only, so checkpoints load with torch.load(weights_only=True).
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(tuple(item if not isinstance(item, list) else tuple(item) for item in state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load one of our training checkpoints (plain containers and tensors: no arbitrary pickle is executed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def find_resume_checkpoint(resume: Any, runs_dir: Path) -> Path:
    """`resume=true`: the newest run under runs_dir with a last.pt; `resume=<dir>`: that run; `resume=<file>`: it."""
    if resume is True or str(resume).lower() == "true":
        candidates = sorted(runs_dir.glob(f"*/checkpoints/{LAST_NAME}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise FileNotFoundError(
                f"resume=true but no run under {runs_dir} has checkpoints/{LAST_NAME}; "
                "start a fresh run (resume=false) or pass resume=<run dir or checkpoint path>"
            )
        return candidates[-1]
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume}: no checkpoint at {path}")
    return path
