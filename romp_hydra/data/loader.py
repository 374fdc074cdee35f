"""Build the training and evaluation DataLoaders from the config, and survive the odd broken file.

    loader = build_train_loader(cfg, rank, world_size)     # a MixtureLoader (a DataLoader)
    for epoch in range(start_epoch, cfg.trainer.epochs):
        loader.set_epoch(epoch)
        for batch in loader:                                 # batch["skipped"]: what was replaced, see below
            ...
            checkpoint["data"] = loader.state_dict()         # the exact position, for an exact resume

Pieces: each member of `cfg.dataset.members` is instantiated with Hydra (`_target_`, plus `key=<member key>`);
`MixtureDataset` turns a `(member_idx, item_idx, sample_seed)` from the `MixtureSampler` into a training sample
with the shared `SamplePipeline`; the DataLoader's workers run that and `collate_samples` pads the batch.

Broken files. An unreadable image or a record that breaks the img_info contract (`UnreadableImageError`,
`ImgInfoError`, an OpenCV error) must not kill a week-long run, and must not pass silently either. The dataset
replaces such an item by another item of the same member, drawn deterministically from the sample seed, and
reports what it skipped inside the sample (`sample["skipped"]`, a list of `SkippedSample`). That report travels
back from the worker process with the batch: the collate wrapper gathers it into `batch["skipped"]`, and
`MixtureLoader` counts it in the main process (workers cannot share a counter), logs each bad path once, and
stops the run with a summary of the bad files once more than `data.max_bad_fraction` of the samples it has
attempted were bad (judged after `MIN_SAMPLES_FOR_BAD_FRACTION` attempts, so one bad file early on does not
stop a run). Evaluation never replaces anything: a metric over a silently altered test set would be wrong, so
an unreadable test image is an error.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import os
import random
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing import popen_fork, popen_forkserver, popen_spawn_posix
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from romp_hydra.config.errors import ConfigError
from romp_hydra.data.base import DatasetNotFoundError, SourceDataset, UnreadableImageError
from romp_hydra.data.collate import collate_samples
from romp_hydra.data.pipeline import SamplePipeline, retain_freed_memory
from romp_hydra.data.registry import how_to_register, registered_sources
from romp_hydra.data.sample import ImgInfoError, validate_img_info
from romp_hydra.data.sampler import MixtureSampler, SequentialSourceSampler, source_clusters
from romp_hydra.data.store import StoreFormatError

log = logging.getLogger(__name__)

# What counts as a bad sample (skipped and counted) rather than a bug (raised).
BAD_SAMPLE_ERRORS: tuple[type[BaseException], ...] = (UnreadableImageError, ImgInfoError, cv2.error)
# Replacement draws for one position before the member is declared broken.
MAX_ATTEMPTS_PER_SAMPLE = 8
# The bad fraction is judged only after this many attempted samples.
MIN_SAMPLES_FOR_BAD_FRACTION = 200


class SkippedSample(NamedTuple):
    """One item that could not be used: which dataset and index, which file, and why."""

    dataset: str
    index: int
    path: str
    reason: str


class BadDataError(RuntimeError):
    """Too much of the data is unreadable or malformed. The message lists the bad files."""


class MixtureDataset(Dataset):
    """Map-style dataset over several sources, indexed by `(member_idx, item_idx, sample_seed)`.

    Args:
        sources: the member datasets (SourceDataset or anything with `key`, `__len__`, `get_image_info`).
        pipeline: `pipeline(img_info, rng, scale_range, is_3d, index=item) -> sample dict` (a SamplePipeline).
        replace_bad: replace unreadable / malformed items by another item of the same member (training);
            False raises instead (evaluation).
    """

    def __init__(self, sources: Sequence[Any], pipeline: Callable[..., dict[str, Any]], *, replace_bad: bool = True):
        self.sources = list(sources)
        self.pipeline = pipeline
        self.replace_bad = replace_bad

    def __len__(self) -> int:
        return sum(len(source) for source in self.sources)

    def __getitem__(self, index: tuple[int, int, int]) -> dict[str, Any]:
        member, item, seed = index
        source = self.sources[member]
        skipped: list[SkippedSample] = []
        for attempt in range(MAX_ATTEMPTS_PER_SAMPLE):
            # A fresh generator per attempt, so a replacement's augmentation does not depend on how far the
            # failed attempt got.
            result = self._try_load(source, item, np.random.default_rng([seed, attempt]))
            if not isinstance(result, SkippedSample):
                result["skipped"] = skipped
                return result
            skipped.append(result)
            item = int(np.random.default_rng([seed, attempt, 1]).integers(len(source)))
        listing = "\n".join(f"  {s.path}: {s.reason}" for s in skipped)
        raise BadDataError(
            f"{MAX_ATTEMPTS_PER_SAMPLE} items of dataset '{source.key}' in a row could not be used:\n{listing}\n"
            f"  fix: look at the dataset with `python -m romp_hydra.data.check dataset={source.key}`"
        )

    def _try_load(self, source: Any, item: int, rng: np.random.Generator) -> dict[str, Any] | SkippedSample:
        """The sample, or (training) what went wrong with it."""
        path = "?"
        try:
            info = source.get_image_info(item)
            if isinstance(info, Mapping):
                path = str(info.get("imgpath", "?"))
            checked = validate_img_info(info, source.key, item)
            return self.pipeline(checked, rng, getattr(source, "scale_range", SourceDataset.scale_range),
                                 getattr(source, "is_3d", SourceDataset.is_3d), index=item)
        except BAD_SAMPLE_ERRORS as err:
            if isinstance(err, UnreadableImageError):
                path = err.path
            reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
            if not self.replace_bad:
                raise BadDataError(f"dataset '{source.key}' item {item} ({path}): {reason}") from err
            return SkippedSample(source.key, int(item), path, reason)


class CollateWithSkips:
    """Collate samples with `collate_fn` and gather their skip reports into `batch["skipped"]` (a flat list)."""

    def __init__(self, collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate_samples):
        self.collate_fn = collate_fn

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        skipped = [entry for sample in samples for entry in sample.pop("skipped", [])]
        batch = self.collate_fn(samples)
        batch["skipped"] = skipped
        return batch


class BadSampleTracker:
    """Counts attempted and skipped samples in the main process and stops the run when too many are bad."""

    def __init__(self, max_bad_fraction: float, min_samples: int = MIN_SAMPLES_FOR_BAD_FRACTION):
        self.max_bad_fraction = float(max_bad_fraction)
        self.min_samples = int(min_samples)
        self.attempted = 0
        self.bad = 0
        self.bad_files: dict[str, SkippedSample] = {}

    def update(self, num_used: int, skipped: Sequence[SkippedSample]) -> None:
        """Record a batch: `num_used` samples delivered, `skipped` items replaced on the way."""
        self.attempted += num_used + len(skipped)
        self.bad += len(skipped)
        for entry in skipped:
            if entry.path not in self.bad_files:
                self.bad_files[entry.path] = entry
                log.warning("skipped %s[%d] %s: %s", entry.dataset, entry.index, entry.path, entry.reason)
        if self.attempted >= self.min_samples and self.bad > self.max_bad_fraction * self.attempted:
            raise BadDataError(self.summary())

    @property
    def fraction(self) -> float:
        return self.bad / self.attempted if self.attempted else 0.0

    def summary(self, max_listed: int = 20) -> str:
        lines = [(
            f"{self.bad} of {self.attempted} samples ({self.fraction:.2%}) could not be used, more than "
            f"data.max_bad_fraction={self.max_bad_fraction:g}. {len(self.bad_files)} distinct bad file(s):"
        )]
        for entry in list(self.bad_files.values())[:max_listed]:
            lines.append(f"  {entry.dataset}[{entry.index}] {entry.path}: {entry.reason}")
        if len(self.bad_files) > max_listed:
            lines.append(f"  ... and {len(self.bad_files) - max_listed} more")
        lines.append("  fix: repair or remove these files (python -m romp_hydra.data.check shows a dataset), "
                     "or raise data.max_bad_fraction if this much loss is acceptable")
        return "\n".join(lines)


class MixtureLoader(DataLoader):
    """The training DataLoader: batches from a `MixtureSampler`, plus the bookkeeping a run needs.

    * counts the samples it hands out (`sampler.advance`), so `state_dict()` is the exact position and a
      resumed run continues the same sequence;
    * starts the next epoch by itself when one is exhausted (an explicit `set_epoch(e)` works as well);
    * tracks skipped samples across worker processes and raises `BadDataError` past `max_bad_fraction`.
    """

    def __init__(self, dataset: MixtureDataset, sampler: MixtureSampler, batch_size: int, *,
                 max_bad_fraction: float, min_samples_for_bad_fraction: int = MIN_SAMPLES_FOR_BAD_FRACTION,
                 **loader_options: Any):
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **loader_options)
        self.bad_samples = BadSampleTracker(max_bad_fraction, min_samples_for_bad_fraction)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        sampler: MixtureSampler = self.sampler  # type: ignore[assignment]
        epoch = sampler.epoch
        for batch in super().__iter__():
            sampler.advance(self.batch_size)
            self.bad_samples.update(self.batch_size, batch.get("skipped", []))
            yield batch
        if sampler.epoch == epoch:
            sampler.set_epoch(epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def data_metrics(self) -> dict[str, float]:
        """What the run logs about its data at each logging step: samples replaced so far and their share."""
        return {"data/skipped_samples": float(self.bad_samples.bad),
                "data/skipped_fraction": self.bad_samples.fraction,
                "data/bad_files": float(len(self.bad_samples.bad_files))}

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}  # type: ignore[attr-defined]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(dict(state["sampler"]))  # type: ignore[attr-defined]


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed the global RNGs from the worker's torch seed.

    Samples draw their randomness from their own sample seed, so this only guards code that reaches for a global
    RNG. (OpenCV's thread count is set in the parent before the fork, see `_worker_options`.)
    """
    seed = torch.initial_seed() % 2**32  # torch gives every worker base_seed + worker_id
    np.random.seed(seed)
    random.seed(seed)
    retain_freed_memory()  # per-sample buffers are reused instead of page-faulted in again


def instantiate_source(key: str, source_cfg: Mapping[str, Any] | DictConfig) -> Any:
    """Build one member dataset from its config (`_target_` + options), passing `key=<member key>`.

    Errors come out actionable: a missing dataset raises its DatasetNotFoundError as is; a class that cannot be
    imported or constructed raises ConfigError naming the member and its `_target_`.
    """
    target = source_cfg.get("_target_") if isinstance(source_cfg, Mapping) else None
    try:
        source = instantiate(source_cfg, key=key, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (DatasetNotFoundError, StoreFormatError)):
            raise cause from None
        problem = " ".join(str(cause or err).split())
        fix = (f"check that '{target}' is importable (its module on sys.path / installed) and accepts the options "
               f"in conf/source/{key}.yaml")
        if target is None:
            fix = how_to_register(key)
        raise ConfigError(f"dataset.members.{key}._target_", target, problem, fix) from err
    for required in ("get_image_info", "__len__"):
        if not hasattr(source, required):
            raise ConfigError(f"dataset.members.{key}._target_", target,
                              f"the class has no {required}; it is not a source dataset",
                              "derive it from romp_hydra.data.base.SourceDataset (see romp_hydra/data/template.py)")
    if getattr(source, "key", None) is None:
        source.key = key
    return source


def build_sources(dataset_cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """Instantiate every member of a mixture config (`{name, members: {key: source config}}`), in order."""
    members = dataset_cfg.get("members") or {}
    if not members:
        raise ConfigError("dataset.members", {}, "the mixture has no members",
                          f"pick a dataset with members; registered sources: {', '.join(registered_sources())}")
    return {str(key): instantiate_source(str(key), members[key]) for key in members}


def mixture_weights(cfg: DictConfig, keys: Sequence[str]) -> list[float] | None:
    """The configured weights in member order, or None (uniform) when none are configured."""
    weights = OmegaConf.select(cfg, "sampling.weights", default=None) or {}
    if not weights:
        return None
    return [float(weights[key]) for key in keys]


def build_train_loader(cfg: DictConfig, rank: int = 0, world_size: int = 1) -> MixtureLoader:
    """The training loader of `cfg`: its mixture, weights, epoch length, seed, pipeline and batch size."""
    sources = build_sources(cfg.dataset)
    keys = list(sources)
    epoch_samples = OmegaConf.select(cfg, "sampling.epoch_samples", default=None)
    if epoch_samples is None:
        raise ConfigError("sampling.epoch_samples", None, "the number of samples per epoch is not set",
                          "choose a sampling= config or set sampling.epoch_samples")
    sampler = MixtureSampler(
        [len(source) for source in sources.values()],
        mixture_weights(cfg, keys),
        int(epoch_samples),
        int(cfg.seed),
        names=keys,
        rank=rank,
        world_size=world_size,
        clusters=[source_clusters(source) for source in sources.values()],
    )
    dataset = MixtureDataset(list(sources.values()), SamplePipeline(cfg.data, train=True), replace_bad=True)
    return MixtureLoader(
        dataset,
        sampler,
        int(cfg.data.batch_size),
        max_bad_fraction=float(cfg.data.max_bad_fraction),
        **_worker_options(cfg, seed=int(cfg.seed) + rank),
    )


def build_eval_loader(cfg: DictConfig, member: str | Mapping[str, Any] | DictConfig, *,
                      key: str | None = None) -> DataLoader:
    """An evaluation loader over one source: every item once, in order, no augmentation, nothing replaced.

    Args:
        cfg: the run config (data.* and seed are read).
        member: a member key of `cfg.dataset.members`; or a source config (with `_target_`); or a dataset
            config with exactly one member.
        key: the key to give a source config passed directly (default: the member's key or 'eval').
    """
    if isinstance(member, str):
        members = OmegaConf.select(cfg, "dataset.members", default=None) or {}
        if member not in members:
            raise ConfigError("dataset", member, f"'{member}' is not a member of the chosen dataset "
                              f"(members: {', '.join(members) or 'none'})", how_to_register(member))
        key, source_cfg = member, members[member]
    elif "members" in member:
        if len(member["members"]) != 1:
            raise ConfigError("dataset.members", list(member["members"]),
                              "evaluation reads one dataset at a time", "pass the member key to evaluate")
        key = str(next(iter(member["members"])))
        source_cfg = member["members"][key]
    else:
        key, source_cfg = key or "eval", member
    source = instantiate_source(key, source_cfg)
    dataset = MixtureDataset([source], SamplePipeline(cfg.data, train=False), replace_bad=False)
    return DataLoader(
        dataset,
        batch_size=int(cfg.data.val_batch_size),
        sampler=SequentialSourceSampler(len(source), seed=int(cfg.seed)),
        drop_last=False,
        **_worker_options(cfg, seed=int(cfg.seed)),
    )


# Upper bound of `data.num_workers: auto`: past ~8 workers one training process rarely gains, and each worker
# holds a copy of the dataset's index in memory.
MAX_AUTO_WORKERS = 8


def usable_cpu_count() -> int:
    """CPUs this process may run on (the affinity mask that SLURM / taskset / containers set), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def resolve_num_workers(value: Any, cpus: int | None = None) -> int:
    """`data.num_workers`: an integer as given, or `auto` = min(8, usable CPUs - 1): one CPU stays with the training
    process; a 1-CPU machine loads in-process (0 workers)."""
    if str(value).lower() == "auto":
        cpus = usable_cpu_count() if cpus is None else cpus
        return max(0, min(MAX_AUTO_WORKERS, cpus - 1))
    return int(value)


def _killed_on_terminate(popen_class: type) -> type:
    """A Popen whose terminate() is SIGKILL: the workers ignore SIGTERM (see ignore_stop_signals)."""
    return type(f"Killing{popen_class.__name__}", (popen_class,), {"terminate": popen_class.kill})


_ForkPopen = _killed_on_terminate(popen_fork.Popen)
_SpawnPopen = _killed_on_terminate(popen_spawn_posix.Popen)
_ForkServerPopen = _killed_on_terminate(popen_forkserver.Popen)


class _ForkWorker(multiprocessing.context.ForkProcess):
    _Popen = staticmethod(_ForkPopen)


class _SpawnWorker(multiprocessing.context.SpawnProcess):
    _Popen = staticmethod(_SpawnPopen)


class _ForkServerWorker(multiprocessing.context.ForkServerProcess):
    _Popen = staticmethod(_ForkServerPopen)


class _ForkWorkers(multiprocessing.context.ForkContext):
    Process = _ForkWorker


class _SpawnWorkers(multiprocessing.context.SpawnContext):
    Process = _SpawnWorker


class _ForkServerWorkers(multiprocessing.context.ForkServerContext):
    Process = _ForkServerWorker


_WORKER_CONTEXTS = {"fork": _ForkWorkers, "spawn": _SpawnWorkers, "forkserver": _ForkServerWorkers}


def worker_context(value: Any = "auto") -> multiprocessing.context.BaseContext:
    """The multiprocessing context of the DataLoader workers (`worker_start_method`), whose processes stop with
    SIGKILL when terminated: the workers ignore SIGTERM, so torch's shutdown of a stuck worker and Python's exit
    (which terminates daemon children through their Popen, then waits for them) would otherwise wait forever."""
    return _WORKER_CONTEXTS[worker_start_method(value)]()


def worker_start_method(value: Any = "auto") -> str:
    """`data.multiprocessing_context`: `auto` = fork on Linux, spawn elsewhere; or fork | forkserver | spawn.

    Why explicit: without it the DataLoader uses the process-wide default, and launchers change that default.
    Inside a joblib (loky) worker it is loky's own context, whose Process needs attributes torch never sets, so
    every worker failed to start ('Process' object has no attribute 'env'). Naming the context makes workers start
    the same way under the basic, joblib and submitit launchers.

    Why fork on Linux: a worker starts in milliseconds and shares the dataset's index copy-on-write, while spawn
    and forkserver re-import torch and OpenCV and unpickle the dataset in every worker (seconds each; measured in
    benchmarks/loader_startup.py). Fork is safe here because the workers never touch CUDA, torch gives each
    worker one intra-op thread, and OpenCV's thread pool is set to one thread before the fork (`_worker_options`).
    A dataset of your own that holds fork-unsafe state (an open database handle, a CUDA tensor) can pick
    `spawn`. macOS: fork is unsafe with the system frameworks, so `auto` is spawn there (Python's own default).
    """
    method = str(value).lower()
    if method == "auto":
        return "fork" if sys.platform.startswith("linux") else "spawn"
    if method != "fork" and multiprocessing.get_start_method(allow_none=True) == "loky":
        # A spawned child re-applies the parent's start method, which only exists inside joblib.
        raise ConfigError("data.multiprocessing_context", method,
                          "inside a joblib (loky) job only fork can start DataLoader workers",
                          "use data.multiprocessing_context=auto (fork), or another launcher for this sweep")
    return method


def ignore_stop_signals() -> None:
    """SIGTERM / SIGINT are the main process's to handle: it finishes the step, saves and stops the workers itself.

    A scheduler (SLURM's scancel, Kubernetes, `kill -TERM -<pgid>`) and Ctrl-C signal the whole process group.
    A worker that died of the signal would make the main process fail with "DataLoader worker ... killed by
    signal" before it could save; a worker that inherited the trainer's handler would run it on its own copy.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def init_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: leave the stop signals to the main process, then seed the global RNGs."""
    ignore_stop_signals()
    seed_worker(worker_id)


def _wants_cuda(cfg: DictConfig) -> bool:
    device = str(OmegaConf.select(cfg, "trainer.device", default=None) or OmegaConf.select(cfg, "device", default="auto"))
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _worker_options(cfg: DictConfig, seed: int) -> dict[str, Any]:
    data = cfg.data
    workers = resolve_num_workers(data.get("num_workers", "auto"))
    pin_memory = data.get("pin_memory", "auto")
    # Pinned host memory makes the copy to the GPU asynchronous (non_blocking=True in the step); useless on CPU.
    pin = _wants_cuda(cfg) if str(pin_memory).lower() == "auto" else bool(pin_memory)
    options: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": CollateWithSkips(collate_samples),
        "pin_memory": pin and torch.cuda.is_available(),
        "generator": torch.Generator().manual_seed(seed),
    }
    if workers > 0:
        # One OpenCV thread per process: the workers are the parallelism. It must be set here, before the fork:
        # calling cv2.setNumThreads in a forked child whose parent already ran OpenCV's pool can deadlock.
        cv2.setNumThreads(1)
        options.update(
            worker_init_fn=init_worker,
            multiprocessing_context=worker_context(data.get("multiprocessing_context", "auto")),
            # Workers live as long as the loader: no start-up per epoch or per validation.
            persistent_workers=bool(data.get("persistent_workers", True)),
            prefetch_factor=int(data.get("prefetch_factor", 2)),
        )
    return options
