"""The learning curve of a run: held-out metrics against training steps, the mean baseline as a dashed line.

    curve = LearningCurve(run_dir, tracker)
    curve.update(step, {"val/mpjpe": ..., "val/baseline_mpjpe": ..., "val/det_recall": ...})

Every update rewrites ``<run_dir>/learning_curve.png`` (and the points, ``learning_curve.json``, so a resumed run
continues its curve) and hands the PNG to the tracker (``log_artifact``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["CURVE_JSON", "CURVE_PNG", "LearningCurve", "plot_learning_curve"]

CURVE_PNG = "learning_curve.png"
CURVE_JSON = "learning_curve.json"
ERROR_METRICS = ("mpjpe", "pa_mpjpe", "pve")  # millimetres, left panel
RATE_METRICS = ("det_recall", "det_precision")  # 0..1, right panel
BASELINE_PREFIX = "baseline_"
_COLORS = {"mpjpe": "tab:blue", "pa_mpjpe": "tab:orange", "pve": "tab:green",
           "det_recall": "tab:red", "det_precision": "tab:purple"}  # fmt: skip


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(float(value))


def plot_learning_curve(
    points: Sequence[tuple[int, Mapping[str, float]]], path: str | Path, title: str = "", prefix: str = "val/"
) -> Path:
    """Draw ``points`` = [(step, metrics)] into a PNG at ``path``; returns the path.

    Left: MPJPE / PA-MPJPE / PVE (mm) with their ``<prefix>baseline_<name>`` as dashed lines; right:
    detection recall and precision.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, (errors, rates) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    steps = [step for step, _ in points]
    for name in ERROR_METRICS:
        key = f"{prefix}{name}"
        xy = [(s, m[key]) for s, m in points if _finite(m.get(key))]
        if xy:
            errors.plot(*zip(*xy), marker="o", color=_COLORS[name], label=name.replace("_", "-").upper())
        baselines = [m[f"{prefix}{BASELINE_PREFIX}{name}"] for _, m in points
                     if _finite(m.get(f"{prefix}{BASELINE_PREFIX}{name}"))]  # fmt: skip
        if baselines and steps:
            errors.hlines(baselines[-1], min(steps), max(max(steps), min(steps) + 1), colors=_COLORS[name],
                          linestyles="dashed", label=f"mean baseline {name.replace('_', '-').upper()}")
    errors.set_xlabel("training step")
    errors.set_ylabel("held-out error (mm)")
    errors.set_ylim(bottom=0)
    errors.grid(alpha=0.3)
    errors.legend(fontsize=7)
    for name in RATE_METRICS:
        key = f"{prefix}{name}"
        xy = [(s, m[key]) for s, m in points if _finite(m.get(key))]
        if xy:
            rates.plot(*zip(*xy), marker="o", color=_COLORS[name], label=name.replace("det_", "detection "))
    rates.set_xlabel("training step")
    rates.set_ylim(0, 1.02)
    rates.grid(alpha=0.3)
    rates.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)  # the tracker may be uploading the previous version: never a torn file
    return path


class LearningCurve:
    """Collects validation metrics of a run and keeps its learning-curve PNG up to date.

    Args:
        run_dir: the run directory (the PNG and JSON go there; an existing JSON is continued on resume).
        tracker: anything with ``log_artifact(path)`` (``romp_hydra.tracking``), or None.
        title: figure title (e.g. the task name).
    """

    def __init__(self, run_dir: str | Path, tracker=None, title: str = ""):
        self.run_dir = Path(run_dir)
        self.tracker, self.title = tracker, title
        self.points: list[tuple[int, dict[str, float]]] = []
        saved = self.run_dir / CURVE_JSON
        if saved.is_file():
            self.points = [(int(p["step"]), dict(p["metrics"])) for p in json.loads(saved.read_text())]

    def update(self, step: int, metrics: Mapping[str, float]) -> Path:
        """Add the metrics of one validation (replacing a point of the same or a later step: a resumed run
        repeats them) and redraw; returns the PNG's path."""
        kept = {k: float(v) for k, v in metrics.items() if _finite(v)}
        self.points = [(s, m) for s, m in self.points if s < int(step)] + [(int(step), kept)]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps([{"step": s, "metrics": m} for s, m in self.points], indent=1)
        temporary = self.run_dir / f".{CURVE_JSON}.tmp{os.getpid()}"
        temporary.write_text(data)
        os.replace(temporary, self.run_dir / CURVE_JSON)
        path = plot_learning_curve(self.points, self.run_dir / CURVE_PNG, self.title)
        if self.tracker is not None:
            self.tracker.log_artifact(path)
        return path
