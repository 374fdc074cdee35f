"""Talking to the MLflow store: URIs, the experiment, run ids on disk, locks and retries.

SQLite under parallel jobs: the first connection creates the schema, and two jobs starting together race on it
("duplicate column name") and on creating the experiment. Both are serialised with an `fcntl` lock file next
to the database; transient "database is locked" errors are retried with backoff.

An http(s) server that stops answering: MLflow's client retries a request for about four minutes by default
(7 retries, backoff factor 2). A training process cannot wait that long at every write, so `fail_fast_http`
sets MLflow's own knobs (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `..._BACKOFF_FACTOR`, `..._TIMEOUT`) to a few
seconds unless the user set them; what the store did not take then goes to the tracker's local fallback.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from romp_hydra.tracking.naming import MAX_TAG_VALUE_LENGTH, sanitize_key, truncate

try:  # POSIX only; elsewhere parallel first use of one SQLite file is not protected.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

RUN_ID_FILE = "mlflow_run_id"
# MLflow 3's UI opens an experiment on the page its kind asks for; without the tag it guesses, and a training
# experiment lands on the GenAI overview. `custom_model_development` opens the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A write to a dead server gives up after ~3 s (2 retries, 1 s backoff) instead of ~4 minutes.
FAST_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

_TRANSIENT_ERRORS = ("database is locked", "database table is locked", "duplicate column name")
T = TypeVar("T")


def default_tracking_uri() -> str:
    """sqlite:///<current directory>/mlflow.db, made absolute now: MLflow's own default is the same file but
    relative, so a job that changes directory would write elsewhere. The configs pass
    `sqlite:///${paths.root_dir}/mlflow.db`."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


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


def is_http(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def fail_fast_http() -> None:
    """Make MLflow's HTTP client give up on a dead server in seconds (user settings win)."""
    for name, value in FAST_HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)


def client_for(tracking_uri: str | None) -> MlflowClient:
    uri = normalize_tracking_uri(tracking_uri)
    if is_http(uri):
        fail_fast_http()
    return MlflowClient(tracking_uri=uri)


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
    """Fail in seconds when an http(s) tracking server is down (MLflow's client would retry for minutes)."""
    if not is_http(tracking_uri):
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
    """A client for the store and the id of `experiment_name` (created if missing), tagged as a model-training
    experiment (`mlflow.experimentKind`) unless someone gave it another kind.

    The first use of a SQLite store creates its schema; with parallel jobs that and the experiment creation
    run under `store_lock`. A new experiment on SQLite keeps its artifacts next to the database
    (<db dir>/mlartifacts/<experiment>), not under the current directory as MLflow's default would.
    """
    uri = normalize_tracking_uri(tracking_uri)
    check_server_reachable(uri)
    with store_lock(uri):
        client = client_for(uri)
        experiment = retry_transient(lambda: client.get_experiment_by_name(experiment_name))
        if experiment is None:
            experiment_id = _create_experiment(client, uri, experiment_name)
        elif experiment.lifecycle_stage == "deleted":
            raise MlflowException(
                f"the MLflow experiment '{experiment_name}' is deleted in {uri}; restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) or set "
                "logger.experiment_name to another name"
            )
        else:
            experiment_id = experiment.experiment_id
            if EXPERIMENT_KIND_TAG not in experiment.tags:  # made by an older version, or by hand
                retry_transient(
                    lambda: client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
                )
    return client, experiment_id


def _create_experiment(client: MlflowClient, uri: str, experiment_name: str) -> str:
    db_path = sqlite_path(uri)
    location = None
    if db_path is not None:
        location = (db_path.parent / "mlartifacts" / sanitize_key(experiment_name).replace("/", "_")).as_uri()
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    try:
        return retry_transient(lambda: client.create_experiment(experiment_name, location, tags=tags))
    except MlflowException:  # created meanwhile by a job on another host (HTTP store)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def read_run_id(run_dir: str | Path) -> str | None:
    """The MLflow run id stored in a run directory by `MLflowTracker.start`, or None."""
    try:
        return (Path(run_dir) / RUN_ID_FILE).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def write_run_id(run_dir: str | Path, run_id: str) -> None:
    (Path(run_dir) / RUN_ID_FILE).write_text(run_id)


def run_status(tracking_uri: str | None, run_id: str) -> str:
    """The status of `run_id` (RUNNING, FINISHED, ...); raises MlflowException when the store lacks it."""
    client = client_for(tracking_uri)
    return retry_transient(lambda: client.get_run(run_id)).info.status


def mark_run_failed(tracking_uri: str | None, run_id: str, error: BaseException | None = None) -> bool:
    """Terminate `run_id` as FAILED if it is still RUNNING; returns whether it did (after a crashed job)."""
    client = client_for(tracking_uri)
    run = retry_transient(lambda: client.get_run(run_id))
    if run.info.status != "RUNNING":
        return False
    if error is not None:
        client.set_tag(run_id, "error", truncate(f"{type(error).__name__}: {error}", MAX_TAG_VALUE_LENGTH))
    retry_transient(lambda: client.set_terminated(run_id, "FAILED"))
    return True
