"""Compare the jobs of a sweep: python -m romp_hydra.compare <sweep dir | parent run id> [--metric M] [--out DIR]

Prints one row per job (raw and normalised weights, final and best value of the metric, status), writes the
table as <out>/compare_<metric>.csv, plots the metric against the weights as <out>/compare_<metric>.png, and logs
both files to the sweep's MLflow parent run (artifact folder compare/).

Examples:
  python -m romp_hydra.compare logs/quickstart/multiruns/2026-11-23_10-00-00.000000
  python -m romp_hydra.compare 3f2a...e9 --metric val/pa_mpjpe --tracking-uri sqlite:////data/mlflow.db
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from romp_hydra.sweeps.report import (
    collect_report,
    format_table,
    log_to_parent,
    output_stem,
    plot_metric_vs_weights,
    resolve_target,
    write_csv,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m romp_hydra.compare", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="the sweep directory (hydra.sweep.dir) or the MLflow parent run id")
    parser.add_argument("--metric", default=None,
                        help="metric to compare (default: the sweep's val.metric, else val/mpjpe)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the CSV and PNG (default: the sweep directory, else the current one)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: the sweep's logger.tracking_uri, else $MLFLOW_TRACKING_URI, "
                             "else the project's mlflow.db)")
    parser.add_argument("--no-log", action="store_true", help="do not upload the files to the parent run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tracking_uri, parent_run_id, sweep_dir = resolve_target(args.target, args.tracking_uri)
        report = collect_report(tracking_uri, parent_run_id, args.metric, sweep_dir)
    except (FileNotFoundError, LookupError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    out_dir = args.out or report.sweep_dir or Path.cwd()
    if not out_dir.is_dir() and args.out is None:  # the sweep ran on another machine
        out_dir = Path.cwd()
    stem = output_stem(report.metric)
    csv_path = write_csv(report, out_dir / f"{stem}.csv")
    png_path = plot_metric_vs_weights(report, out_dir / f"{stem}.png")
    print(format_table(report))
    print(f"\nwrote {csv_path} and {png_path}")
    if not args.no_log:
        log_to_parent(report, [csv_path, png_path])
        print(f"logged both to MLflow run {parent_run_id} (artifacts: compare/) in {tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
