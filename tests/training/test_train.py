"""End-to-end training on the embedded synthetic data with a tiny network (CPU, seconds per test)."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from romp_hydra.training.checkpointing import load_checkpoint
from romp_hydra.training.run import train

REPO_ROOT = Path(__file__).resolve().parents[2]

# The quickstart recipe shrunk to test size: 64 px input, 4 images per batch, a dozen synthetic images per source.
TINY = [
    "experiment=quickstart",
    "data.input_size=64",
    "data.centermap_size=8",
    "data.max_person=8",
    "data.batch_size=4",
    "data.val_batch_size=4",
    "data.num_workers=0",
    "model.head_channels=16",
    "sampling.epoch_samples=16",
    "dataset.members.synth_solo.num_samples=12",
    "dataset.members.synth_crowd.num_samples=12",
    "dataset.members.synth_solo.image_size_range=[96,128]",
    "dataset.members.synth_crowd.image_size_range=[96,128]",
    "val.dataset.members.synth_solo.num_samples=4",
    "val.dataset.members.synth_crowd.num_samples=4",
    "val.dataset.members.synth_solo.image_size_range=[96,128]",
    "val.dataset.members.synth_crowd.image_size_range=[96,128]",
    "val.protocol.matching=gt_center",  # scores every GT person even before the centre map has peaks
    "trainer.log_every_steps=5",
    "trainer.vis_every_steps=10",
    "trainer.val_every_steps=10",
    "trainer.ckpt_every_steps=10",
]


def test_tiny_run_leaves_log_pictures_checkpoint(compose_cfg, tmp_path):
    cfg = compose_cfg([*TINY, "trainer.max_steps=20", "logger=none"])
    objective = train(cfg)
    run_dir = tmp_path / "run"
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["loop"]["step"] == 20
    assert (run_dir / "quickstart.log").read_text().count("step 20") >= 1
    assert list((run_dir / "pictures" / "train").glob("step_*.jpg"))
    assert list((run_dir / "pictures" / "val").glob("step_*.jpg"))
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert objective is not None and math.isfinite(objective)


def test_resume_continues_exactly(compose_cfg, tmp_path):
    common = [*TINY, "logger=none", "trainer.val_every_steps=1000", "trainer.vis_every_steps=1000"]
    straight = compose_cfg([*common, "trainer.max_steps=8", f"hydra.run.dir={tmp_path / 'straight'}"])
    train(straight)
    first = compose_cfg([*common, "trainer.max_steps=4", f"hydra.run.dir={tmp_path / 'resumed'}"])
    train(first)
    second = compose_cfg([*common, "trainer.max_steps=8", f"resume={tmp_path / 'resumed'}",
                          f"hydra.run.dir={tmp_path / 'ignored'}"])
    train(second)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["loop"]["step"] == b["loop"]["step"] == 8
    assert a["sampler"] == b["sampler"]
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_finetune_loads_model_weights_only(compose_cfg, tmp_path):
    source = compose_cfg([*TINY, "trainer.max_steps=2", "logger=none", f"hydra.run.dir={tmp_path / 'source'}"])
    train(source)
    ckpt_path = tmp_path / "source" / "checkpoints" / "last.pt"
    tuned = compose_cfg([*TINY, "trainer.max_steps=1", "logger=none", f"ckpt_path={ckpt_path}",
                         f"hydra.run.dir={tmp_path / 'tuned'}"])
    train(tuned)
    after = load_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.pt")
    assert after["loop"]["step"] == 1  # a fresh schedule: only the weights came from the checkpoint


def test_mlflow_run_holds_params_metrics_and_pictures(compose_cfg, tmp_path):
    import mlflow

    cfg = compose_cfg([*TINY, "trainer.max_steps=10", "logger=mlflow"])
    train(cfg)
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["data.input_size"] == "64"
    assert float(run.data.params["mixture.synth_solo"]) == pytest.approx(0.3)
    assert run.data.tags["body_model"] == "standin"
    assert run.data.tags["init"] == "scratch"  # which weights the run started from (quickstart: ROMP's init)
    assert "train/loss" in run.data.metrics and "val/mpjpe" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "pictures")]
    assert any("train" in path for path in artifacts), artifacts


def test_tracker_failure_does_not_stop_training(compose_cfg, tmp_path, monkeypatch):
    import mlflow

    cfg = compose_cfg([*TINY, "trainer.max_steps=6", "logger=mlflow"])

    def broken(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("tracking store is down")

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", broken)
    train(cfg)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["loop"]["step"] == 6
    fallback = tmp_path / "run" / "metrics_fallback.jsonl"
    assert fallback.is_file() and json.loads(fallback.read_text().splitlines()[0])


def test_nan_steps_are_skipped_then_stop_with_diagnosis(compose_cfg, monkeypatch):
    from romp_hydra.losses.criterion import Criterion
    from romp_hydra.training.loop import TrainingDiverged

    original = Criterion.forward

    def nan_forward(self, *args, **kwargs):
        total, terms = original(self, *args, **kwargs)
        terms = {**terms, "pampjpe": torch.tensor(float("nan"))}
        return total, terms

    monkeypatch.setattr(Criterion, "forward", nan_forward)
    cfg = compose_cfg([*TINY, "trainer.max_steps=20", "trainer.max_consecutive_nan=3", "logger=none"])
    with pytest.raises(TrainingDiverged, match="3 consecutive steps.*pampjpe"):
        train(cfg)


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path, shared_cache_dir):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "romp_hydra.train", *TINY, "trainer.max_steps=100000", "logger=none",
           f"paths.cache_dir={shared_cache_dir}", f"hydra.run.dir={run_dir}", "trainer.ckpt_every_steps=100000"]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_file = run_dir / "quickstart.log"
    deadline = time.time() + 240
    while time.time() < deadline and not (log_file.is_file() and "step 5 " in log_file.read_text()):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["loop"]["step"] >= 5
