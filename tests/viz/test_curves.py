"""The learning-curve PNG: drawn at every validation, logged to the tracker, continued after a resume."""
from __future__ import annotations

import json

import cv2

from romp_hydra.viz.curves import CURVE_JSON, CURVE_PNG, LearningCurve


class RecordingTracker:
    def __init__(self):
        self.artifacts = []

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append((path, artifact_path))


def _metrics(error, recall):
    return {"val/mpjpe": error, "val/pa_mpjpe": error / 2, "val/pve": error * 0.9, "val/det_recall": recall,
            "val/det_precision": 0.9, "val/baseline_mpjpe": 300.0, "val/baseline_pa_mpjpe": 190.0,
            "val/baseline_pve": 270.0, "val/num_images": 96.0}


def test_every_update_redraws_the_png_and_logs_it(tmp_path):
    tracker = RecordingTracker()
    curve = LearningCurve(tmp_path, tracker, title="quickstart")
    curve.update(0, _metrics(600.0, 0.0))
    path = curve.update(100, {**_metrics(250.0, 0.6), "val/pve": float("nan")})
    image = cv2.imread(str(path))
    assert path == tmp_path / CURVE_PNG and image is not None and image.shape[0] >= 300
    assert [p for p, _ in tracker.artifacts] == [path, path]
    points = json.loads((tmp_path / CURVE_JSON).read_text())
    assert [p["step"] for p in points] == [0, 100]
    assert "val/pve" not in points[1]["metrics"]  # non-finite values are left out, not plotted as gaps


def test_a_resumed_run_continues_its_curve_and_replaces_repeated_steps(tmp_path):
    first = LearningCurve(tmp_path)
    for step in (0, 100, 200):
        first.update(step, _metrics(500.0 - step, 0.5))
    resumed = LearningCurve(tmp_path)  # resumed from the step-100 checkpoint: step 200 is run again
    resumed.update(200, _metrics(123.0, 0.7))
    assert [(s, m["val/mpjpe"]) for s, m in resumed.points] == [(0, 500.0), (100, 400.0), (200, 123.0)]
    resumed.update(150, _metrics(321.0, 0.7))
    assert [s for s, _ in resumed.points] == [0, 100, 150]
