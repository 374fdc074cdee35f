"""The CUDA paths: mixed precision (bf16, fp16 with the scaler), channels_last, torch.compile, the sync-free
step. Marked `cuda`: skipped without a GPU; benchmarks/gpu_check.sh runs them."""
from __future__ import annotations

import math

import pytest
import torch

from romp_hydra.training.checkpointing import load_checkpoint
from tests.training.test_train import TINY

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
NO_VAL = [o for o in TINY if not o.startswith("val.")]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "mixed"])
def test_training_on_cuda_in_mixed_precision(compose_cfg, tmp_path, precision):
    from romp_hydra.training.run import train

    cfg = compose_cfg([*TINY, "logger=none", "trainer.device=cuda", f"trainer.precision={precision}",
                       "trainer.max_steps=6", "trainer.log_every_steps=2", "data.num_workers=1"])
    objective = train(cfg)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["loop"]["step"] == 6 and ckpt["loop"]["nan_steps"] == 0
    assert objective is not None and math.isfinite(objective)
    if precision == "fp16" or (precision == "mixed" and not torch.cuda.is_bf16_supported()):
        assert ckpt["scaler"]["scale"] > 0  # the dynamic loss scaler ran


def test_channels_last_and_compile_give_the_same_maps(make_tiny_net_cuda):
    from romp_hydra.models.model import run_network

    net = make_tiny_net_cuda().eval()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    device = torch.device("cuda")
    plain = run_network(net, images, device)
    last = run_network(net.to(memory_format=torch.channels_last), images, device, channels_last=True)
    torch.testing.assert_close(last["params_maps"], plain["params_maps"], rtol=1e-3, atol=1e-3)
    net.compile()
    compiled = run_network(net, images, device)
    torch.testing.assert_close(compiled["center_map"], plain["center_map"], rtol=1e-3, atol=1e-3)


@pytest.fixture
def make_tiny_net_cuda():
    from romp_hydra.models import HRNet, ROMPNet

    def build():
        torch.manual_seed(0)
        backbone = HRNet(width=8, stem_channels=16, layer1_blocks=1, stage_modules=(1, 1, 1), blocks_per_branch=1)
        return ROMPNet(backbone, head_channels=16).cuda()

    return build


def test_no_device_sync_between_log_intervals_on_cuda(compose_cfg):
    """On the GPU, count every synchronising CUDA call (torch's sync debug mode) in the steps that do not log.
    The model's dynamic number of people (centre peaks, matched GT, boolean selections) needs a few per step;
    the loop itself must add none: the count per step stays small and does not grow with the loss terms."""
    import warnings

    from romp_hydra.training import loop
    from romp_hydra.training.run import train

    counts: list[int] = []
    original_timed = loop.StepMeter.timed

    def timed(meter, loader):
        for index, batch in enumerate(original_timed(meter, loader)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                yield batch
                torch.cuda.set_sync_debug_mode("default")
            if index >= 1:
                counts.append(sum("synchroniz" in str(w.message) for w in caught))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.StepMeter, "timed", timed)
        train(compose_cfg([*NO_VAL, "val=none", "logger=none", "trainer.device=cuda", "trainer.precision=bf16",
                           "trainer.max_steps=6", "trainer.log_every_steps=50", "trainer.vis_every_steps=1000",
                           "trainer.ckpt_every_steps=1000", "data.num_workers=0"]))
    print("CUDA syncs per non-logging step:", counts)
    assert counts and max(counts) <= 40, counts
