"""Training throughput (samples/s over all ranks) of `torchrun --nproc_per_node=N -m romp_hydra.train`, for each N.

    python benchmarks/ddp_scaling.py                         # CPU/Gloo, 1 and 2 ranks, quickstart model
    python benchmarks/ddp_scaling.py --ranks 1 2 4 8         # on a GPU machine: NCCL, one GPU per rank
    python benchmarks/ddp_scaling.py --device cpu --steps 30 --batch-size 8 -- model.head_channels=32

Each N runs the real entry point (DDP, the mixture sampler's shards, the loader workers) for `--steps` optimiser
steps with validation, pictures and tracking off, and reads the loop's own samples/s of its last log window
(steps 2..steps: step 1, with its warm-up, is a window of its own). The per-rank batch is fixed, so N ranks
train a global batch N times larger; perfect scaling is N times the 1-rank figure. On CPU every rank gets
`--threads-per-rank` threads (default 1), so N ranks use N cores against the 1 core of the 1-rank run.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPS = re.compile(r"step (\d+) \|.*\| ([0-9.]+) samples/s")


def run(ranks: int, args: argparse.Namespace, work: Path) -> tuple[float, float]:
    run_dir = work / f"ranks{ranks}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "romp_hydra.train", f"experiment={args.experiment}", f"trainer.device={args.device}",
               f"trainer.max_steps={args.steps}", f"trainer.log_every_steps={args.steps}",
               "val=none", "trainer.val_at_start=false", "trainer.vis_every_steps=1000000",
               "trainer.ckpt_every_steps=1000000", f"data.batch_size={args.batch_size}",
               f"data.num_workers={args.num_workers}", "logger=none", f"hydra.run.dir={run_dir}",
               f"paths.log_dir={work}", *args.overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads_per_rank))
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{ranks} rank(s) failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    log_text = "\n".join(p.read_text() for p in run_dir.glob("*.log"))
    windows = [(int(step), float(sps)) for step, sps in SPS.findall(log_text)]
    if not windows or windows[-1][0] != args.steps:
        sys.exit(f"{ranks} rank(s): no log window ending at step {args.steps} in {run_dir}")
    return windows[-1][1], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (NCCL on cuda, Gloo on cpu)")
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="per rank")
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader workers per rank")
    parser.add_argument("--threads-per-rank", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides, after --")
    args = parser.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {args.device} ({'NCCL' if args.device == 'cuda' else 'Gloo'}), experiment={args.experiment}, "
          f"batch {args.batch_size} per rank, {args.steps} steps, {args.num_workers} loader worker(s) and "
          f"{args.threads_per_rank} thread(s) per rank")
    with tempfile.TemporaryDirectory(prefix="ddp_scaling_") as tmp:
        results = {n: run(n, args, Path(tmp)) for n in args.ranks}
    base = results[args.ranks[0]][0] / args.ranks[0]
    print(f"{'ranks':>5} {'global batch':>12} {'samples/s':>10} {'per rank':>9} {'efficiency':>10} {'wall s':>7}")
    for n, (sps, wall) in results.items():
        print(f"{n:>5} {n * args.batch_size:>12} {sps:>10.2f} {sps / n:>9.2f} {sps / (n * base):>10.2f} {wall:>7.1f}")


if __name__ == "__main__":
    main()
