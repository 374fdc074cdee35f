"""Generate a synthetic split once and keep it on disk; later runs (and DataLoader workers) only read it.

Layout of one cached split, ``<root>/<variant>_<split>_<seed>_<num_samples>_<hash>/`` (``hash``: the first
characters of the request's hash, so two requests that differ only in scene settings or generator version
never share, and never evict each other's, folder)::

    images/000000.jpg ...      the rendered images
    annotations.npz            a ``romp_hydra.data.store.PackedStore`` (plain arrays, no pickle); image
                               paths in it are relative to this folder
    meta.json                  what was generated: variant, split, seed, size, scene config, generator
                               version, body-model fingerprint, and their hash

The folder is valid only if ``meta.json`` holds the hash of the current request; otherwise it is generated
again. Generation happens in a temporary sibling folder that is renamed into place at the end, under an
exclusive lock file, so concurrent processes (DDP ranks, parallel sweep jobs) generate a split once and
never see a half-written one.

Every sample has its own random stream, seeded by (seed, split, variant, index), so the data do not depend
on how the work is split between processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from romp_hydra.data.store import PackedStore
from romp_hydra.data.synthetic.generator import GENERATOR_VERSION, SceneConfig, SceneGenerator

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_FILE",
    "SPLITS",
    "cache_folder_name",
    "ensure_body_model_files",
    "ensure_synthetic_split",
    "load_body_model",
    "sample_rng",
]

SPLITS = ("train", "val", "test")
ANNOTATION_FILE = "annotations.npz"
META_FILE = "meta.json"
_JPEG_QUALITY = 95
_HASH_CHARS = 10
# Below this many samples per process, starting worker processes costs more than it saves.
_MIN_SAMPLES_PER_WORKER = 32
# fork on Linux (as DataLoader workers): the children need not re-import the caller's main module, which
# under spawn re-runs an unguarded script and deadlocks on our lock. torch resets its thread pools in
# forked children. Elsewhere fork is unsafe (macOS) and the usual `if __name__ == "__main__"` rule applies.
_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def sample_rng(seed: int, split: str, variant: str, index: int) -> np.random.Generator:
    """The random stream of one sample; different splits and variants never share streams."""
    entropy = [int(seed), zlib.crc32(split.encode()), zlib.crc32(variant.encode()), int(index)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def cache_folder_name(variant: str, split: str, seed: int, num_samples: int, request_hash: str = "") -> str:
    name = f"{variant}_{split}_{seed}_{num_samples}"
    return f"{name}_{request_hash[:_HASH_CHARS]}" if request_hash else name


def ensure_body_model_files(kind: str, model_dir: str | Path) -> Path:
    """Write the stand-in body model to ``model_dir`` if ``kind`` is 'standin' and it is missing (under a
    lock, so parallel processes write it once). Other kinds must already be there."""
    from romp_hydra.body.standin import standin_is_complete, write_standin

    model_dir = Path(model_dir).expanduser()
    if kind == "standin" and not standin_is_complete(model_dir):
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(model_dir.parent / f".{model_dir.name}.lock"):
            if not standin_is_complete(model_dir):
                log.info("writing the stand-in body model to %s", model_dir)
                write_standin(model_dir)
    return model_dir


def load_body_model(kind: str, model_dir: str | Path) -> Any:
    """Build the body model (``romp_hydra.body.smpl.build_body_model``), writing the stand-in first if needed."""
    from romp_hydra.body.smpl import build_body_model

    return build_body_model(kind, str(ensure_body_model_files(kind, model_dir)))


def ensure_synthetic_split(
    root: str | Path,
    variant: str,
    split: str,
    seed: int,
    num_samples: int,
    config: SceneConfig,
    *,
    body_model_kind: str = "standin",
    body_model_dir: str | Path,
    num_workers: int = 2,
) -> Path:
    """Return the folder of a generated split, generating it first unless a valid cache exists.

    Args:
        root: parent folder of all cached splits (e.g. ``${paths.cache_dir}/synthetic``).
        variant: the variant name (part of the folder name and of every sample's seed).
        split: one of ``SPLITS``; each split draws from its own seeds, so val is held out from train.
        seed: base seed.
        num_samples: number of images.
        config: the variant's scene settings (part of the cache key).
        body_model_kind, body_model_dir: which body model poses the meshes (its files are part of the
            cache key); the stand-in is written to ``body_model_dir`` if missing.
        num_workers: generator processes (0 or 1: generate in this process).
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split must be one of {SPLITS}, got {split!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)

    body_model_dir = ensure_body_model_files(body_model_kind, body_model_dir)
    request = {
        "generator_version": GENERATOR_VERSION,
        "variant": variant,
        "split": split,
        "seed": int(seed),
        "num_samples": int(num_samples),
        "config": dataclasses.asdict(config),
        "body_model": {"kind": body_model_kind, "fingerprint": _folder_fingerprint(body_model_dir)},
    }
    request["hash"] = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    folder = root / cache_folder_name(variant, split, seed, num_samples, request["hash"])
    if _is_valid(folder, request["hash"]):
        return folder

    with _exclusive_lock(root / f".{folder.name}.lock"):
        if _is_valid(folder, request["hash"]):  # another process generated it while we waited
            return folder
        # Leftovers of a killed generator (we hold the lock, so nobody else is writing them).
        for pattern in (f".{folder.name}.tmp*", f".{folder.name}.stale*"):
            for leftover in root.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
        staging = root / f".{folder.name}.tmp{os.getpid()}"
        (staging / "images").mkdir(parents=True)
        log.info("generating %d synthetic %s/%s images into %s (once; later runs reuse them)",
                 num_samples, variant, split, folder)  # fmt: skip
        try:
            started = time.perf_counter()
            records = _generate(staging, request, config, body_model_kind, body_model_dir, num_workers)
            PackedStore.write(staging / ANNOTATION_FILE, records, dataset=f"synthetic_{variant}")
            elapsed = time.perf_counter() - started
            request["generation_seconds"] = round(elapsed, 2)
            (staging / META_FILE).write_text(json.dumps(request, indent=2, sort_keys=True))
            if folder.exists():  # a stale cache: move it aside, then drop it
                stale = root / f".{folder.name}.stale{os.getpid()}"
                folder.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "generated synthetic %s/%s: %d images in %.1f s (%.1f images/s) -> %s",
            variant, split, num_samples, elapsed, num_samples / elapsed, folder,
        )  # fmt: skip
    return folder


def _generate(
    staging: Path,
    request: dict[str, Any],
    config: SceneConfig,
    body_model_kind: str,
    body_model_dir: Path,
    num_workers: int,
) -> list[dict[str, Any]]:
    """All records of the split, in index order; images are written into ``staging/images``."""
    num_samples, seed = request["num_samples"], request["seed"]
    variant, split = request["variant"], request["split"]
    workers = min(max(num_workers, 1), math.ceil(num_samples / _MIN_SAMPLES_PER_WORKER))
    if workers <= 1:
        generator = SceneGenerator(config, load_body_model(body_model_kind, body_model_dir))
        with _single_torch_thread():
            return _generate_indices(generator, staging, seed, split, variant, range(num_samples))

    chunk = max(8, math.ceil(num_samples / (workers * 8)))
    tasks = [(str(staging), seed, split, variant, range(start, min(start + chunk, num_samples)))
             for start in range(0, num_samples, chunk)]  # fmt: skip
    records: list[dict[str, Any]] = []
    context = multiprocessing.get_context(_START_METHOD)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(config, body_model_kind, str(body_model_dir))) as pool:  # fmt: skip
        for part in pool.map(_worker_task, tasks):
            records.extend(part)
    return records


def _generate_indices(
    generator: SceneGenerator, staging: Path, seed: int, split: str, variant: str, indices: range
) -> list[dict[str, Any]]:
    records = []
    for index in indices:
        sample = generator.generate(sample_rng(seed, split, variant, index))
        relative_path = f"images/{index:06d}.jpg"
        bgr = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(staging / relative_path), bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
            raise OSError(f"could not write {staging / relative_path}; is the cache folder writable?")
        count = len(sample.kp2ds)
        records.append({
            "imgpath": relative_path,
            "img_size": sample.image.shape[:2],
            "kp2ds": sample.kp2ds,
            "track_ids": np.arange(count),
            "vmask_2d": np.ones((count, 3), bool),
            "vmask_3d": np.ones((count, 6), bool),
            "kp3ds": sample.kp3ds,
            "params": sample.params,
            "root_trans": sample.root_trans,
            "camMats": sample.cam_mat,
        })  # fmt: skip
    return records


# Per-process state of the generator workers (built once by the pool initializer).
_WORKER_GENERATOR: SceneGenerator | None = None


def _init_worker(config: SceneConfig, body_model_kind: str, body_model_dir: str) -> None:
    import torch

    global _WORKER_GENERATOR
    torch.set_num_threads(1)  # one process per core: intra-op threads would only compete
    _WORKER_GENERATOR = SceneGenerator(config, load_body_model(body_model_kind, body_model_dir))


def _worker_task(task: tuple[str, int, str, str, range]) -> list[dict[str, Any]]:
    staging, seed, split, variant, indices = task
    assert _WORKER_GENERATOR is not None, "worker used without _init_worker"
    return _generate_indices(_WORKER_GENERATOR, Path(staging), seed, split, variant, indices)


def _is_valid(folder: Path, expected_hash: str) -> bool:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("hash") == expected_hash and (folder / ANNOTATION_FILE).is_file()


def _folder_fingerprint(folder: Path) -> str:
    """SHA-256 over the names and contents of the files in a folder (the body model's files)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Run the body model on one thread: its small matrices gain nothing from more, and on a busy machine
    thread contention makes it several times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """An inter-process lock held while the block runs (released by the OS if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
