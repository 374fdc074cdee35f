"""See what the training pipeline makes of a dataset: one picture per sample, and a summary.

    python -m romp_hydra.data.check dataset=<mixture or single dataset> num=8 out=<dir> augment=true|false

The samples come from the real training path (sources instantiated from the config, mixture sampler, sample
pipeline, collate), so what you see is what the network is trained on. Each picture shows three panels:

1. the augmented input with every person's 2D skeleton (left / right / centre in different colours, so a flip
   that forgot to swap sides is visible) and its centre marked with the slot number and track id;
2. the centre heatmap over the input;
3. the 3D joints projected back: root-centred 3D joints mapped to the image with the weak-perspective camera
   (scale, tx, ty) that best fits them to the 2D joints (least squares). A skeleton that does not sit on the
   person means the 3D and 2D annotations disagree (wrong joint order, units, flip or rotation).

The summary lists samples, persons, per dataset the fraction of persons having each annotation (the
valid_masks columns), and every file that could not be read. The exit status is non-zero if anything failed.
ROMP's equivalent is `python -m romp.lib.dataset.<name>` (romp_datasets.md §10), which needs a GPU renderer.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from romp_hydra import batch as masks
from romp_hydra.config import ConfigError, exit_with_config_error, validate_config
from romp_hydra.data.base import DatasetNotFoundError
from romp_hydra.data.loader import (
    BadDataError,
    CollateWithSkips,
    MixtureDataset,
    MixtureLoader,
    SkippedSample,
    build_sources,
    mixture_weights,
)
from romp_hydra.data.pipeline import SamplePipeline
from romp_hydra.data.sampler import MixtureSampler
from romp_hydra.data.store import StoreFormatError
from romp_hydra.viz.draw import (
    PROJECTED_COLORS,
    concat_panels,
    draw_centers,
    draw_skeleton,
    heatmap_overlay,
    label_panel,
    normalized_to_pixels,
    to_bgr,
)


@dataclass
class CheckReport:
    """What the check saw."""

    samples: int = 0
    persons: int = 0
    pictures: list[Path] = field(default_factory=list)
    # dataset -> number of samples, number of persons, per valid_masks column the number of persons having it
    samples_per_dataset: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    persons_per_dataset: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    masks_per_dataset: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[SkippedSample] = field(default_factory=list)
    # dataset -> annotated images its source left out when packing ({path, reason}): never drawn, so never skipped
    left_out: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @property
    def all_read(self) -> bool:
        return not self.skipped and not any(self.left_out.values())

    def format(self) -> str:
        folder = self.pictures[0].parent if self.pictures else "(none)"
        lines = [f"checked {self.samples} samples, {self.persons} persons; pictures in {folder}"]
        names = masks.VALID_MASK_NAMES
        header = ["dataset", "samples", "persons", *names]
        rows = []
        for dataset in sorted(self.samples_per_dataset):
            persons = self.persons_per_dataset[dataset]
            counts = self.masks_per_dataset.get(dataset, np.zeros(len(names)))
            fractions = [f"{c / persons:.2f}" if persons else "-" for c in counts]
            rows.append([dataset, str(self.samples_per_dataset[dataset]), str(persons), *fractions])
        widths = [max(len(header[c]), *(len(r[c]) for r in rows)) if rows else len(header[c])
                  for c in range(len(header))]
        lines.append("fraction of persons with each annotation:")
        for row in (header, *rows):
            lines.append("  " + "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                                          for c, (cell, w) in enumerate(zip(row, widths))))
        if self.skipped:
            first_by_path = {s.path: s for s in reversed(self.skipped)}
            lines.append(f"{len(first_by_path)} file(s) could not be used ({len(self.skipped)} draws replaced):")
            lines.extend(f"  {s.dataset}[{s.index}] {s.path}: {s.reason}" for s in first_by_path.values())
        for dataset, entries in self.left_out.items():
            if entries:
                lines.append(f"{len(entries)} annotated image(s) of {dataset} were left out when packing:")
                lines.extend(f"  {entry['path']}: {entry['reason']}" for entry in entries[:20])
                if len(entries) > 20:
                    lines.append(f"  ... and {len(entries) - 20} more")
        if self.all_read:
            lines.append("every file could be read")
        return "\n".join(lines)


def fit_weak_perspective(points3d: np.ndarray, points2d: np.ndarray) -> tuple[float, np.ndarray] | None:
    """Least-squares scale s and shift t with s * points3d[:, :2] + t ~= points2d (both (K, .), K >= 2).

    Closed form: s = sum((X - mean X) . (x - mean x)) / sum(|X - mean X|^2), t = mean x - s * mean X.
    Returns None when the 3D points have no spread (a scale is then undefined).
    """
    source = np.asarray(points3d, dtype=np.float64)[:, :2]
    target = np.asarray(points2d, dtype=np.float64)
    if len(source) < 2:
        return None
    source_centred = source - source.mean(axis=0)
    spread = float((source_centred**2).sum())
    if spread < 1e-12:
        return None
    scale = float((source_centred * (target - target.mean(axis=0))).sum()) / spread
    return scale, target.mean(axis=0) - scale * source.mean(axis=0)


def draw_sample(batch: dict[str, Any], index: int) -> np.ndarray:
    """The three-panel picture of sample `index` of a collated batch (RGB)."""
    image = batch["image"][index].permute(1, 2, 0).numpy().copy()
    size = image.shape[0]
    person_mask = batch["person_mask"][index].numpy()
    valid = batch["valid_masks"][index].numpy()
    kp2d_px, kp2d_present = normalized_to_pixels(batch["kp2d"][index].numpy(), size)
    kp3d = batch["kp3d"][index].numpy()
    centers_px, _ = normalized_to_pixels(batch["centers"][index].numpy(), size)
    track_ids = batch["track_ids"][index].numpy()

    skeletons, projected = image.copy(), image.copy()
    slots = np.flatnonzero(person_mask)
    fitted = 0
    for slot in slots:
        if valid[slot, masks.KP2D]:
            skeletons = draw_skeleton(skeletons, kp2d_px[slot], kp2d_present[slot])
        if valid[slot, masks.KP3D]:
            present3d = np.all(kp3d[slot] > -1.99, axis=-1)
            common = present3d & kp2d_present[slot]
            camera = fit_weak_perspective(kp3d[slot][common], kp2d_px[slot][common]) if common.sum() >= 2 else None
            if camera is not None:
                scale, shift = camera
                projected = draw_skeleton(projected, kp3d[slot][:, :2] * scale + shift, present3d,
                                          colors=PROJECTED_COLORS)
                fitted += 1
    labels = [f"{slot}" + (f" id:{track_ids[slot]}" if valid[slot, masks.TRACK_ID] else "") for slot in slots]
    skeletons = draw_centers(skeletons, centers_px[slots], labels)
    heat = heatmap_overlay(image, batch["centermap"][index, 0].numpy())
    caption = f"{batch['dataset'][index]} #{int(batch['index'][index])}"
    return concat_panels([
        label_panel(skeletons, f"{caption}: 2D, centres ({len(slots)} persons)"),
        label_panel(heat, "centre map"),
        label_panel(projected, f"3D joints, fitted camera ({fitted})"),
    ])


def run_check(cfg: DictConfig) -> CheckReport:
    """Draw `cfg.num` samples of `cfg.dataset` through the training pipeline into `cfg.out`."""
    num = int(cfg.num)
    if num < 1:
        raise ConfigError("num", num, "nothing to check", "pass num=8 (or any positive number)")
    out = Path(str(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    data_cfg = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    with open_dict(data_cfg):
        data_cfg.augment.enabled = bool(cfg.augment)
    batch_size = min(num, int(data_cfg.batch_size))

    sources = build_sources(cfg.dataset)
    keys = list(sources)
    sampler = MixtureSampler([len(s) for s in sources.values()], mixture_weights(cfg, keys),
                             epoch_samples=-(-num // batch_size) * batch_size, seed=int(cfg.seed), names=keys)
    for source in sources.values():
        describe = getattr(source, "describe", None)
        print(describe() if callable(describe) else f"{source.key}: {type(source).__name__}")
    dataset = MixtureDataset(list(sources.values()), SamplePipeline(data_cfg, train=True))
    # In-process loading: a failure shows its own traceback, and eight samples need no workers.
    loader = MixtureLoader(dataset, sampler, batch_size, max_bad_fraction=1.0, num_workers=0,
                           collate_fn=CollateWithSkips())

    report = CheckReport()
    for key, source in sources.items():
        report.left_out[key] = list(getattr(getattr(source, "store", None), "left_out", []))
    for batch in loader:
        report.skipped.extend(batch["skipped"])
        for index in range(len(batch["dataset"])):
            if report.samples == num:
                break
            _record(report, batch, index)
            name = Path(batch["imgpath"][index]).stem
            path = out / f"{report.samples:03d}_{batch['dataset'][index]}_{name}.jpg"
            if not cv2.imwrite(str(path), to_bgr(draw_sample(batch, index))):
                raise OSError(f"could not write {path}; is the folder writable?")
            report.pictures.append(path)
            report.samples += 1
    return report


def _record(report: CheckReport, batch: dict[str, Any], index: int) -> None:
    dataset = batch["dataset"][index]
    person_mask = batch["person_mask"][index].numpy()
    valid = batch["valid_masks"][index].numpy()[person_mask]
    report.samples_per_dataset[dataset] += 1
    report.persons_per_dataset[dataset] += int(person_mask.sum())
    report.persons += int(person_mask.sum())
    counts = report.masks_per_dataset.setdefault(dataset, np.zeros(masks.NUM_VALID_MASKS, dtype=np.int64))
    counts += valid.sum(axis=0)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="check")
def main(cfg: DictConfig) -> None:
    try:
        validate_config(cfg)
    except ConfigError as err:
        exit_with_config_error(err)
    torch.set_num_threads(1)
    try:
        report = run_check(cfg)
    except ConfigError as err:
        exit_with_config_error(err)
    except (DatasetNotFoundError, StoreFormatError, BadDataError) as err:
        print(f"check failed: {err}", file=sys.stderr)
        sys.exit(1)
    print(report.format())
    if not report.all_read:
        print("check failed: some files could not be read (listed above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
