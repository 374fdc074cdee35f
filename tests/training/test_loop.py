"""The loop's promises: every head in the graph on an unmatched batch, stops that save first, no lost steps."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from romp_hydra.training.checkpointing import load_checkpoint
from romp_hydra.training.run import train
from tests.training.test_train import TINY

# Validation only where a test asks for it; checkpoints only at the end.
QUIET = [*TINY, "logger=none", "trainer.val_every_steps=100000", "trainer.ckpt_every_steps=100000",
         "trainer.vis_every_steps=100000", "trainer.val_at_start=false"]


def unmatched_batch(batch_size: int = 2, max_person: int = 2, size: int = 64, map_size: int = 8) -> dict:
    """GT people with every annotation; the test's picker finds no centre, so none of them is matched."""
    centers = torch.tensor([[[-0.5, -0.5], [0.5, 0.5]]]).expand(batch_size, max_person, 2).clone()
    return {
        "image": torch.randint(0, 255, (batch_size, 3, size, size), dtype=torch.uint8),
        "kp2d": torch.rand(batch_size, max_person, 54, 2) * 2 - 1,
        "kp3d": torch.rand(batch_size, max_person, 54, 3) - 0.5,
        "params": torch.zeros(batch_size, max_person, 76),
        "valid_masks": torch.ones(batch_size, max_person, 8, dtype=torch.bool),
        "centers": centers,
        "person_mask": torch.ones(batch_size, max_person, dtype=torch.bool),
        "centermap": torch.zeros(batch_size, 1, map_size, map_size),
        "all_persons_labelled": torch.ones(batch_size, dtype=torch.bool),
    }


def test_unmatched_batch_keeps_every_head_in_the_graph(compose_cfg, tmp_path):
    """DDP with find_unused_parameters=False needs a gradient for every parameter on every step (issue 14.6)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from romp_hydra.models.model import PeoplePicker, build_model
    from romp_hydra.training.distributed import DistInfo
    from romp_hydra.training.loop import Trainer

    cfg = compose_cfg([*QUIET, "model.matching=nearest_center"])
    net, predictor, picker = build_model(cfg)
    nobody = PeoplePicker(matching="nearest_center", center_threshold=1e9, max_detections=picker.max_detections)
    criterion = instantiate(cfg.loss, _convert_="all")
    trainer = Trainer(net, predictor, nobody, criterion, None, None, None, torch.device("cpu"),
                      OmegaConf.to_object(cfg.trainer), tmp_path, None, DistInfo())
    total, terms, output = trainer._forward_loss(unmatched_batch())
    assert output["batch_idx"].numel() == 0  # nothing matched
    total.backward()
    missing = [name for name, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {len(missing)} parameters, e.g. {missing[:3]}"
    assert torch.isfinite(total)
    assert float(total) == pytest.approx(float(sum(terms.values())), rel=1e-6)  # the heads' term adds exactly 0


def _signal_at_step(monkeypatch, at_step: int) -> None:
    """SIGTERM to this process right after optimiser step `at_step`, as a scheduler would send it."""
    from romp_hydra.training.loop import Trainer

    original = Trainer._optimizer_step

    def step_then_signal(self, finite):
        original(self, finite)
        if self.state.step + 1 == at_step:  # the loop counts the step right after this call
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_optimizer_step", step_then_signal)


def test_stop_signal_saves_without_waiting_for_a_validation(compose_cfg, tmp_path, monkeypatch):
    from romp_hydra.training.validation import Validator

    validated: list[int] = []
    monkeypatch.setattr(Validator, "__call__", lambda self, step: validated.append(step) or {})
    _signal_at_step(monkeypatch, 3)
    train(compose_cfg([*QUIET, "trainer.max_steps=50"]))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["loop"]["step"] == 3
    assert validated == []  # the stop went straight to the checkpoint


def test_stop_signal_during_a_validation_abandons_it_and_saves(compose_cfg, tmp_path, monkeypatch):
    from romp_hydra.training.validation import Validator

    def slow_validation(self, step):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # a long validation: the stop must not wait for it
        return {}

    monkeypatch.setattr(Validator, "__call__", slow_validation)
    start = time.perf_counter()
    train(compose_cfg([*QUIET, "trainer.max_steps=50", "trainer.val_every_steps=2"]))
    assert time.perf_counter() - start < 50
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["loop"]["step"] == 2


@pytest.mark.parametrize("overrides", [
    ["trainer.max_steps=3"],  # the final validation
    # a periodic validation at step 3; the first periodic checkpoint would only come at step 100
    ["trainer.max_steps=10", "trainer.val_every_steps=3", "trainer.ckpt_every_steps=100"],
], ids=["final", "periodic"])
def test_a_failing_validation_loses_no_steps(compose_cfg, tmp_path, monkeypatch, overrides):
    from romp_hydra.training.validation import Validator

    def broken(self, step):
        raise RuntimeError("validation data went missing")

    monkeypatch.setattr(Validator, "__call__", broken)
    with pytest.raises(RuntimeError, match="validation data went missing"):
        train(compose_cfg([*QUIET, *overrides]))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["loop"]["step"] == 3


def test_meshes_are_built_only_for_the_steps_that_draw_them(compose_cfg, tmp_path, monkeypatch):
    from romp_hydra.models.predictor import Predictor
    from romp_hydra.training.loop import Trainer

    asked, drawn = [], []
    original = Predictor.forward

    def recording_forward(self, params, selection=None, vertices=True):
        asked.append(vertices)
        return original(self, params, selection, vertices)

    def recording_draw(self, batch, maps, people, step):
        drawn.append((step, tuple(people["verts"].shape[1:])))

    monkeypatch.setattr(Predictor, "forward", recording_forward)
    monkeypatch.setattr("romp_hydra.viz.panels.TrainingPictures.draw_train", recording_draw)
    no_val = [option for option in QUIET if not option.startswith("val.")]
    train(compose_cfg([*no_val, "trainer.max_steps=7", "trainer.vis_every_steps=3", "val=none"]))
    assert asked == [True, False, True, False, False, True, False]  # step 1, then every 3rd
    assert drawn == [(1, (6890, 3)), (3, (6890, 3)), (6, (6890, 3))]
