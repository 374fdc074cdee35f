"""Samples per second of one DataLoader worker for the full training pipeline, with the cost split by stage.

    python benchmarks/data_pipeline.py                               # 512 x 512, synthetic data, 64 samples
    python benchmarks/data_pipeline.py --samples 256 --input-size 512 --workers 4

One process does what one DataLoader worker does: for each (member, item, seed) that the mixture sampler
draws, read the record and decode the image, check the record and draw the augmentation, warp the image to
the network input, and build the targets. Stages:

  decode    source.get_image_info: annotation record + image file read and JPEG decode
  check     validate_img_info (the img_info contract) + drawing the augmentation parameters
  warp      the affine warp of the image to S x S (crop, rotation, flip, letterbox, resize in one map)
  targets   SamplePipeline.build_targets: keypoint / 3D / SMPL transforms, slots, CAR, centre heatmap
  pixels    SamplePipeline.augment_pixels (occlusion, colour jitter) + the HWC -> CHW copy + small entries

decode + warp is the floor (every pipeline reads and resamples the image once); the ratio printed is the whole
pipeline over that floor, both measured on the same draws in the same run. Two sources are timed side by side:
the synthetic images as generated (~280 px JPEGs) and the same scenes re-encoded as 640 x 480 JPEGs, the size
of the real datasets' images (COCO, MPII, 3DPW, ...). Each figure is the median over --repeats passes.
The headline samples/s is the untouched path, `MixtureDataset.__getitem__`, timed over the same draws.
With --workers N the script also times a real DataLoader (batch size 8) to show the scaling over workers.
The synthetic data (and its 640 x 480 copy) is generated into --cache-dir on the first run (not timed).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import romp_hydra.config  # noqa: F401  (registers the ${project_root:} resolver)
from romp_hydra.data.augment import build_affine, crop_offsets, draw_augment_params, warp_image
from romp_hydra.data.base import load_image
from romp_hydra.data.loader import CollateWithSkips, MixtureDataset, MixtureLoader, build_sources
from romp_hydra.data.pipeline import SamplePipeline, channels_first, crop_anchor_points, retain_freed_memory
from romp_hydra.data.sample import validate_img_info
from romp_hydra.data.sampler import MixtureSampler

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
STAGES = ("decode", "check", "warp", "targets", "pixels")
REAL_SIZE = (480, 640)  # (H, W) of the real datasets' typical image
clock = time.perf_counter  # --clock cpu: time.process_time (this process's CPU time, steadier on a shared machine)


class ResizedJpegSource:
    """A source's scenes re-encoded as W x H JPEGs (annotations scaled to match), read back from disk."""

    def __init__(self, source: Any, folder: Path, size: tuple[int, int] = REAL_SIZE, quality: int = 90):
        self.source, self.key = source, f"{source.key}_{size[1]}x{size[0]}"
        self.scale_range, self.is_3d = source.scale_range, source.is_3d
        self.folder, self.size = folder, size
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(len(source)):
            path = self._path(index)
            if not path.is_file():
                image = source.get_image_info(index)["image"]
                resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                cv2.imwrite(str(path), cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])

    def _path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.jpg"

    def __len__(self) -> int:
        return len(self.source)

    def get_image_info(self, index: int) -> dict[str, Any]:
        info = self.source.store.image_record(index)
        sy, sx = self.size[0] / info["img_size"][0], self.size[1] / info["img_size"][1]
        kp2ds = np.asarray(info["kp2ds"], dtype=np.float32)
        labelled = ~np.all(kp2ds == -2.0, axis=-1)
        kp2ds[labelled, :2] *= (sx, sy)
        if info.get("camMats") is not None:
            info["camMats"] = np.diag([sx, sy, 1.0]).astype(np.float32) @ info["camMats"]
        info.update(kp2ds=kp2ds, img_size=self.size, imgpath=str(self._path(index)), ds=self.key,
                    image=load_image(self._path(index)))
        return info


def compose_config(args: argparse.Namespace):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="bench_data"):
        return compose("check", overrides=[
            f"dataset={args.dataset}", "body_model=standin", f"paths.cache_dir={args.cache_dir}",
            f"data.input_size={args.input_size}", f"data.centermap_size={args.input_size // 8}",
            *[f"dataset.members.{key}.num_samples={args.samples}" for key in ("synth_solo", "synth_crowd")],
        ])


def time_stages(sources: list, draws: list, pipeline: SamplePipeline) -> dict[str, float]:
    """Mean seconds per sample of each stage, calling the pipeline's parts one after the other."""
    size = pipeline.settings.input_size
    times: dict[str, list[float]] = defaultdict(list)
    for member, item, seed in draws:
        source = sources[member]
        rng = np.random.default_rng([seed, 0])
        start = clock()
        info = source.get_image_info(item)
        decoded = clock()
        checked = validate_img_info(info, source.key, item)
        augment = draw_augment_params(rng, pipeline.settings.augment, checked.height, checked.width,
                                      crop_anchor_points(checked), source.scale_range, source.is_3d)
        checked_at = clock()
        affine = build_affine(augment.crop_center, augment.crop_side, augment.rotation_deg, augment.flip, size)
        image = warp_image(checked.image, affine, size, augment.visible)
        warped = clock()
        targets = pipeline.build_targets(checked, affine, augment.rotation_deg, augment.flip)
        built = clock()
        channels_first(pipeline.augment_pixels(image, targets, augment))
        crop_offsets(augment.crop_center, augment.crop_side, checked.height, checked.width)
        done = clock()
        for stage, seconds in zip(STAGES, (decoded - start, checked_at - decoded, warped - checked_at,
                                           built - warped, done - built)):
            times[stage].append(seconds)
    return {stage: statistics.fmean(values) for stage, values in times.items()}


def time_dataset(dataset: MixtureDataset, draws: list) -> float:
    """Mean seconds per sample of MixtureDataset.__getitem__ (what one worker runs), in this process."""
    start = clock()
    for draw in draws:
        dataset[draw]
    return (clock() - start) / len(draws)


def time_loader(dataset: MixtureDataset, sampler: MixtureSampler, workers: int, batch_size: int = 8) -> float:
    """Samples per second of a DataLoader with `workers` processes (after its first batch, i.e. warm)."""
    loader = MixtureLoader(dataset, sampler, batch_size, max_bad_fraction=1.0, num_workers=workers,
                           collate_fn=CollateWithSkips(), persistent_workers=False)
    iterator = iter(loader)
    next(iterator)
    start, count = clock(), 0
    for batch in iterator:
        count += len(batch["imgpath"])
    return count / (clock() - start) if count else float("nan")


def report(name: str, stages: dict[str, float], per_sample: float) -> None:
    total = sum(stages.values())
    floor = stages["decode"] + stages["warp"]
    print(f"{name}")
    print(f"  {'stage':<8} {'ms/sample':>10} {'share':>7}")
    for stage in STAGES:
        print(f"  {stage:<8} {stages[stage] * 1e3:10.2f} {stages[stage] / total:7.1%}")
    print(f"  {'sum':<8} {total * 1e3:10.2f}")
    print(f"  floor (decode + warp) {floor * 1e3:.2f} ms; stage sum / floor = {total / floor:.2f}x; "
          f"MixtureDataset.__getitem__ {per_sample * 1e3:.2f} ms/sample = {per_sample / floor:.2f}x the floor")
    print(f"  samples/s per worker (MixtureDataset.__getitem__): {1.0 / per_sample:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="a dataset= option (default: synthetic)")
    parser.add_argument("--samples", type=int, default=64, help="images per synthetic source, and draws timed")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the draws; medians are printed")
    parser.add_argument("--workers", type=int, default=0, help="also time a DataLoader with this many workers")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "romp_hydra_bench_cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: count this process's CPU time only (for a machine shared with other jobs)")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # as in a DataLoader worker (romp_hydra.data.loader)
    retain_freed_memory()  # as in a DataLoader worker (romp_hydra.data.loader.seed_worker)
    cfg = compose_config(args)
    sources = build_sources(cfg.dataset)  # generates the synthetic data on the first run
    keys = list(sources)
    variants = {"as generated": list(sources.values())}
    if all(hasattr(source, "store") for source in sources.values()):
        jpeg_root = Path(args.cache_dir) / "jpeg_640x480"
        variants["640x480 JPEG"] = [ResizedJpegSource(s, jpeg_root / s.folder.name) for s in sources.values()]

    pipeline = SamplePipeline(cfg.data, train=True)
    draws = list(MixtureSampler([len(s) for s in sources.values()], None, args.samples, seed=args.seed, names=keys))
    datasets = {name: MixtureDataset(members, pipeline) for name, members in variants.items()}
    stage_runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    item_runs: dict[str, list[float]] = defaultdict(list)
    for name, dataset in datasets.items():  # warm-up: page cache, lazy imports
        time_dataset(dataset, draws[:4])
    for _ in range(args.repeats):  # variants interleaved, so a busy moment hits both
        for name, members in variants.items():
            stage_runs[name].append(time_stages(members, draws, pipeline))
            item_runs[name].append(time_dataset(datasets[name], draws))

    print(f"data pipeline, {args.input_size}x{args.input_size} input, dataset={args.dataset} ({', '.join(keys)}), "
          f"{len(draws)} draws x {args.repeats} passes (medians), 1 process, 1 OpenCV thread, {args.clock} clock")
    for name in variants:
        stages = {stage: statistics.median(run[stage] for run in stage_runs[name]) for stage in STAGES}
        report(f"source images {name}:", stages, statistics.median(item_runs[name]))
    if args.workers > 0:
        sampler = MixtureSampler([len(s) for s in sources.values()], None, args.samples, seed=args.seed, names=keys)
        rate = time_loader(datasets["as generated"], sampler, args.workers)
        print(f"samples/s with a DataLoader of {args.workers} workers: {rate:.1f} "
              f"({rate / args.workers:.1f} per worker)")


if __name__ == "__main__":
    main()
