"""Where the tracker's background thread writes: the MLflow store, or the local fallback once the store
failed.

Both writers have the same methods; the worker calls the store's and switches to the fallback's on the first
exception. Metric entries are (key, value, timestamp_ms, step). The fallback is what `replay` sends to the
store once it is back (`python -m romp_hydra.tracking.replay <run dir>`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from romp_hydra.tracking.naming import MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, chunked
from romp_hydra.tracking.store import retry_transient

METRICS_FALLBACK_FILE = "metrics_fallback.jsonl"
FALLBACK_STATE_FILE = "tracking_fallback.json"
FALLBACK_ARTIFACT_DIR = "tracking_fallback"


def check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        described = (
            f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        ).strip()
        raise ValueError(
            f"log_image needs an H x W x 3 uint8 RGB array, got {described}; convert with "
            "np.clip(x, 0, 255).astype(np.uint8) and move channels last"
        )
    return image


def write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode a {image.shape} image as PNG")
    path.write_bytes(encoded.tobytes())


class StoreWriter:
    def __init__(self, client: MlflowClient, run_id: str, scratch_dir: Path) -> None:
        self.client, self.run_id, self.scratch_dir = client, run_id, scratch_dir

    def metrics(self, entries: list[tuple[str, float, int, int]]) -> None:
        for chunk in chunked(entries, MAX_METRICS_PER_BATCH):
            batch = [Metric(key, value, timestamp, step) for key, value, timestamp, step in chunk]
            retry_transient(lambda batch=batch: self.client.log_batch(self.run_id, metrics=batch))

    def params(self, params: dict[str, str]) -> None:
        for chunk in chunked(list(params.items()), MAX_PARAMS_PER_BATCH):
            batch = [Param(key, value) for key, value in chunk]
            retry_transient(lambda batch=batch: self.client.log_batch(self.run_id, params=batch))

    def tags(self, tags: dict[str, str]) -> None:
        for chunk in chunked(list(tags.items()), MAX_PARAMS_PER_BATCH):
            batch = [RunTag(key, value) for key, value in chunk]
            retry_transient(lambda batch=batch: self.client.log_batch(self.run_id, tags=batch))

    def text(self, text: str, artifact_file: str) -> None:
        retry_transient(lambda: self.client.log_text(self.run_id, text, artifact_file))

    def artifact(self, path: Path, artifact_path: str | None) -> None:
        if path.is_dir():
            retry_transient(lambda: self.client.log_artifacts(self.run_id, str(path), artifact_path))
        else:
            retry_transient(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def image(self, image: np.ndarray, artifact_file: str) -> None:
        local = self.scratch_dir / artifact_file
        write_png(local, image)
        try:
            folder = str(Path(artifact_file).parent)
            retry_transient(lambda: self.client.log_artifact(self.run_id, str(local), folder))
        finally:
            local.unlink(missing_ok=True)

    def terminate(self, status: str) -> None:
        retry_transient(lambda: self.client.set_terminated(self.run_id, status))


class FallbackWriter:
    """Local record of everything the store did not take, replayed into the store once it is back."""

    def __init__(self, run_dir: Path, state: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS_FALLBACK_FILE
        self.state_path = run_dir / FALLBACK_STATE_FILE
        self.artifact_dir = run_dir / FALLBACK_ARTIFACT_DIR
        # A fallback left by an earlier outage that could not be replayed yet keeps what it holds.
        earlier = read_fallback_state(run_dir) or {}
        self.state = {"params": {}, "tags": {}, "artifacts_not_uploaded": [], "status": "RUNNING"}
        for key in ("params", "tags"):
            self.state[key].update(earlier.get(key, {}))
            self.state[key].update(state.pop(key, {}))
        self.state["artifacts_not_uploaded"] = list(earlier.get("artifacts_not_uploaded", []))
        self.state.update(state)
        self._save_state()

    def metrics(self, entries: list[tuple[str, float, int, int]]) -> None:
        lines = [
            json.dumps({"key": key, "value": value, "step": step, "timestamp": timestamp})
            for key, value, timestamp, step in entries
        ]
        with open(self.metrics_path, "a") as handle:
            handle.write("\n".join(lines) + "\n")

    def params(self, params: dict[str, str]) -> None:
        self.state["params"].update(params)
        self._save_state()

    def tags(self, tags: dict[str, str]) -> None:
        self.state["tags"].update(tags)
        self._save_state()

    def text(self, text: str, artifact_file: str) -> None:
        path = self.artifact_dir / artifact_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def artifact(self, path: Path, artifact_path: str | None) -> None:
        self.state["artifacts_not_uploaded"].append({"path": str(path), "artifact_path": artifact_path})
        self._save_state()

    def image(self, image: np.ndarray, artifact_file: str) -> None:
        write_png(self.artifact_dir / artifact_file, image)

    def terminate(self, status: str) -> None:
        self.state["status"] = status
        self._save_state()

    def _save_state(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        os.replace(tmp, self.state_path)


def read_fallback_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The state of a fallback in `run_dir` that has not been replayed yet, or None."""
    try:
        return json.loads((Path(run_dir) / FALLBACK_STATE_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
