"""What makes a quickstart train step fast on CPU, measured side by side in one run (interleaved rounds).

    python benchmarks/quickstart_step.py                  # the quickstart's model, batches and people
    python benchmarks/quickstart_step.py --rounds 7 --steps 10

Compared, each as the median over rounds of the milliseconds per step:

* the body model on a batch's people: the whole mesh, or only the vertices the joints are regressed from
  (``vertices=False``, what a training step without a picture runs); forward + backward;
* the network: contiguous (NCHW) or channels_last activations; forward + backward;
* the whole step (network, people, loss, backward, Adam) on the same loaded batches: as before (NCHW, meshes)
  and as the loop runs it now (channels_last, joints only).

The loader side (``data.num_workers=0`` against 1 on 2 cores) needs the real loop; its command is in
docs/synthetic_benchmark.md section 6.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import romp_hydra.config.schema  # noqa: F401  (registers the structured configs)
from romp_hydra.batch import TARGET_KEYS
from romp_hydra.data.loader import build_train_loader
from romp_hydra.losses.criterion import gather_matched_targets
from romp_hydra.models.model import build_model, forward_step, heads_in_graph

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def milliseconds(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant and round")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides on top of experiment=quickstart")
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["experiment=quickstart", "logger=none", *args.overrides])
    torch.manual_seed(0)
    device = torch.device("cpu")
    net, predictor, picker = build_model(cfg, device)
    criterion = instantiate(cfg.loss, _convert_="all")
    optimizer = instantiate(cfg.optim.optimizer)(params=list(net.parameters()))
    iterator = iter(build_train_loader(cfg))
    batches = [next(iterator) for _ in range(args.steps)]
    people = int(sum(batch["person_mask"].sum() for batch in batches)) // len(batches)
    print(f"quickstart batches: {cfg.data.batch_size} images of {cfg.data.input_size} px, {people} people per batch, "
          f"{torch.get_num_threads()} torch threads")

    poses = [(torch.randn(people, 3) * 0.5).requires_grad_(), (torch.randn(people, 63) * 0.3).requires_grad_(),
             torch.randn(people, 10).requires_grad_()]
    images = torch.rand(int(cfg.data.batch_size), 3, int(cfg.data.input_size), int(cfg.data.input_size)) * 255

    def body(vertices: bool):
        def run():
            out = predictor.body_model(*poses, vertices=vertices)
            (out.joints54.sum() + out.joints_h36m17.sum()).backward()
        return run

    def network(channels_last: bool):
        def run():
            net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
            maps = net(x)
            (maps["center_map"].sum() + maps["params_maps"].sum()).backward()
        return run

    def train_step(channels_last: bool, vertices: bool):
        position = [0]

        def run():
            batch = batches[position[0] % len(batches)]
            position[0] += 1
            net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            targets = {key: batch[key] for key in TARGET_KEYS}
            output = forward_step(net, predictor, batch["image"], device, picker, centers=targets["centers"],
                                  person_mask=targets["person_mask"], channels_last=channels_last, vertices=vertices)
            matched = gather_matched_targets(targets, output["batch_idx"], output["person_idx"])
            total, _ = criterion(output, matched, output["center_map"], targets["centermap"],
                                 targets["all_persons_labelled"].bool())
            (total + heads_in_graph(output)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return run

    variants = {
        "body model, whole mesh": body(True),
        "body model, joints only": body(False),
        "network, NCHW": network(False),
        "network, channels_last": network(True),
        "train step, NCHW + meshes (before)": train_step(False, True),
        "train step, channels_last + joints only (now)": train_step(True, False),
    }
    for run in variants.values():  # warm-up: oneDNN primitives, allocator
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            times[name].append(milliseconds(run, args.steps))
    median = {name: statistics.median(values) for name, values in times.items()}
    names = list(variants)
    for before, after in zip(names[::2], names[1::2]):
        print(f"{before:48s} {median[before]:7.1f} ms")
        print(f"{after:48s} {median[after]:7.1f} ms   {median[before] / median[after]:.2f}x faster")


if __name__ == "__main__":
    main()
