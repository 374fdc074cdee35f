"""A mixture of real-format dataset fixtures trains for a few steps (issue: all registered datasets)."""
from __future__ import annotations

import math

from romp_hydra.training.checkpointing import load_checkpoint
from romp_hydra.training.run import train
from tests.data.sources.fixtures_2d import write_coco_fixture, write_crowdpose_fixture, write_mpii_fixture


def test_mixture_of_fixture_datasets_trains(compose_cfg, tmp_path):
    data_dir = tmp_path / "dataset"
    write_coco_fixture(data_dir)
    write_crowdpose_fixture(data_dir)
    write_mpii_fixture(data_dir)
    cfg = compose_cfg([
        "dataset=coco",
        "+source@dataset.members.crowdpose=crowdpose",
        "+source@dataset.members.mpii=mpii",
        "+sampling.weights={coco: 0.5, crowdpose: 0.3, mpii: 0.2}",
        f"paths.data_dir={data_dir}",
        "backbone=hrnet_tiny", "model.head_channels=16", "body_model=standin", "loss.gmm_path=null",
        "data.input_size=64", "data.centermap_size=8", "data.max_person=8", "data.batch_size=4",
        "data.num_workers=0", "sampling.epoch_samples=8", "trainer.max_steps=4", "trainer.log_every_steps=1",
        "trainer.device=cpu", "logger=none",
    ])
    assert set(cfg.dataset.members) == {"coco", "crowdpose", "mpii"}
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["loop"]["step"] == 4 and ckpt["loop"]["nan_steps"] == 0
    assert all(math.isfinite(float(v.float().abs().sum())) for v in ckpt["model"].values())
