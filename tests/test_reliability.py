"""What a run leaves behind after bad luck: skipped samples counted in the tracker, no stale checkpoint temporaries.
(The signal, sweep, preflight and bad-data tests live next to the code they test; docs/reliability.md maps them.)"""
from __future__ import annotations

from romp_hydra.tracking.base import NullTracker
from romp_hydra.training.checkpointing import LAST_NAME, atomic_torch_save, load_checkpoint
from romp_hydra.training.run import train
from tests.data.sources.fixtures_2d import write_coco_fixture


class RecordingTracker(NullTracker):
    """The tracker API, recording what the loop hands it (MLflow would store the same calls)."""

    def __init__(self):
        self.metrics: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))


def test_skipped_samples_reach_the_tracker(compose_cfg, tmp_path, monkeypatch):
    """An image that breaks after packing is replaced during training, and the count goes through the tracker's
    log_metrics at every logging step (to MLflow), not only into the log file."""
    data_dir = tmp_path / "dataset"
    write_coco_fixture(data_dir)
    overrides = [
        "dataset=coco", f"paths.data_dir={data_dir}", "backbone=hrnet_tiny", "model.head_channels=16",
        "body_model=standin", "loss.gmm_path=null", "backbone.pretrained=null", "data.input_size=64",
        "data.centermap_size=8", "data.max_person=8", "data.batch_size=4", "data.num_workers=0",
        "sampling.epoch_samples=8", "trainer.max_steps=3", "trainer.log_every_steps=1", "trainer.device=cpu",
        "logger=none",
    ]
    cfg = compose_cfg(overrides)
    from romp_hydra.data.loader import build_sources

    source = build_sources(cfg.dataset)["coco"]
    assert len(source) >= 2  # packs the store
    broken = source.image_paths()[1]
    broken.write_bytes(b"not an image")
    tracker = RecordingTracker()
    monkeypatch.setattr("romp_hydra.training.run.build_tracker", lambda cfg, rank=0: tracker)
    train(cfg)
    logged = [metrics for _, metrics in tracker.metrics if "data/skipped_samples" in metrics]
    assert len(logged) == 3  # every logging step (log_every_steps=1, 3 steps)
    assert logged[-1]["data/skipped_samples"] >= 1 and logged[-1]["data/bad_files"] == 1
    assert 0 < logged[-1]["data/skipped_fraction"] < 1


def test_a_save_removes_temporaries_left_by_a_kill(tmp_path):
    """kill -9 during torch.save leaves `.last.pt.<random>.tmp` (never the checkpoint itself half-written); the next
    save of that checkpoint (e.g. by the resumed run) removes them."""
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    left = ckpt_dir / f".{LAST_NAME}.k1ll3d.tmp"
    left.write_bytes(b"half a checkpoint")
    other = ckpt_dir / ".best.pt.x.tmp"  # another checkpoint's: its own save removes it
    other.write_bytes(b"")
    atomic_torch_save({"step": 3}, ckpt_dir / LAST_NAME)
    assert not left.exists() and other.exists()
    assert load_checkpoint(ckpt_dir / LAST_NAME)["step"] == 3
