"""The full ROMP train step next to the network-only step, side by side in one process.

    python benchmarks/train_step.py                                  # HRNet-32 and ResNet-50, 512 px, CPU batch 2
    python benchmarks/train_step.py --backbones hrnet32 --iters 7 --threads 2
    python benchmarks/train_step.py --device cuda --precisions fp32 bf16 fp16 --channels-last both

network-only  forward, ``loss = params_maps.sum() + center_map.sum()``, backward, Adam (fused) step
full          the training loop's step (`training.loop.Trainer`): the model path (network, centre matching,
              SMPL, projection), the v1 criterion, the on-device finite check and window sums, backward,
              the guarded Adam (fused) step; the batch is fixed (4 people per image, every annotation) and
              already on the device, so data loading is not in either figure (see benchmarks/data_pipeline.py)

The two are interleaved step by step (one of each per round, after warm-up) and each figure is the median over
the rounds; the ratio full / network-only is what the training loop costs beyond the network. The body model is
the generated stand-in (SMPL's array layout and size; the licensed SMPL costs the same). Matching is
``gt_center`` so that every GT person is supervised from the first step, as in a trained model (with
``nearest_center`` an untrained network finds no centre and the full step would skip SMPL altogether).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from romp_hydra.body.smpl import build_body_model
from romp_hydra.losses.criterion import Criterion
from romp_hydra.models import HRNet, ResNet, ROMPNet
from romp_hydra.models.model import PeoplePicker, autocast_context, resolve_precision
from romp_hydra.models.predictor import Predictor
from romp_hydra.training.distributed import DistInfo
from romp_hydra.training.loop import StepMeter, Trainer

BACKBONES = {"hrnet32": HRNet, "resnet50": ResNet}
# ROMP's published inference speed (paper, Table 6: GTX 1070Ti, 512 x 512): the figure to compare with.
ROMP_INFERENCE_FPS = {"hrnet32": 23.8, "resnet50": 30.9}
V1_WEIGHTS = {"centermap": 160, "kp2d": 400, "mpjpe": 200, "pampjpe": 360, "pose": 80, "shape": 6}
PEOPLE = 4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(batch_size: int, size: int, device: torch.device, people: int = PEOPLE) -> dict:
    """A collated training batch with `people` fully annotated people per image (the loop's keys)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(batch_size, people, 2, generator=g) * 1.6 - 0.8
    params = torch.zeros(batch_size, people, 76)
    params[..., :66] = (torch.rand(batch_size, people, 66, generator=g) - 0.5) * 0.4
    params[..., 66:] = torch.randn(batch_size, people, 10, generator=g) * 0.5
    map_size = size // 8
    batch = {
        "image": torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=g),
        "kp2d": torch.rand(batch_size, people, 54, 2, generator=g) * 1.6 - 0.8,
        "kp3d": (torch.rand(batch_size, people, 54, 3, generator=g) - 0.5) * 0.8,
        "params": params,
        "valid_masks": torch.ones(batch_size, people, 8, dtype=torch.bool),
        "centers": centers,
        "person_mask": torch.ones(batch_size, people, dtype=torch.bool),
        "centermap": torch.rand(batch_size, 1, map_size, map_size, generator=g) * 0.1,
        "all_persons_labelled": torch.ones(batch_size, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}


class Settings:
    """The few trainer settings the step reads."""

    def __init__(self, precision: str, channels_last: bool):
        self.precision, self.channels_last = precision, channels_last
        self.grad_clip_norm, self.accumulate_steps = None, 1
        self.max_consecutive_nan, self.data_wait_warn_share = 20, 0.2


def build_pair(backbone: str, device: torch.device, precision: str, channels_last: bool, compile_net: bool,
               body_dir: Path):
    """(network-only step, full step) closures on two identical networks."""
    torch.manual_seed(0)
    nets = [ROMPNet(BACKBONES[backbone]()).to(device).train() for _ in range(2)]
    if channels_last and device.type == "cuda":
        nets = [net.to(memory_format=torch.channels_last) for net in nets]
    if compile_net:
        for net in nets:
            net.compile()
    resolved = resolve_precision(precision, device)

    net_only = nets[0]
    opt_only = torch.optim.Adam(net_only.parameters(), lr=5e-5, fused=True)
    scaler_only = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and resolved == "fp16")

    def network_step(batch):
        images = batch["image"]
        if channels_last and device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, resolved):
            out = net_only(images)
        loss = out["params_maps"].float().sum() + out["center_map"].float().sum()
        scaler_only.scale(loss).backward()
        scaler_only.step(opt_only)
        scaler_only.update()
        opt_only.zero_grad(set_to_none=True)

    body = build_body_model("standin", body_dir, root_align=False)
    predictor = Predictor(body, root_align=True).to(device)
    picker = PeoplePicker(matching="gt_center", center_threshold=0.2, max_detections=64)
    criterion = Criterion(V1_WEIGHTS, loss_thresh=1000.0).to(device)
    optimizer = torch.optim.Adam(nets[1].parameters(), lr=5e-5, fused=True)
    trainer = Trainer(nets[1], predictor, picker, criterion, optimizer, None, None, device,
                      Settings(precision, channels_last), Path(tempfile.mkdtemp()), None, DistInfo())
    meter = StepMeter(device)

    def full_step(batch):
        # The body of Trainer.fit for one optimiser step (accumulate_steps=1), without the loader.
        total, terms, _ = trainer._forward_loss(batch)
        finite = meter.add(total, terms, int(batch["image"].shape[0]))
        if trainer.scaler.is_enabled():
            total = total * torch.where(finite, 1.0, float("nan"))
        trainer.scaler.scale(total).backward()
        trainer._optimizer_step(finite)

    return network_step, full_step, resolved


def measure(network_step, full_step, batch, device, warmup: int, iters: int) -> tuple[list[float], list[float]]:
    only, full = [], []
    for step in range(warmup + iters):
        for fn, times in ((network_step, only), (full_step, full)):
            _sync(device)
            start = time.perf_counter()
            fn(batch)
            _sync(device)
            if step >= warmup:
                times.append(time.perf_counter() - start)
    return only, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda[:N]; default cpu (+ cuda)")
    parser.add_argument("--batch-size", type=int, default=2, help="CPU batch (issue 16's figure: 2)")
    parser.add_argument("--cuda-batch-size", type=int, default=32, help="CUDA batch (ROMP's v1 batch: 32)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=5, help="timed rounds (one step of each per round)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="CUDA precisions (default fp32 bf16 fp16); the CPU runs fp32")
    parser.add_argument("--channels-last", choices=["on", "off", "both"], default="both",
                        help="CUDA only (the CPU runs contiguous)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    body_dir = Path(tempfile.gettempdir()) / "romp_hydra_bench_standin"
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, input {args.size}x{args.size}, "
          f"{args.warmup} warm-up + {args.iters} interleaved rounds, {PEOPLE} people per image, median s/step")
    print("ROMP reference (paper, inference on a GTX 1070Ti, 512 px): "
          + ", ".join(f"{b} {fps} FPS" for b, fps in ROMP_INFERENCE_FPS.items()))
    for device_name in devices:
        device = torch.device(device_name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        batch_size = args.cuda_batch_size if device.type == "cuda" else args.batch_size
        precisions = (args.precisions or ["fp32", "bf16", "fp16"]) if device.type == "cuda" else ["fp32"]
        layouts = {"on": [True], "off": [False], "both": [False, True]}[args.channels_last]
        if device.type != "cuda":
            layouts = [False]
        batch = make_batch(batch_size, args.size, device)
        for backbone in args.backbones:
            for precision in precisions:
                for channels_last in layouts:
                    network_step, full_step, resolved = build_pair(backbone, device, precision, channels_last,
                                                                   args.compile, body_dir)
                    only, full = measure(network_step, full_step, batch, device, args.warmup, args.iters)
                    m_only, m_full = statistics.median(only), statistics.median(full)
                    ratios = [f / o for f, o in zip(full, only)]
                    tag = f"{backbone:8s} {label} {resolved}{' channels_last' if channels_last else ''}" \
                          f"{' compiled' if args.compile else ''} batch {batch_size}"
                    print(f"{tag}: network-only {m_only:.3f} s/step ({batch_size / m_only:.1f} img/s) | full "
                          f"{m_full:.3f} s/step ({batch_size / m_full:.1f} img/s) | full/network "
                          f"{m_full / m_only:.3f} (median of per-round ratios {statistics.median(ratios):.3f})")
                    del network_step, full_step
                    if device.type == "cuda":
                        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
