"""`python -m romp_hydra.compare`: the table and CSV hold exactly what MLflow recorded for each job."""
from __future__ import annotations

import csv
import math

import pytest
from mlflow.tracking import MlflowClient

from romp_hydra.compare import main
from romp_hydra.sweeps.report import JobRow, SweepReport, format_table, plot_metric_vs_weights
from tests.sweeps.conftest import SWEEP_STEPS, sweep_runs


@pytest.mark.slow
def test_compare_table_matches_the_runs(grid_sweep, tmp_path, capsys):
    assert main([str(grid_sweep.sweep_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    parent, children = sweep_runs(grid_sweep)
    client = MlflowClient(grid_sweep.tracking_uri)

    with open(tmp_path / "compare_val_mpjpe.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["job"] for row in rows] == ["0", "1", "2"]
    for row, child in zip(rows, children):
        history = [m.value for m in client.get_metric_history(child.info.run_id, "val/mpjpe")]
        assert row["run_id"] == child.info.run_id and row["status"] == "FINISHED"
        assert float(row["raw.synth_crowd"]) == float(child.data.params["sampling.weights.synth_crowd"])
        assert float(row["w.synth_crowd"]) == float(child.data.params["mixture.synth_crowd"])
        assert float(row["w.synth_solo"]) == float(child.data.params["mixture.synth_solo"])
        assert float(row["final val/mpjpe"]) == history[-1]
        assert float(row["best val/mpjpe"]) == min(history)
        assert int(row["last_step"]) == SWEEP_STEPS

    best = min(rows, key=lambda row: float(row["best val/mpjpe"]))
    table_lines = printed.splitlines()
    assert f"parent run {parent.info.run_id}" in table_lines[0]
    starred = [line for line in table_lines if line.startswith("*")]
    assert len(starred) == 2 and starred[0].split()[1] == best["job"]  # the marked row, then the footer
    assert (tmp_path / "compare_val_mpjpe.png").stat().st_size > 10_000

    logged = {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "compare")}
    assert logged == {"compare/compare_val_mpjpe.csv", "compare/compare_val_mpjpe.png"}
    assert client.get_run(parent.info.run_id).data.tags["compare.best_run_id"] == best["run_id"]


def test_compare_rejects_what_is_not_a_sweep(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "mlflow_parent_run_id" in capsys.readouterr().err
    assert main(["not-a-run-id"]) == 2
    missing_store = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["0" * 32, "--tracking-uri", missing_store]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()  # MLflow would have created an empty store


def _row(job: int, status: str, best: float | None, crowd: float) -> JobRow:
    return JobRow(run_id=f"run{job}", run_name=f"job{job}", status=status, job_num=job,
                  raw_weights={"solo": 1 - crowd, "crowd": crowd}, weights={"solo": 1 - crowd, "crowd": crowd},
                  search_params={}, final=best, best=best, best_step=10 if best else None, last_step=10,
                  error="" if status == "FINISHED" else "RuntimeError: boom")


@pytest.mark.parametrize("mode, expected_best", [("min", 1), ("max", 2)])
def test_best_row_skips_failed_and_non_finite_jobs(mode, expected_best):
    report = SweepReport(tracking_uri="sqlite:///x.db", parent_run_id="p", parent_run_name="sweep", sweep_dir=None,
                         metric="val/mpjpe", mode=mode, members=["solo", "crowd"],
                         rows=[_row(0, "FAILED", 1.0, 0.1), _row(1, "FINISHED", 5.0, 0.5),
                               _row(2, "FINISHED", 9.0, 0.9), _row(3, "FINISHED", math.nan, 0.3)])
    assert report.best_row().job_num == expected_best
    table = format_table(report)
    assert f"* best: job {expected_best}" in table
    assert "job 0 FAILED: RuntimeError: boom" in table


def test_plot_has_one_panel_per_member_beyond_two(tmp_path):
    import matplotlib.image

    rows = [_row(0, "FINISHED", 3.0, 0.2), _row(1, "FAILED", None, 0.6)]
    for row, third in zip(rows, (0.3, 0.1)):
        row.weights = {"solo": 1 - row.weights["crowd"] - third, "crowd": row.weights["crowd"], "extra": third}
    report = SweepReport(tracking_uri="sqlite:///x.db", parent_run_id="p", parent_run_name="sweep", sweep_dir=None,
                         metric="val/mpjpe", mode="min", members=["solo", "crowd", "extra"], rows=rows)
    path = plot_metric_vs_weights(report, tmp_path / "plot.png")
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 2.5 * height  # three panels side by side
