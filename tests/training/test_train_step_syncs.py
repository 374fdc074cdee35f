"""No host sync in a train step that does not log (issue 16), and a non-finite step is still skipped."""
from __future__ import annotations

import traceback

import pytest
import torch

from tests.training.test_train import TINY

# The ways Python code waits for a tensor's value. Dynamic shapes (nonzero, boolean indexing of the matched
# people) also wait on a GPU; they are the model's own (ROMP picks a data-dependent number of people).
SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
# Nothing in a step may wait: the loop, the model path, the loss terms (masked, not branching on values) and
# the criterion's sum and NaN handling.


class SyncCounter:
    def __init__(self):
        self.on = False
        self.calls: list[str] = []

    def install(self, monkeypatch):
        for name in SYNC_METHODS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                if self.on:
                    where = traceback.extract_stack(limit=2)[0]
                    self.calls.append(f"Tensor.{_name} at {where.filename}:{where.lineno}")
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_steps_between_log_intervals_never_wait_for_the_device(compose_cfg, monkeypatch):
    from romp_hydra.training import loop
    from romp_hydra.training.run import train

    counter = SyncCounter()
    counter.install(monkeypatch)
    counter.on = True
    bool(torch.tensor(True))
    assert len(counter.calls) == 1  # the counter counts
    counter.on, counter.calls = False, []
    original_timed, original_log, original_save = loop.StepMeter.timed, loop.Trainer._log_window, loop.Trainer.save

    def timed(meter, loader):
        for index, batch in enumerate(original_timed(meter, loader)):
            counter.on = index >= 1  # step 1 logs; count from the second step on
            yield batch
            counter.on = False

    def not_counted(original):
        def call(self, *args, **kwargs):
            counter.on = False
            return original(self, *args, **kwargs)
        return call

    monkeypatch.setattr(loop.StepMeter, "timed", timed)
    monkeypatch.setattr(loop.Trainer, "_log_window", not_counted(original_log))
    monkeypatch.setattr(loop.Trainer, "save", not_counted(original_save))
    no_val = [o for o in TINY if not o.startswith("val.")]
    # The user's defaults (log every 50 steps, NaN check every 20) leave steps 2..6 without logging.
    train(compose_cfg([*no_val, "val=none", "logger=none", "trainer.max_steps=6", "trainer.log_every_steps=50",
                       "trainer.vis_every_steps=1000", "trainer.ckpt_every_steps=1000"]))
    assert counter.calls == [], "\n".join(counter.calls[:20])


def test_a_non_finite_step_leaves_the_weights_unchanged(compose_cfg, monkeypatch):
    from romp_hydra.losses.criterion import Criterion
    from romp_hydra.training import loop
    from romp_hydra.training.run import train

    snapshots: list[dict[str, torch.Tensor]] = []
    original_step = loop.Trainer._optimizer_step

    def recording_step(self, finite):
        before = {k: v.detach().clone() for k, v in self.net.state_dict().items() if v.is_floating_point()}
        original_step(self, finite)
        after = self.net.state_dict()
        snapshots.append({k: (after[k] - v).abs().max() for k, v in before.items()})

    original_forward = Criterion.forward
    calls = {"n": 0}

    def nan_on_second_step(self, *args, **kwargs):
        total, terms = original_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            terms = {**terms, "kp2d": torch.tensor(float("nan"))}
        return total, terms

    monkeypatch.setattr(loop.Trainer, "_optimizer_step", recording_step)
    monkeypatch.setattr(Criterion, "forward", nan_on_second_step)
    no_val = [o for o in TINY if not o.startswith("val.")]
    train(compose_cfg([*no_val, "val=none", "logger=none", "trainer.max_steps=3", "trainer.vis_every_steps=1000"]))
    changed = [max(float(d) for d in step.values()) for step in snapshots]
    assert changed[0] > 0 and changed[2] > 0
    assert changed[1] == pytest.approx(0.0, abs=0.0)  # skipped on the device
