"""MLflow tracking for the training loop: one run per training job, nested under its sweep's parent run.

Design choices:

* The loop never waits for the store. Every call only queues work; one background thread writes it, batching
  metrics (MLflow's `log_batch`, at most 1000 per request) every `flush_every` metrics or `flush_interval_s`
  seconds, whichever comes first. A synchronous SQLite `log_batch` costs ~8 ms, a queued call microseconds.
  `flush()` waits for what was queued (the training loop calls it when it writes a checkpoint, so a run
  resumed after `kill -9` has no gap in its metrics).
* A store that fails never stops training and loses nothing. On the first exception from MLflow the tracker
  logs ONE warning and from then on writes metrics to `<run_dir>/metrics_fallback.jsonl`, and params, tags,
  the final status and the artifacts it could not upload to `<run_dir>/tracking_fallback.json` (pictures and
  texts go to `<run_dir>/tracking_fallback/`). `finish()` replays that into the store if it answers again;
  otherwise the next `start()` in the run dir does, or `python -m romp_hydra.tracking.replay <run_dir>`
  (see `replay`). An http server that dies is given up on within seconds (`store.fail_fast_http`).
* Explicit run names (never MLflow's random ones, which collide once the RNGs are seeded).
* Resume re-attaches to the same run id. MLflow refuses to change a logged param, so a param whose value
  changed on resume is recorded as the tag `param_changed.<key>` instead.
* The tracker logs what it is given plus the config; what a caller computes (mixture weights, evaluation
  results) the caller passes to `log_params` / `log_metrics`. `attach(run_id)` adds to an existing run (an
  evaluation into its training run) without touching that run's status.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from romp_hydra.tracking.base import FinishOnExit, check_status
from romp_hydra.tracking.naming import (
    MAX_METRICS_PER_BATCH,
    MAX_TAG_VALUE_LENGTH,
    flatten_config,
    format_value,
    sanitize_key,
    truncate,
)
from romp_hydra.tracking.replay import REPLAY_COMMAND, replay_fallback
from romp_hydra.tracking.run_info import (
    PARENT_RUN_ID_TAG,
    config_params,
    current_hydra_config,
    default_run_name,
    run_tags,
)
from romp_hydra.tracking.store import (
    client_for,
    normalize_tracking_uri,
    open_experiment,
    retry_transient,
    write_run_id,
)
from romp_hydra.tracking.writers import FallbackWriter, StoreWriter, check_image, read_fallback_state

log = logging.getLogger(__name__)

PICTURES_DIR = "pictures"
FINAL_METRICS_FILE = "final_metrics.json"
FINISH_TIMEOUT_S = 60.0


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
        self._writer: StoreWriter | None = None
        self._fallback: FallbackWriter | None = None
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
        self._pending_run_name: str | None = None  # for a run the store could not create yet
        self._attached = False  # attach(): someone else's run, whose status this tracker leaves alone
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
        self._pending_run_name = self.run_name or default_run_name(cfg, hydra_cfg)
        resume_count = 0
        try:
            self._replay_earlier_outage()
            client, experiment_id = open_experiment(self.tracking_uri, self.experiment_name)
            run = self._reopen(client, resume_run_id) if resume_run_id else None
            if run is None:
                name = self._pending_run_name
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
            self._writer = StoreWriter(client, self.run_id, self._scratch_dir)
            self._written_params = dict(self._logged_params)
        except Exception as error:
            self.run_id = resume_run_id
            self._switch_to_fallback(error)

        for directory in self._run_id_dirs(hydra_cfg):
            if self.run_id is not None:
                write_run_id(directory, self.run_id)
        self._start_worker()

        if resume_count or self._writer is None:
            self.set_tags(tags)  # a new run got its tags at creation
        self.log_params(config_params(cfg))
        self._log_config_files(cfg, hydra_cfg, resume_count)
        return self.run_id

    def attach(self, run_id: str, run_dir: str | Path) -> str:
        """Log into the existing run `run_id` (e.g. an evaluation into the run that trained the checkpoint)
        without changing its status, tags or config; `finish()` then only writes what is pending. `run_dir`
        holds the fallback if the store fails meanwhile.

        Raises MlflowException when the store does not hold the run, before anything is queued."""
        if self._worker is not None:
            raise RuntimeError(
                "MLflowTracker: start() or attach() was already called; use one tracker per run"
            )
        client = client_for(self.tracking_uri)
        run = retry_transient(lambda: client.get_run(run_id))
        self.run_id, self._attached = run.info.run_id, True
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._scratch_dir = Path(tempfile.mkdtemp(prefix="romp_tracking_"))
        self._logged_params = dict(run.data.params)
        self._written_params = dict(self._logged_params)
        self._writer = StoreWriter(client, self.run_id, self._scratch_dir)
        self._start_worker()
        return self.run_id

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name="mlflow-tracker", daemon=True)
        self._worker.start()
        atexit.register(self._finish_at_exit)

    def _replay_earlier_outage(self) -> None:
        """A fallback left in this run dir by an outage (e.g. before a resume) goes to the store first."""
        if read_fallback_state(self.run_dir) is None:
            return
        done = replay_fallback(self.run_dir, self.tracking_uri)
        log.info("MLflow tracker: replayed the fallback of an earlier outage into run %s", done.run_id)

    def _reopen(self, client: MlflowClient, run_id: str):
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
        waits at most `FINISH_TIMEOUT_S` for a slow store. After an outage, replays the fallback if the store
        answers again, else says how to replay it later."""
        check_status(status)
        if self._finished or self._worker is None:
            self._finished = True
            return
        self._finished = True
        atexit.unregister(self._finish_at_exit)
        if not self._attached:  # an attached run's status and summary belong to whoever started it
            self._queue.put(("summary", status))
            self._queue.put(("terminate", status))
        done = threading.Event()
        self._queue.put(("stop", done))
        if not done.wait(timeout=FINISH_TIMEOUT_S):
            log.warning(
                "MLflow tracker: the store did not take the last writes within %.0f s; giving up on them",
                FINISH_TIMEOUT_S,
            )
        elif self._fallback is not None:
            self._replay_after_outage()
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def _replay_after_outage(self) -> None:
        try:
            done = replay_fallback(self.run_dir, self.tracking_uri)
        except Exception as error:
            log.warning(
                "MLflow store still unavailable (%s: %s): run %s keeps its status there until you replay "
                "the fallback with `%s %s` (a resume in this run dir does it too)",
                type(error).__name__,
                error,
                self.run_id,
                REPLAY_COMMAND,
                self.run_dir,
            )
        else:
            self.run_id = done.run_id
            log.info(
                "MLflow store is back: the fallback of run %s was replayed (%s)", done.run_id, done.status
            )

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
                "run_name": self._pending_run_name,
                "params": dict(self._written_params),
                "tags": dict(self._written_tags),
            }
            self._fallback = FallbackWriter(self.run_dir, state)
        log.warning(
            "MLflow tracking failed (%s: %s). Training continues; metrics now go to %s, params/tags to %s, "
            "replayed into the store when it answers again (or by `%s %s`).",
            type(error).__name__,
            error,
            self._fallback.metrics_path,
            self._fallback.state_path,
            REPLAY_COMMAND,
            self.run_dir,
        )
