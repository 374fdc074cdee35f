"""How each job of a sweep ended, and a sweep that failed as a whole exiting non-zero.

A failing job does not raise out of the task function (see `jobs.py`: the sweep must go on), so Hydra reports
every job as COMPLETED and the command exits 0 even when every job died. Each job therefore writes
`<job dir>/job_outcome.json` (status, error, objective). Jobs may run in other processes or on other hosts
(joblib, submitit), so the launching process reads the files, not memory: `SweepOutcomeCallback.on_multirun_end`
prints a summary (jobs finished / failed, where their logs are), writes `<sweep dir>/sweep_outcome.json`, and
exits with status 1 when no job finished. A job directory without an outcome file is a job that died without
a report (killed, out of memory) and counts as failed.

Registered by conf/hydra/default.yaml after the MLflow callback, so the parent run is closed before the exit.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

JOB_OUTCOME_FILE = "job_outcome.json"
SWEEP_OUTCOME_FILE = "sweep_outcome.json"
FINISHED, FAILED, NO_REPORT = "FINISHED", "FAILED", "NO_REPORT"


def record_job_outcome(output_dir: str | Path, status: str, *, error: BaseException | None = None,
                       objective: float | None = None) -> Path:
    """Write `<output_dir>/job_outcome.json` atomically (the launcher may read it from another host)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"status": status, "objective": objective}
    if error is not None:
        record["error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"[:2000]
    path = output_dir / JOB_OUTCOME_FILE
    fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=f".{JOB_OUTCOME_FILE}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)
    return path


def read_job_outcomes(sweep_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{job dir name: outcome} for every job directory of the sweep (a folder holding Hydra's `.hydra/`)."""
    outcomes: dict[str, dict[str, Any]] = {}
    root = Path(sweep_dir)
    if not root.is_dir():
        return outcomes
    job_dirs = sorted((path for path in root.iterdir() if (path / ".hydra").is_dir()),
                      key=lambda path: (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0,
                                        path.name))
    for job_dir in job_dirs:
        try:
            outcomes[job_dir.name] = json.loads((job_dir / JOB_OUTCOME_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            outcomes[job_dir.name] = {"status": NO_REPORT,
                                      "error": "the job left no outcome (killed, out of memory, or still running)"}
    return outcomes


def summarize(sweep_dir: str | Path, outcomes: dict[str, dict[str, Any]], log_name: str) -> str:
    """A few lines: counts, then each failed job with its error and its log."""
    failed = {name: outcome for name, outcome in outcomes.items() if outcome.get("status") != FINISHED}
    lines = [f"sweep {sweep_dir}: {len(outcomes)} job(s), {len(outcomes) - len(failed)} finished, "
             f"{len(failed)} failed"]
    for name, outcome in failed.items():
        lines.append(f"  job {name} {outcome.get('status')}: {outcome.get('error', '?')[:300]}")
        lines.append(f"    log: {Path(sweep_dir) / name / log_name}")
    if not outcomes:
        lines.append("  no job directory was found: the launcher started no job")
    return "\n".join(lines)


class SweepOutcomeCallback(Callback):
    """At the end of a sweep: summary on stderr and in `<sweep dir>/sweep_outcome.json`; exit 1 if no job finished."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        outcomes = read_job_outcomes(sweep_dir)
        log_name = f"{OmegaConf.select(config, 'task_name', default='train')}.log"
        summary = summarize(sweep_dir, outcomes, log_name)
        finished = sum(outcome.get("status") == FINISHED for outcome in outcomes.values())
        try:
            (sweep_dir / SWEEP_OUTCOME_FILE).write_text(json.dumps(
                {"num_jobs": len(outcomes), "num_finished": finished, "jobs": outcomes}, indent=2))
        except OSError as err:
            log.warning("could not write %s: %s", sweep_dir / SWEEP_OUTCOME_FILE, err)
        if finished == len(outcomes) and outcomes:
            log.info(summary)
            return
        print(summary, file=sys.stderr, flush=True)
        if finished == 0:
            print("every job of the sweep failed: exiting with status 1", file=sys.stderr, flush=True)
            sys.exit(1)
