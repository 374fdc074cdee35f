"""Forward + backward time per image of ROMP's network (HRNet-32 and ResNet-50) at 512 x 512.

    python benchmarks/model_step.py                        # both backbones, CPU (+ CUDA if available)
    python benchmarks/model_step.py --batch-size 8 --iters 20 --device cuda --precision bf16 --channels-last

One step = forward, ``loss = params_maps.sum() + center_map.sum()``, backward, Adam step (lr 5e-5), like the
harness behind docs' reference timings (ROMP, 2-core CPU, B=2: ~4.5 s/iter HRNet-32, ~3.2 s/iter ResNet-50).
Reported: median seconds per step over ``--iters`` timed steps after ``--warmup`` steps, and per image.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from romp_hydra.models import HRNet, ResNet, ROMPNet

BACKBONES = {"hrnet32": HRNet, "resnet50": ResNet}
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    backbone: str,
    device: torch.device,
    batch_size: int,
    size: int,
    iters: int,
    warmup: int,
    precision: str,
    channels_last: bool,
) -> list[float]:
    """Seconds per training step, one entry per timed iteration."""
    torch.manual_seed(0)
    net = ROMPNet(BACKBONES[backbone]()).to(device).train()
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-5)
    use_amp = precision in AUTOCAST_DTYPES and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and precision == "fp16")

    times = []
    for step in range(warmup + iters):
        _sync(device)
        start = time.perf_counter()
        autocast = (
            torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
            if use_amp
            else contextlib.nullcontext()
        )
        with autocast:
            out = net(images)
            loss = out["params_maps"].sum() + out["center_map"].sum()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--size", type=int, default=512, help="input side in pixels")
    parser.add_argument(
        "--device",
        nargs="+",
        default=None,
        help="cpu and/or cuda[:N]; default: cpu, plus cuda when available",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", *AUTOCAST_DTYPES],
        help="autocast precision on CUDA (CPU always runs fp32)",
    )
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, input {args.size}x{args.size}, "
        f"batch {args.batch_size}, {args.warmup} warm-up + {args.iters} timed steps"
    )
    for device_name in devices:
        device = torch.device(device_name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        precision = args.precision if device.type == "cuda" else "fp32"
        for backbone in args.backbones:
            times = time_steps(
                backbone,
                device,
                args.batch_size,
                args.size,
                args.iters,
                args.warmup,
                precision,
                args.channels_last,
            )
            median = statistics.median(times)
            print(
                f"{backbone:9s} {label} {precision}{' channels_last' if args.channels_last else ''}: "
                f"{median:.3f} s/step (min {min(times):.3f}, max {max(times):.3f}), "
                f"{median / args.batch_size * 1000:.1f} ms/image"
            )


if __name__ == "__main__":
    main()
