"""Send a run's local tracking fallback to the MLflow store once the store is back.

When the store fails (a server that dies mid-run, a full disk) the tracker writes everything it could not
deliver under the run directory (`metrics_fallback.jsonl`, `tracking_fallback.json`, `tracking_fallback/`),
the way offline loggers keep a run to sync later. The tracker replays it by itself when it can: at
`finish()` if the store answers again, and at the next `start()` in the same run directory (a resume).
Otherwise:

    python -m romp_hydra.tracking.replay <run dir> [<run dir> ...] [--tracking-uri URI]

sends the params, tags, metrics (with their original steps and times), pictures and files, then sets the run's
final status (FINISHED / FAILED / KILLED, as training ended). A run whose store was down from the start is
created then. Replayed files are renamed `*.replayed*`, so a second replay sends nothing twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from romp_hydra.tracking.naming import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    chunked,
    sanitize_key,
)
from romp_hydra.tracking.store import (
    check_server_reachable,
    client_for,
    normalize_tracking_uri,
    open_experiment,
    retry_transient,
    write_run_id,
)
from romp_hydra.tracking.writers import (
    FALLBACK_ARTIFACT_DIR,
    FALLBACK_STATE_FILE,
    METRICS_FALLBACK_FILE,
    read_fallback_state,
)

log = logging.getLogger(__name__)
REPLAY_COMMAND = "python -m romp_hydra.tracking.replay"


@dataclass
class Replayed:
    run_id: str
    metrics: int
    params: int
    status: str


def replay_fallback(run_dir: str | Path, tracking_uri: str | None = None) -> Replayed:
    """Replay the fallback of `run_dir` into its run (in `tracking_uri`, default: the store it was for).

    Raises FileNotFoundError when there is nothing to replay, ConnectionError / MlflowException when the store
    still fails (the fallback then stays as it is).
    """
    run_dir = Path(run_dir).resolve()
    state = read_fallback_state(run_dir)
    if state is None:
        raise FileNotFoundError(f"{run_dir / FALLBACK_STATE_FILE} does not exist: nothing to replay")
    uri = tracking_uri or state.get("tracking_uri")
    run_id = state.get("run_id")
    if run_id is not None:
        check_server_reachable(normalize_tracking_uri(uri))
        client = client_for(uri)
    else:  # the store was down when the run started
        client, experiment_id = open_experiment(uri, state["experiment_name"])
        name = state.get("run_name") or "run"
        run_id = retry_transient(lambda: client.create_run(experiment_id, run_name=name)).info.run_id
        write_run_id(run_dir, run_id)
    held = retry_transient(lambda: client.get_run(run_id)).data.params

    params, changed = [], []
    for key, value in state.get("params", {}).items():
        if key not in held:
            params.append(Param(key, value))
        elif held[key] != value:
            changed.append(RunTag(sanitize_key(f"param_changed.{key}"), value))
    tags = [RunTag(key, value) for key, value in state.get("tags", {}).items()] + changed
    for chunk in chunked(params, MAX_PARAMS_PER_BATCH):
        retry_transient(lambda chunk=chunk: client.log_batch(run_id, params=chunk))
    for chunk in chunked(tags, MAX_PARAMS_PER_BATCH):
        retry_transient(lambda chunk=chunk: client.log_batch(run_id, tags=chunk))
    metrics = _read_metrics(run_dir / METRICS_FALLBACK_FILE)
    for chunk in chunked(metrics, MAX_METRICS_PER_BATCH):
        retry_transient(lambda chunk=chunk: client.log_batch(run_id, metrics=chunk))

    artifact_dir = run_dir / FALLBACK_ARTIFACT_DIR
    if artifact_dir.is_dir():
        retry_transient(lambda: client.log_artifacts(run_id, str(artifact_dir)))
    for item in state.get("artifacts_not_uploaded", []):
        path = Path(item["path"])
        if path.is_dir():
            client.log_artifacts(run_id, str(path), item.get("artifact_path"))
        elif path.is_file():
            client.log_artifact(run_id, str(path), item.get("artifact_path"))
        else:
            log.warning("replay: %s no longer exists; not uploaded", path)

    status = state.get("status", "RUNNING")
    if (
        status != "RUNNING"
    ):  # RUNNING: training is still going (or was killed before it could say how it ended)
        retry_transient(lambda: client.set_terminated(run_id, status))
    _mark_replayed(run_dir)
    log.info(
        "replayed %d metrics and %d params into MLflow run %s (%s)", len(metrics), len(params), run_id, status
    )
    return Replayed(run_id=run_id, metrics=len(metrics), params=len(params), status=status)


def _read_metrics(path: Path) -> list[Metric]:
    """The metric lines of a fallback file; a line cut by a kill is skipped."""
    if not path.is_file():
        return []
    metrics = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            metrics.append(
                Metric(entry["key"], float(entry["value"]), int(entry["timestamp"]), int(entry["step"]))
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return metrics


def _mark_replayed(run_dir: Path) -> None:
    for name in (METRICS_FALLBACK_FILE, FALLBACK_STATE_FILE, FALLBACK_ARTIFACT_DIR):
        path = run_dir / name
        if not path.exists():
            continue
        stem, dot, suffix = name.partition(".")
        target = run_dir / f"{stem}.replayed{dot}{suffix}"
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        path.rename(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REPLAY_COMMAND, description="Send runs' local tracking fallback to the MLflow store."
    )
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, help="run directories holding tracking_fallback.json"
    )
    parser.add_argument("--tracking-uri", default=None, help="store to send to (default: the run's own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    failed = 0
    for run_dir in args.run_dirs:
        try:
            done = replay_fallback(run_dir, args.tracking_uri)
        except Exception as error:  # report each directory, go on with the others
            failed += 1
            print(f"{run_dir}: not replayed ({type(error).__name__}: {error})", file=sys.stderr)
        else:
            print(
                f"{run_dir}: {done.metrics} metrics, {done.params} params "
                f"-> run {done.run_id} ({done.status})"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
