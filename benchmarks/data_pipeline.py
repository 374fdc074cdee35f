"""Samples per second of one DataLoader worker for the full training pipeline, with the cost split by stage.

    python benchmarks/data_pipeline.py                               # 512 x 512, synthetic data, 64 samples
    python benchmarks/data_pipeline.py --samples 256 --input-size 512 --workers 4

One process does what one DataLoader worker does: for each (member, item, seed) that the mixture sampler
draws, read the record and decode the image, check the record and draw the augmentation, warp the image to
the network input, and build the targets. Stages:

  decode    source.get_image_info: annotation record + image file read and JPEG/PNG decode
  check     validate_img_info (the img_info contract) + drawing the augmentation parameters
  warp      the affine warp of the image to S x S (crop, rotation, flip, letterbox, resize in one map)
  targets   the rest of SamplePipeline.build_sample: keypoint / 3D / SMPL transforms, slots, centre
            heatmap, colour jitter and occlusion (= build_sample time minus a separately timed warp)

The headline number is the untouched path, `MixtureDataset.__getitem__`, timed over the same draws.
With --workers N the script also times a real DataLoader (batch size 8) to show the scaling over workers.
The synthetic data is generated into --cache-dir on the first run (not timed).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import romp_hydra.config  # noqa: F401  (registers the ${project_root:} resolver)
from romp_hydra.data.augment import build_affine, draw_augment_params, warp_image
from romp_hydra.data.loader import CollateWithSkips, MixtureDataset, MixtureLoader, build_sources
from romp_hydra.data.pipeline import SamplePipeline, crop_anchor_points
from romp_hydra.data.sample import validate_img_info
from romp_hydra.data.sampler import MixtureSampler

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
STAGES = ("decode", "check", "warp", "targets")


def compose_config(args: argparse.Namespace):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="bench_data"):
        return compose("check", overrides=[
            f"dataset={args.dataset}", "body_model=standin", f"paths.cache_dir={args.cache_dir}",
            f"data.input_size={args.input_size}", f"data.centermap_size={args.input_size // 8}",
            *[f"dataset.members.{key}.num_samples={args.samples}" for key in ("synth_solo", "synth_crowd")],
        ])


def time_stages(sources: dict, sampler: MixtureSampler, pipeline: SamplePipeline) -> dict[str, list[float]]:
    """Per-sample seconds of each stage, by calling the pipeline's parts one after the other."""
    members = list(sources.values())
    size = pipeline.settings.input_size
    times: dict[str, list[float]] = defaultdict(list)
    for member, item, seed in sampler:
        source = members[member]
        rng = np.random.default_rng([seed, 0])
        start = time.perf_counter()
        info = source.get_image_info(item)
        decoded = time.perf_counter()
        checked = validate_img_info(info, source.key, item)
        augment = draw_augment_params(rng, pipeline.settings.augment, checked.height, checked.width,
                                      crop_anchor_points(checked), source.scale_range, source.is_3d)
        checked_at = time.perf_counter()
        affine = build_affine(augment.crop_center, augment.crop_side, augment.rotation_deg, augment.flip, size)
        warp_image(checked.image, affine, size)
        warped = time.perf_counter()
        pipeline.build_sample(checked, augment, index=item)  # warps again, inside
        built = time.perf_counter()
        warp = warped - checked_at
        times["decode"].append(decoded - start)
        times["check"].append(checked_at - decoded)
        times["warp"].append(warp)
        times["targets"].append(max(built - warped - warp, 0.0))
    return times


def time_dataset(dataset: MixtureDataset, sampler: MixtureSampler) -> float:
    """Samples per second of MixtureDataset.__getitem__ (what one worker runs), in this process."""
    draws = list(sampler)
    start = time.perf_counter()
    for draw in draws:
        dataset[draw]
    return len(draws) / (time.perf_counter() - start)


def time_loader(dataset: MixtureDataset, sampler: MixtureSampler, workers: int, batch_size: int = 8) -> float:
    """Samples per second of a DataLoader with `workers` processes (after its first batch, i.e. warm)."""
    loader = MixtureLoader(dataset, sampler, batch_size, max_bad_fraction=1.0, num_workers=workers,
                           collate_fn=CollateWithSkips(), persistent_workers=False)
    iterator = iter(loader)
    next(iterator)
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch["imgpath"])
    return count / (time.perf_counter() - start) if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="a dataset= option (default: synthetic)")
    parser.add_argument("--samples", type=int, default=64, help="images per synthetic source, and draws timed")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=0, help="also time a DataLoader with this many workers")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "romp_hydra_bench_cache"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # as in a DataLoader worker (romp_hydra.data.loader.seed_worker)
    cfg = compose_config(args)
    sources = build_sources(cfg.dataset)  # generates the synthetic data on the first run
    keys = list(sources)

    def sampler() -> MixtureSampler:
        return MixtureSampler([len(s) for s in sources.values()], None, args.samples, seed=args.seed, names=keys)

    pipeline = SamplePipeline(cfg.data, train=True)
    dataset = MixtureDataset(list(sources.values()), pipeline)
    time_dataset(dataset, MixtureSampler([len(s) for s in sources.values()], None, 4, names=keys))  # warm-up
    stage_times = time_stages(sources, sampler(), pipeline)
    per_worker = time_dataset(dataset, sampler())

    total = sum(statistics.fmean(stage_times[stage]) for stage in STAGES)
    print(f"data pipeline, {args.input_size}x{args.input_size}, dataset={args.dataset} ({', '.join(keys)}), "
          f"{args.samples} samples, 1 process, 1 OpenCV thread")
    print(f"  {'stage':<8} {'ms/sample':>10} {'share':>7}")
    for stage in STAGES:
        mean = statistics.fmean(stage_times[stage])
        print(f"  {stage:<8} {mean * 1e3:10.2f} {mean / total:7.1%}")
    print(f"  {'sum':<8} {total * 1e3:10.2f}")
    print(f"samples/s per worker (MixtureDataset.__getitem__): {per_worker:.1f}")
    if args.workers > 0:
        rate = time_loader(dataset, sampler(), args.workers)
        print(f"samples/s with a DataLoader of {args.workers} workers: {rate:.1f} "
              f"({rate / args.workers:.1f} per worker)")


if __name__ == "__main__":
    main()
