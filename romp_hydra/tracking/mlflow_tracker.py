"""MLflow tracking for the training loop: one run per training job, nested under its sweep's parent run.

Design choices:

* The loop never waits for the store. Every call only queues work; one background thread writes it, batching
  metrics (MLflow's `log_batch`, at most 1000 per request) every `flush_every` metrics or `flush_interval_s`
  seconds, whichever comes first. A synchronous SQLite `log_batch` costs ~8 ms, a queued call microseconds.
* A store that fails never stops training. On the first exception from MLflow the tracker logs ONE warning
  and from then on writes metrics to `<run_dir>/metrics_fallback.jsonl`, and params, tags and the artifacts
  it could not upload to `<run_dir>/tracking_fallback.json` (pictures and texts go to
  `<run_dir>/tracking_fallback/`).
* SQLite under parallel jobs: the first connection creates the schema, and two jobs starting together race on
  it ("duplicate column name") and on creating the experiment. Both are serialised with an `fcntl` lock file
  next to the database; transient "database is locked" errors are retried with backoff.
* Explicit run names (never MLflow's random ones, which collide once the RNGs are seeded).
* Resume re-attaches to the same run id. MLflow refuses to change a logged param, so a param whose value
  changed on resume is recorded as the tag `param_changed.<key>` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from romp_hydra.tracking.base import FinishOnExit, check_status
from romp_hydra.tracking.callbacks import PARENT_RUN_ID_TAG, current_hydra_config, sweep_job_tags
from romp_hydra.tracking.naming import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
    build_run_name,
    chunked,
    flatten_config,
    format_value,
    sanitize_key,
    truncate,
)

try:  # POSIX only; elsewhere parallel first use of one SQLite file is not protected.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id"
METRICS_FALLBACK_FILE = "metrics_fallback.jsonl"
FALLBACK_STATE_FILE = "tracking_fallback.json"
FALLBACK_ARTIFACT_DIR = "tracking_fallback"
PICTURES_DIR = "pictures"
FINAL_METRICS_FILE = "final_metrics.json"

_TRANSIENT_ERRORS = ("database is locked", "database table is locked", "duplicate column name")
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- store access


def default_tracking_uri() -> str:
    """sqlite:///<project root>/mlflow.db: absolute, so that every job writes to the same store whatever its
    working directory (MLflow's own default is relative to the current directory)."""
    from romp_hydra.config.resolvers import project_root

    return f"sqlite:///{Path(project_root()) / 'mlflow.db'}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for other stores and in-memory SQLite)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def normalize_tracking_uri(tracking_uri: str | None) -> str:
    """The URI to use: the default store when unset, and a relative SQLite path made absolute."""
    if not tracking_uri:
        return default_tracking_uri()
    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{path.resolve()}"
    return tracking_uri


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Exclusive lock on `<db>.lock` for a SQLite store, across processes; a no-op for other stores."""
    path = sqlite_path(tracking_uri)
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def retry_transient(call: Callable[[], T], attempts: int = 6, first_delay_s: float = 0.1) -> T:
    """`call()`, retried with exponential backoff while SQLite reports a transient lock or schema race."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            message = str(error).lower()
            if attempt == attempts - 1 or not any(text in message for text in _TRANSIENT_ERRORS):
                raise
            time.sleep(first_delay_s * 2**attempt)
    raise AssertionError("unreachable")


def check_server_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when an http(s) tracking server is down: MLflow's own client retries a refused
    connection with backoff for minutes before it gives up."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # something answered (auth, proxy, no /health route): let MLflow talk to it
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"MLflow server {tracking_uri} is not reachable ({error}); start it (`mlflow server ...`) or set "
            "logger.tracking_uri=sqlite:///<absolute path>/mlflow.db"
        ) from error


def open_experiment(tracking_uri: str | None, experiment_name: str) -> tuple[MlflowClient, str]:
    """A client for the store and the id of `experiment_name` (created if missing).

    The first use of a SQLite store creates its schema; with parallel jobs that and the experiment creation
    run under `store_lock`. A new experiment on SQLite keeps its artifacts next to the database
    (<db dir>/mlartifacts/<experiment>), not under the current directory as MLflow's default would.
    """
    uri = normalize_tracking_uri(tracking_uri)
    check_server_reachable(uri)
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment = retry_transient(lambda: client.get_experiment_by_name(experiment_name))
        if experiment is None:
            db_path = sqlite_path(uri)
            location = None
            if db_path is not None:
                location = (
                    db_path.parent / "mlartifacts" / sanitize_key(experiment_name).replace("/", "_")
                ).as_uri()
            try:
                experiment_id = retry_transient(lambda: client.create_experiment(experiment_name, location))
            except MlflowException:  # created meanwhile by a job on another host (HTTP store)
                experiment = client.get_experiment_by_name(experiment_name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        elif experiment.lifecycle_stage == "deleted":
            raise MlflowException(
                f"the MLflow experiment '{experiment_name}' is deleted in {uri}; restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) or set "
                "logger.experiment_name to another name"
            )
        else:
            experiment_id = experiment.experiment_id
    return client, experiment_id


def read_run_id(run_dir: str | Path) -> str | None:
    """The MLflow run id stored in a run directory by `MLflowTracker.start`, or None."""
    try:
        return (Path(run_dir) / RUN_ID_FILE).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def mark_run_failed(tracking_uri: str | None, run_id: str, error: BaseException | None = None) -> bool:
    """Terminate `run_id` as FAILED if it is still RUNNING; returns whether it did (after a crashed job)."""
    client = MlflowClient(tracking_uri=normalize_tracking_uri(tracking_uri))
    run = retry_transient(lambda: client.get_run(run_id))
    if run.info.status != "RUNNING":
        return False
    if error is not None:
        client.set_tag(run_id, "error", truncate(f"{type(error).__name__}: {error}", MAX_TAG_VALUE_LENGTH))
    retry_transient(lambda: client.set_terminated(run_id, "FAILED"))
    return True


def git_commit(root: str | Path | None = None) -> str:
    """HEAD of the git checkout at `root` (default: this package's checkout), or 'unknown'."""
    root = Path(root) if root else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


# ----------------------------------------------------------------------------------------------- run content


def config_params(cfg: DictConfig) -> dict[str, str]:
    """The flattened resolved config plus the mixture weights actually used, as `mixture.<member>`.

    The raw weights are part of the config (`sampling.weights.<member>`); the normalised ones are what the
    sampler draws with, and the only ones that compare across runs that set `sampling.normalize=true`.
    """
    params = flatten_config(cfg)
    members = list(OmegaConf.select(cfg, "dataset.members", default=None) or [])
    sampling = OmegaConf.select(cfg, "sampling", default=None)
    if members and sampling is not None:
        from romp_hydra.config import normalized_weights

        try:
            weights = normalized_weights(sampling, members)
        except (KeyError, ZeroDivisionError, TypeError) as error:  # validate_config reports these properly
            log.debug("mixture weights not logged: %s", error)
        else:
            params.update(
                {sanitize_key(f"mixture.{name}"): format_value(float(w)) for name, w in weights.items()}
            )
    return params


def run_tags(cfg: DictConfig, run_dir: Path, hydra_cfg: DictConfig | None) -> dict[str, str]:
    """Tags that say where a run comes from: code, machine, body model, mixture, overrides, sweep."""
    members = list(OmegaConf.select(cfg, "dataset.members", default=None) or [])
    user_tags = OmegaConf.select(cfg, "tags", default=None) or []
    tags = {
        "task_name": str(OmegaConf.select(cfg, "task_name", default="train")),
        "body_model": str(OmegaConf.select(cfg, "body_model.kind", default="unknown")),
        "mixture.name": str(OmegaConf.select(cfg, "dataset.name", default="")),
        "mixture.members": ",".join(str(m) for m in members),
        "host": socket.gethostname(),
        "run_dir": str(run_dir),
        "git.commit": git_commit(OmegaConf.select(cfg, "paths.root_dir", default=None)),
    }
    if tags["git.commit"] != "unknown":
        tags["mlflow.source.git.commit"] = tags["git.commit"]  # shown by the MLflow UI
    if user_tags:
        tags["tags"] = ",".join(str(t) for t in user_tags)
    if hydra_cfg is not None:
        overrides = [str(o) for o in OmegaConf.select(hydra_cfg, "overrides.task", default=[]) or []]
        tags["hydra.overrides"] = " ".join(overrides)
        tags.update(sweep_job_tags(hydra_cfg))
    return {key: truncate(value, MAX_TAG_VALUE_LENGTH) for key, value in tags.items() if value != ""}


def default_run_name(cfg: DictConfig, hydra_cfg: DictConfig | None) -> str:
    """task_name plus the job's key overrides; in a sweep the job number comes first, so every child run has a
    distinct, ordered name even when a long override list is cut (the swept value is in its params)."""
    task_name = str(OmegaConf.select(cfg, "task_name", default="train"))
    overrides = OmegaConf.select(hydra_cfg, "overrides.task", default=[]) if hydra_cfg is not None else []
    job_num = OmegaConf.select(hydra_cfg, "job.num", default=None) if hydra_cfg is not None else None
    if job_num is not None and str(OmegaConf.select(hydra_cfg, "mode", default="")).endswith("MULTIRUN"):
        task_name = f"{task_name}-job{job_num}"
    return build_run_name(task_name, [str(o) for o in overrides or []])


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


# ----------------------------------------------------------------------------------------------- writers
# Both writers have the same methods; the worker thread calls the store's and switches to the fallback's on
# the first exception. Metric entries are (key, value, timestamp_ms, step).


class _StoreWriter:
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


class _FallbackWriter:
    """Local record of everything the store did not take, for inspection or a later manual import."""

    def __init__(self, run_dir: Path, state: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS_FALLBACK_FILE
        self.state_path = run_dir / FALLBACK_STATE_FILE
        self.artifact_dir = run_dir / FALLBACK_ARTIFACT_DIR
        self.state = {"params": {}, "tags": {}, "artifacts_not_uploaded": [], "status": "RUNNING", **state}
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


# ----------------------------------------------------------------------------------------------- tracker


class MLflowTracker(FinishOnExit):
    """Tracks one training run in MLflow without ever blocking or crashing the training loop.

    Args:
        tracking_uri: MLflow store; None = sqlite:///<project root>/mlflow.db; http(s):// servers work too.
        experiment_name: created on first use.
        run_name: explicit name; None = task_name plus the job's key overrides (`build_run_name`).
        flush_every: metrics buffered before a write (MLflow takes at most 1000 per request).
        flush_interval_s: longest time a logged metric waits before it is written.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str = "romp_hydra",
        run_name: str | None = None,
        flush_every: int = MAX_METRICS_PER_BATCH,
        flush_interval_s: float = 5.0,
    ) -> None:
        if flush_every < 1 or flush_interval_s <= 0:
            raise ValueError(
                f"flush_every must be >= 1 and flush_interval_s > 0, got {flush_every}, {flush_interval_s}"
            )
        self.tracking_uri = normalize_tracking_uri(tracking_uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.flush_every = min(flush_every, MAX_METRICS_PER_BATCH)
        self.flush_interval_s = flush_interval_s
        self.run_id: str | None = None
        self.run_dir: Path | None = None
        self._writer: _StoreWriter | None = None
        self._fallback: _FallbackWriter | None = None
        self._fallback_lock = threading.Lock()
        self._queue: queue.Queue[tuple] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._scratch_dir: Path | None = None
        self._logged_params: dict[str, str] = {}  # caller thread: what the run holds (decides what to send)
        self._written_params: dict[
            str, str
        ] = {}  # worker thread: what reached the store (seeds the fallback)
        self._written_tags: dict[str, str] = {}
        self._latest_metrics: dict[str, dict[str, float]] = {}
        self._metric_keys: dict[str, str] = {}
        self._owner_pid = os.getpid()
        self._finished = False
        self._warned_after_finish = False
        self._warned_fallback_failure = False

    @property
    def using_fallback(self) -> bool:
        """True once the store failed and everything goes to the local fallback files."""
        return self._fallback is not None

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(
        self,
        cfg: DictConfig,
        run_dir: str | Path,
        resume_run_id: str | None = None,
        hydra_cfg: DictConfig | None = None,
    ) -> str | None:
        """Create the run (or re-attach to `resume_run_id`) and log config, tags and Hydra files.

        `hydra_cfg`: the job's `hydra` node, default `HydraConfig.get()` (None outside a Hydra job).

        Returns the run id (store down at start: `resume_run_id`, i.e. None for a new run). The id is also
        written to `<run_dir>/mlflow_run_id`, where `read_run_id` and the Hydra job callback find it.
        """
        if self._worker is not None:
            raise RuntimeError("MLflowTracker.start() was already called; use one tracker per run")
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._scratch_dir = Path(tempfile.mkdtemp(prefix="romp_tracking_"))
        hydra_cfg = current_hydra_config() if hydra_cfg is None else hydra_cfg
        tags = run_tags(cfg, self.run_dir, hydra_cfg)
        resume_count = 0
        try:
            client, experiment_id = open_experiment(self.tracking_uri, self.experiment_name)
            run = self._attach(client, resume_run_id) if resume_run_id else None
            if run is None:
                name = self.run_name or default_run_name(cfg, hydra_cfg)
                if resume_run_id:
                    tags["resume.missing_run_id"] = resume_run_id
                run = retry_transient(lambda: client.create_run(experiment_id, run_name=name, tags=tags))
            else:
                self._logged_params = dict(run.data.params)
                resume_count = int(run.data.tags.get("resume.count", "0")) + 1
                # Tags are mutable and refreshed, but a resumed run stays where it was nested.
                tags = {key: value for key, value in tags.items() if key != PARENT_RUN_ID_TAG}
                tags["resume.count"] = str(resume_count)
            self.run_id = run.info.run_id
            self._writer = _StoreWriter(client, self.run_id, self._scratch_dir)
            self._written_params = dict(self._logged_params)
        except Exception as error:
            self.run_id = resume_run_id
            self._switch_to_fallback(error)

        for directory in self._run_id_dirs(hydra_cfg):
            if self.run_id is not None:
                (directory / RUN_ID_FILE).write_text(self.run_id)
        self._worker = threading.Thread(target=self._work, name="mlflow-tracker", daemon=True)
        self._worker.start()
        atexit.register(self._finish_at_exit)

        if resume_count or self._writer is None:
            self.set_tags(tags)  # a new run got its tags at creation
        self.log_params(config_params(cfg))
        self._log_config_files(cfg, hydra_cfg, resume_count)
        return self.run_id

    def _attach(self, client: MlflowClient, run_id: str):
        """The run to resume, set back to RUNNING; None (and a warning) if the store does not have it."""
        try:
            run = retry_transient(lambda: client.get_run(run_id))
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            log.warning("MLflow run %s to resume is not in %s; starting a new run", run_id, self.tracking_uri)
            return None
        retry_transient(lambda: client.update_run(run_id, status="RUNNING"))
        return run

    def _run_id_dirs(self, hydra_cfg: DictConfig | None) -> list[Path]:
        """The run dir, plus the Hydra job's output dir when it differs (a resumed run keeps its old run dir,
        but the job-failure callback looks in the job's own dir)."""
        dirs = [self.run_dir]
        output_dir = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None) if hydra_cfg else None
        if output_dir and Path(str(output_dir)).resolve() != self.run_dir and Path(str(output_dir)).is_dir():
            dirs.append(Path(str(output_dir)).resolve())
        return dirs

    def _log_config_files(self, cfg: DictConfig, hydra_cfg: DictConfig | None, resume_count: int) -> None:
        """config.yaml (resolved where possible) and the job's .hydra/ folder; a resumed job's copies go under
        resume_<n>/ so that the original ones stay."""
        job_cfg = OmegaConf.masked_copy(
            cfg, [key for key in cfg if key != "hydra"]
        )  # .hydra/ holds that part
        try:
            text = OmegaConf.to_yaml(job_cfg, resolve=True)
        except Exception:  # e.g. ${hydra:...} outside a Hydra job: keep the interpolations
            text = OmegaConf.to_yaml(job_cfg)
        prefix = f"resume_{resume_count}/" if resume_count else ""
        self._submit("text", text, f"{prefix}config.yaml")
        hydra_dir = self._hydra_output_dir(hydra_cfg)
        if hydra_dir is not None:
            self._submit("artifact", hydra_dir, f"{prefix}hydra")

    def _hydra_output_dir(self, hydra_cfg: DictConfig | None) -> Path | None:
        subdir = OmegaConf.select(hydra_cfg, "output_subdir", default=None) if hydra_cfg is not None else None
        output_dir = (
            OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None) if hydra_cfg is not None else None
        )
        candidates = [Path(str(output_dir)) / str(subdir)] if output_dir and subdir else []
        candidates.append(self.run_dir / ".hydra")
        return next((path for path in candidates if path.is_dir()), None)

    def finish(self, status: str = "FINISHED") -> None:
        """Write everything pending, the final metrics (final_metrics.json) and the run status. Idempotent;
        waits at most a minute for a slow store."""
        check_status(status)
        if self._finished or self._worker is None:
            self._finished = True
            return
        self._finished = True
        atexit.unregister(self._finish_at_exit)
        self._queue.put(("summary", status))
        self._queue.put(("terminate", status))
        done = threading.Event()
        self._queue.put(("stop", done))
        if not done.wait(timeout=60.0):
            log.warning(
                "MLflow tracker: the store did not take the last writes within 60 s; giving up on them"
            )
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def _finish_at_exit(self) -> None:
        if os.getpid() == self._owner_pid and not self._finished:
            log.warning("MLflow run %s was not finished by the training code; marking it FAILED", self.run_id)
            self.finish("FAILED")

    # ------------------------------------------------------------------------------------------- logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (nested mappings flattened). A key already logged with the same value is skipped; with
        a different value it becomes the tag `param_changed.<key>` (MLflow params are immutable)."""
        new, changed = {}, {}
        for key, value in flatten_config(params, exclude=()).items():
            previous = self._logged_params.get(key)
            if previous is None:
                new[key] = value
            elif previous != value:
                changed[sanitize_key(f"param_changed.{key}")] = value
        self._logged_params.update(new)
        if new:
            self._submit("params", new)
        if changed:
            self._submit("tags", changed)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        entries = [
            (self._metric_key(key), float(value), timestamp, int(step)) for key, value in metrics.items()
        ]
        self._submit("metrics", entries)

    def log_image(self, image: np.ndarray, name: str, step: int) -> None:
        """Log a picture as pictures/<name>/step_<step:06d>.png (copied now, encoded in the background)."""
        check_image(image)
        folder = sanitize_key(name).replace(":", "_").strip("/") or "image"
        self._submit("image", np.array(image, copy=True), f"{PICTURES_DIR}/{folder}/step_{int(step):06d}.png")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or folder in the background: keep it in place until `flush()` or `finish()`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"log_artifact: {path} does not exist")
        self._submit("artifact", path.resolve(), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        formatted = {
            sanitize_key(key): truncate(format_value(value), MAX_TAG_VALUE_LENGTH)
            for key, value in tags.items()
        }
        self._submit("tags", formatted)

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until everything queued so far is written (to the store, or to the fallback)."""
        if self._worker is None or self._finished:
            return
        done = threading.Event()
        self._queue.put(("sync", done))
        done.wait(timeout=timeout_s)

    def _metric_key(self, key: str) -> str:
        clean = self._metric_keys.get(key)
        if clean is None:
            clean = self._metric_keys[key] = sanitize_key(key)
        return clean

    def _submit(self, kind: str, *args: Any) -> None:
        if self._worker is None:
            raise RuntimeError("MLflowTracker: call start(cfg, run_dir) before logging")
        if self._finished:
            if not self._warned_after_finish:
                self._warned_after_finish = True
                log.warning("MLflow tracker: %s logged after finish() is dropped", kind)
            return
        self._queue.put((kind, *args))

    # ------------------------------------------------------------------------------------------- worker

    def _work(self) -> None:
        """Background writer: batches metrics, keeps every other operation in call order."""
        pending: list[tuple[str, float, int, int]] = []
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                kind, *args = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._write("metrics", pending)
                pending, deadline = [], None
                continue
            if kind == "metrics":
                pending.extend(args[0])
                deadline = deadline or time.monotonic() + self.flush_interval_s
                if len(pending) >= self.flush_every:
                    self._write("metrics", pending)
                    pending, deadline = [], None
                continue
            if pending:  # anything else keeps its place after the metrics logged before it
                self._write("metrics", pending)
                pending, deadline = [], None
            if kind in ("sync", "stop"):
                args[0].set()
                if kind == "stop":
                    return
            elif kind == "summary":
                summary = {"status": args[0], "metrics": self._latest_metrics}
                self._write("text", json.dumps(summary, indent=2), FINAL_METRICS_FILE)
            else:
                self._write(kind, *args)

    def _write(self, kind: str, *args: Any) -> None:
        """One operation to the store, or to the fallback once the store has failed. Never raises."""
        if kind == "metrics":
            if not args[0]:
                return
            for key, value, _, step in args[0]:
                self._latest_metrics[key] = {"value": value, "step": step}
        if kind == "artifact" and not Path(args[0]).exists():
            log.warning("MLflow tracker: %s was removed before it could be uploaded; skipped", args[0])
            return
        if self._writer is not None and self._fallback is None:
            try:
                getattr(self._writer, kind)(*args)
                if kind == "params":
                    self._written_params.update(args[0])
                elif kind == "tags":
                    self._written_tags.update(args[0])
                return
            except Exception as error:
                self._switch_to_fallback(error)
        try:
            getattr(self._fallback, kind)(*args)
        except Exception as error:  # disk full or run dir gone: nothing left to do but say so once
            if not self._warned_fallback_failure:
                self._warned_fallback_failure = True
                log.warning(
                    "MLflow tracker fallback could not write %s (%s: %s)", kind, type(error).__name__, error
                )

    def _switch_to_fallback(self, error: BaseException) -> None:
        with self._fallback_lock:
            if self._fallback is not None:
                return
            state = {
                "error": f"{type(error).__name__}: {error}",
                "tracking_uri": self.tracking_uri,
                "experiment_name": self.experiment_name,
                "run_id": self.run_id,
                "params": dict(self._written_params),
                "tags": dict(self._written_tags),
            }
            self._fallback = _FallbackWriter(self.run_dir, state)
        log.warning(
            "MLflow tracking failed (%s: %s). Training continues; metrics now go to %s, params/tags to %s.",
            type(error).__name__,
            error,
            self._fallback.metrics_path,
            self._fallback.state_path,
        )
