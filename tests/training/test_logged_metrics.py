"""The training metrics logged are the numbers of each step, averaged over the log window, as before the step
was made sync-free: every finite step's total and terms, read one by one, against what the loop logged."""
from __future__ import annotations

import math

import pytest

# Timing-dependent metrics differ run to run.
UNSTABLE = ("train/samples_per_s", "train/data_wait_share")
STEPS = 5
LOG_EVERY = 2  # logs at steps 1, 2, 4 and the remainder (5) at the end


class RecordingTracker:
    """A tracker that keeps what the loop logs."""

    def __init__(self):
        self.metrics: dict[int, dict[str, float]] = {}

    def start(self, *args, **kwargs):
        return None

    def log_metrics(self, metrics, step):
        self.metrics.setdefault(int(step), {}).update({k: float(v) for k, v in metrics.items()})

    def __getattr__(self, name):  # log_params, log_image, set_tags, flush, finish, ...: ignored
        return lambda *args, **kwargs: None


def test_logged_training_metrics_are_the_window_means_of_each_step(compose_cfg, monkeypatch):
    from romp_hydra.training import run
    from romp_hydra.training.loop import Trainer
    from tests.training.test_train import TINY

    tracker = RecordingTracker()
    monkeypatch.setattr(run, "build_tracker", lambda cfg, rank=0: tracker)
    per_step: list[dict[str, float]] = []
    original = Trainer._forward_loss

    def recording_forward_loss(self, batch, **kwargs):
        total, terms, output = original(self, batch, **kwargs)
        per_step.append({"train/loss": float(total), **{f"train/{k}": float(v) for k, v in terms.items()}})
        return total, terms, output

    monkeypatch.setattr(Trainer, "_forward_loss", recording_forward_loss)
    no_val = [o for o in TINY if not o.startswith("val.")]
    cfg = compose_cfg([*no_val, f"trainer.max_steps={STEPS}", f"trainer.log_every_steps={LOG_EVERY}", "val=none",
                       "trainer.vis_every_steps=1000", "logger=none"])
    run.train(cfg)

    assert len(per_step) == STEPS and all(math.isfinite(v) for step in per_step for v in step.values())
    windows = {1: per_step[0:1], 2: per_step[1:2], 4: per_step[2:4], 5: per_step[4:5]}
    assert all(0.0 <= values["train/data_wait_share"] <= 1.0 for values in tracker.metrics.values()
               if "train/loss" in values)  # the share of the window spent blocked in next(loader)
    logged = {step: {k: v for k, v in values.items() if k.startswith("train/") and k not in UNSTABLE}
              for step, values in tracker.metrics.items() if step <= STEPS}
    assert sorted(logged) == sorted(windows)
    for step, steps in windows.items():
        expected = {name: sum(s[name] for s in steps) / len(steps) for name in steps[0]}
        expected.update({"train/lr": 1e-3, "train/nan_steps": 0.0})
        assert sorted(logged[step]) == sorted(expected), step
        for name, value in expected.items():
            assert logged[step][name] == pytest.approx(value, rel=1e-5), (step, name)
