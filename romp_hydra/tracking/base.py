"""The interface the training loop talks to, and the do-nothing tracker.

Only rank 0 tracks: every other rank gets a `NullTracker`, so the loop can call the same methods everywhere
(`romp_hydra.tracking.factory.build_tracker` picks one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np
from omegaconf import DictConfig

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


@runtime_checkable
class Tracker(Protocol):
    """What the training loop needs from an experiment tracker.

    None of the logging methods raise because the tracking store failed, and none wait for it: a broken or
    slow store must never stop or slow down training.
    """

    run_id: str | None

    def start(
        self,
        cfg: DictConfig,
        run_dir: str | Path,
        resume_run_id: str | None = None,
        hydra_cfg: DictConfig | None = None,
    ) -> str | None:
        """Open (or, with `resume_run_id`, re-open) the run for `cfg`; returns its id, or None if untracked.

        `hydra_cfg` is the job's `hydra` node (run name, sweep); default `HydraConfig.get()`. Pass it when
        training runs in a process spawned from the Hydra job, where HydraConfig is not set.
        """

    def attach(self, run_id: str, run_dir: str | Path) -> str | None:
        """Log into the existing run `run_id` without changing its status (instead of `start`)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log hyper-parameters (nested mappings are flattened to dotted keys)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log scalar metrics at a global step. Pass Python floats (a CUDA tensor forces a device sync)."""

    def log_image(self, image: np.ndarray, name: str, step: int) -> None:
        """Log an H x W x 3 uint8 RGB picture as pictures/<name>/step_<step>.png."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a folder under `artifact_path` of the run."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (mutable, unlike params)."""

    def flush(self) -> None:
        """Block until everything logged so far has been written (to the store, or to the local fallback)."""

    def finish(self, status: str = "FINISHED") -> None:
        """Write what is pending and close the run as FINISHED, FAILED or KILLED. Idempotent."""


def status_for_exception(error: BaseException | None) -> str:
    """The run status that matches how training ended: no error -> FINISHED, Ctrl-C -> KILLED, else FAILED."""
    if error is None:
        return "FINISHED"
    if isinstance(error, KeyboardInterrupt):
        return "KILLED"
    return "FAILED"


def check_status(status: str) -> str:
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    return status


class FinishOnExit:
    """`with tracker:` finishes the run on leaving the block, with the status that matches the exit.
    Mixed into trackers that define `finish(status)`."""

    def __enter__(self):
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(status_for_exception(exc))  # type: ignore[attr-defined]


class NullTracker(FinishOnExit):
    """Tracks nothing: `logger=none`, and every rank but 0."""

    run_id: str | None = None

    def start(
        self,
        cfg: DictConfig,
        run_dir: str | Path,
        resume_run_id: str | None = None,
        hydra_cfg: DictConfig | None = None,
    ) -> str | None:
        return None

    def attach(self, run_id: str, run_dir: str | Path) -> str | None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_image(self, image: np.ndarray, name: str, step: int) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        check_status(status)
