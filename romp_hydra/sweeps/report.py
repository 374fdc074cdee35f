"""Compare the jobs of a mixture sweep: one row per job with its weights, metric and status.

Everything is read from MLflow: the sweep's parent run (created by `MLflowSweepCallback`) and the job runs
nested under it. A job's row holds

* the raw weights it was configured with (param `sampling.weights.<member>`; empty for sampling=uniform),
* the normalised weights the sampler drew with (param `mixture.<member>`),
* for an Optuna simplex trial, the raw search parameters (param `u_<member>`),
* the final (last logged) and best value of the chosen metric, the step of the best value and the last step,
* the run status (FINISHED / FAILED / KILLED / RUNNING) and, for a failed job, its error.

`python -m romp_hydra.compare` prints the table, writes it as CSV, plots the metric against the weights and logs
both files to the parent run.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

PARENT_TAG = "mlflow.parentRunId"
DEFAULT_METRIC = "val/mpjpe"
RAW_WEIGHT_PARAM = "sampling.weights."
WEIGHT_PARAM = "mixture."
SEARCH_PARAM = "u_"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class JobRow:
    """One job of the sweep, as its MLflow run records it."""

    run_id: str
    run_name: str
    status: str
    job_num: int | None
    raw_weights: dict[str, float | None]
    weights: dict[str, float | None]
    search_params: dict[str, float]
    final: float | None
    best: float | None
    best_step: int | None
    last_step: int | None
    error: str = ""


@dataclass
class SweepReport:
    """The sweep's parent run and one `JobRow` per nested job run, ordered by job number."""

    tracking_uri: str
    parent_run_id: str
    parent_run_name: str
    sweep_dir: Path | None
    metric: str
    mode: str  # "min" or "max": which direction of `metric` is better
    members: list[str]
    rows: list[JobRow] = field(default_factory=list)

    @property
    def has_search_params(self) -> bool:
        """True for an Optuna simplex sweep, whose jobs carry the raw `u_<member>` params."""
        return any(row.search_params for row in self.rows)

    def best_row(self) -> JobRow | None:
        """The finished job with the best `best` value (None if no finished job measured the metric)."""
        candidates = [row for row in self.rows if row.status == "FINISHED" and _finite(row.best)]
        if not candidates:
            return None
        pick = min if self.mode == "min" else max
        return pick(candidates, key=lambda row: row.best)


# ----------------------------------------------------------------------------------------------- finding the sweep


def resolve_target(target: str, tracking_uri: str | None = None) -> tuple[str, str, Path | None]:
    """(tracking URI, parent run id, sweep dir or None) for a sweep directory or a parent run id.

    For a sweep directory the parent run id is read from `<dir>/mlflow_parent_run_id` and the store from the
    sweep's config (logger.tracking_uri in multirun.yaml, or in a job's .hydra/config.yaml: the Optuna sweeper
    writes no multirun.yaml), unless `tracking_uri` is given. For a run id the store is `tracking_uri`, else
    $MLFLOW_TRACKING_URI, else the project's default store. A SQLite store that does not exist is an error
    (MLflow would silently create an empty one).
    """
    from romp_hydra.tracking.run_info import PARENT_RUN_ID_FILE
    from romp_hydra.tracking.store import normalize_tracking_uri, sqlite_path

    path = Path(target)
    if path.is_dir():
        id_file = path / PARENT_RUN_ID_FILE
        if not id_file.is_file():
            raise FileNotFoundError(
                f"{id_file} does not exist: {path} is not a sweep directory tracked in MLflow (was the sweep run "
                "with logger=none, or without the mlflow_sweep callback?). Pass the parent run id instead."
            )
        parent_run_id, sweep_dir = id_file.read_text().strip(), path.resolve()
        uri = normalize_tracking_uri(tracking_uri or sweep_tracking_uri(path))
    elif _RUN_ID.match(target):
        parent_run_id, sweep_dir = target, None
        uri = normalize_tracking_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    else:
        raise FileNotFoundError(f"{target!r} is neither a sweep directory nor an MLflow run id (32 hex characters); "
                                "pass e.g. logs/quickstart/multiruns/<date> or the parent run id from the MLflow UI")
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        raise FileNotFoundError(f"the MLflow store {uri} does not exist; pass the sweep's store with --tracking-uri")
    return uri, parent_run_id, sweep_dir


def sweep_tracking_uri(sweep_dir: Path) -> str | None:
    """logger.tracking_uri as the sweep resolved it: from multirun.yaml (basic sweeper) or from the first job's
    .hydra/config.yaml (every sweeper). None if neither file has it."""
    import romp_hydra.config  # noqa: F401  (registers ${project_root:}, used by the default store path)

    candidates = [sweep_dir / "multirun.yaml"]
    candidates += sorted(sweep_dir.glob("*/.hydra/config.yaml"), key=lambda p: (len(p.parts[-3]), p.parts[-3]))
    for config_file in candidates:
        if not config_file.is_file():
            continue
        value = OmegaConf.select(OmegaConf.load(config_file), "logger.tracking_uri", default=None)
        if value:
            return str(value)
    return None


# ----------------------------------------------------------------------------------------------- reading the runs


def collect_report(tracking_uri: str, parent_run_id: str, metric: str | None = None,
                   sweep_dir: Path | None = None) -> SweepReport:
    """Read the parent run and its children from the store and build the report.

    `metric` defaults to the jobs' `val.metric` param (the metric the sweep optimised), else val/mpjpe.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(parent_run_id)
    children = _child_runs(client, parent.info.experiment_id, parent_run_id)
    if not children:
        raise LookupError(f"the MLflow run {parent_run_id} ({parent.info.run_name}) in {tracking_uri} has no nested "
                          "job runs; is it the parent run of a sweep?")
    if metric is None:
        configured = {run.data.params.get("val.metric") for run in children} - {None, "null"}
        metric = configured.pop() if len(configured) == 1 else DEFAULT_METRIC
    modes = {run.data.params.get("val.mode") for run in children} - {None, "null"}
    mode = "max" if modes == {"max"} else "min"
    if sweep_dir is None and parent.data.tags.get("sweep.dir"):
        sweep_dir = Path(parent.data.tags["sweep.dir"])

    members = _members(children)
    rows = [_job_row(client, run, members, metric, mode) for run in children]
    rows.sort(key=lambda row: (row.job_num is None, row.job_num if row.job_num is not None else 0, row.run_id))
    return SweepReport(tracking_uri=tracking_uri, parent_run_id=parent_run_id, parent_run_name=parent.info.run_name,
                       sweep_dir=sweep_dir, metric=metric, mode=mode, members=members, rows=rows)


def _child_runs(client, experiment_id: str, parent_run_id: str) -> list:
    runs, page_token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=1000, page_token=page_token)
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


def _members(runs) -> list[str]:
    """Mixture members in config order (tag `mixture.members`), else whatever weight params the runs have."""
    for run in runs:
        listed = run.data.tags.get("mixture.members")
        if listed:
            return listed.split(",")
    names: list[str] = []
    for run in runs:
        for key in run.data.params:
            if key.startswith(WEIGHT_PARAM) and key[len(WEIGHT_PARAM):] not in names:
                names.append(key[len(WEIGHT_PARAM):])
    return names


def _job_row(client, run, members: list[str], metric: str, mode: str) -> JobRow:
    params, tags = run.data.params, run.data.tags
    history = client.get_metric_history(run.info.run_id, metric) if metric in run.data.metrics else []
    finite = [entry for entry in history if _finite(entry.value)]
    final = max(history, key=lambda entry: (entry.step, entry.timestamp)).value if history else None
    best_entry = None
    if finite:
        pick = min if mode == "min" else max
        best_entry = pick(finite, key=lambda entry: entry.value)
    job_num = tags.get("sweep.job_num")
    last_step = run.data.metrics.get("final/step")
    return JobRow(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        status=run.info.status,
        job_num=int(job_num) if job_num not in (None, "") else None,
        raw_weights={name: _float(params.get(f"{RAW_WEIGHT_PARAM}{name}")) for name in members},
        weights={name: _float(params.get(f"{WEIGHT_PARAM}{name}")) for name in members},
        search_params={name: float(params[f"{SEARCH_PARAM}{name}"]) for name in members
                       if f"{SEARCH_PARAM}{name}" in params},
        final=final,
        best=best_entry.value if best_entry else None,
        best_step=best_entry.step if best_entry else None,
        last_step=int(last_step) if last_step is not None else None,
        error=tags.get("error") or tags.get("failure") or "",
    )


def _float(text: str | None) -> float | None:
    if text in (None, "", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# ----------------------------------------------------------------------------------------------- output


def table_columns(report: SweepReport) -> list[str]:
    """Column names shared by the printed table and the CSV (the CSV adds run_id, run_name, error)."""
    columns = ["job", "status"]
    columns += [f"raw.{name}" for name in report.members]
    columns += [f"w.{name}" for name in report.members]
    if report.has_search_params:
        columns += [f"u.{name}" for name in report.members]
    columns += [f"final {report.metric}", f"best {report.metric}", "best_step", "last_step"]
    return columns


def row_values(report: SweepReport, row: JobRow) -> list[Any]:
    """One job's values in the order of `table_columns` (None where the run has no value)."""
    values: list[Any] = [row.job_num, row.status]
    values += [row.raw_weights.get(name) for name in report.members]
    values += [row.weights.get(name) for name in report.members]
    if report.has_search_params:
        values += [row.search_params.get(name) for name in report.members]
    values += [row.final, row.best, row.best_step, row.last_step]
    return values


def format_table(report: SweepReport) -> str:
    """The report as an aligned text table; the best finished job is marked with '*'."""
    columns = table_columns(report)
    best = report.best_row()
    lines = [[""] + columns]
    for row in report.rows:
        mark = "*" if best is not None and row is best else ""
        lines.append([mark] + [_cell(value) for value in row_values(report, row)])
    widths = [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]
    text = [" ".join(cell.rjust(width) if c > 2 else cell.ljust(width)
                     for c, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines]
    text.insert(1, "-" * len(text[0]))
    direction = "lower" if report.mode == "min" else "higher"
    header = (f"sweep {report.parent_run_name} (parent run {report.parent_run_id}), {len(report.rows)} jobs; "
              f"{report.metric}: {direction} is better")
    footer = []
    if best is not None:
        footer.append(f"* best: job {best.job_num} ({best.run_name}), {report.metric} = {_cell(best.best)}")
    for row in report.rows:
        if row.error:
            footer.append(f"job {row.job_num} {row.status}: {row.error.splitlines()[0][:200]}")
    return "\n".join([header, *text, *footer])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def write_csv(report: SweepReport, path: Path) -> Path:
    """The table with full precision plus run_id, run_name and error (one row per job)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*table_columns(report), "run_id", "run_name", "error"])
        for row in report.rows:
            values = ["" if value is None else value for value in row_values(report, row)]
            writer.writerow([*values, row.run_id, row.run_name, row.error])
    return path


def plot_metric_vs_weights(report: SweepReport, path: Path) -> Path:
    """PNG of the metric against each member's normalised weight: best value filled, final value hollow, each
    point labelled with its job number. Two members share one axis (the second's weight; the first's is 1 - x).
    Jobs without a finite value (failed, diverged) are listed in the title instead."""
    import matplotlib

    matplotlib.use("Agg")  # no display on clusters and CI
    import matplotlib.pyplot as plt

    axes_members = report.members[1:] if len(report.members) == 2 else report.members
    columns = min(len(axes_members), 4) or 1
    rows = -(-len(axes_members) // columns) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    plotted = [row for row in report.rows if _finite(row.best)]
    missing = [row for row in report.rows if not _finite(row.best)]
    best = report.best_row()
    for index, axis in enumerate(axes.flat):
        if index >= len(axes_members):
            axis.set_visible(False)
            continue
        name = axes_members[index]
        points = [(row.weights.get(name), row) for row in plotted if row.weights.get(name) is not None]
        xs = [x for x, _ in points]
        axis.scatter(xs, [row.best for _, row in points], color="tab:blue", label=f"best {report.metric}", zorder=3)
        finals = [(x, row.final) for x, row in points if _finite(row.final)]
        axis.scatter([x for x, _ in finals], [y for _, y in finals], s=110, facecolors="none",
                     edgecolors="tab:orange", label=f"final {report.metric}", zorder=4)  # a ring around the best
        for x, row in points:
            axis.annotate(str(row.job_num), (x, row.best), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if row is best:
                axis.scatter([x], [row.best], marker="*", s=160, color="tab:red", zorder=4, label="best job")
        if len(report.members) == 2:
            axis.set_xlabel(f"weight of {name} ({report.members[0]} = 1 - x)")
        else:
            axis.set_xlabel(f"weight of {name}")
        axis.set_ylabel(report.metric)
        axis.set_xlim(-0.05, 1.05)
        axis.grid(alpha=0.3)
        if index == 0:
            axis.legend(fontsize=8)
    title = f"{report.parent_run_name}: {report.metric} vs. mixture weights"
    if missing:
        title += f"\nnot shown (no finite value): jobs {', '.join(str(row.job_num) for row in missing)}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def log_to_parent(report: SweepReport, files: list[Path], artifact_path: str = "compare") -> None:
    """Upload the report files to the parent run and tag it with the best job."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=report.tracking_uri)
    for path in files:
        client.log_artifact(report.parent_run_id, str(path), artifact_path)
    best = report.best_row()
    if best is not None:
        client.set_tag(report.parent_run_id, "compare.best_run_id", best.run_id)
        client.set_tag(report.parent_run_id, f"compare.best_{_slug(report.metric)}", f"{best.best:.6g}")


def output_stem(metric: str) -> str:
    """File name stem of the report files for `metric`, e.g. compare_val_mpjpe."""
    return f"compare_{_slug(metric)}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
