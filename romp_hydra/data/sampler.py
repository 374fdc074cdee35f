"""Mixture sampling: which member dataset and which item each position of an epoch reads, and its random seed.

Semantics (docs/design.md, ecosystem.md §9):

* `weights` are the *marginal probabilities* of drawing from each member (normalised here, so raw
  non-negative weights work too). A zero weight is never drawn.
* An epoch is a fixed number of samples, `epoch_samples`, independent of the weights, so runs of different
  mixtures compare step for step. ROMP instead derives the epoch length from the weights
  (max_i len_i / p_i) and partitions the index space deterministically (romp_datasets.md §9).
* Within a member, items are visited in a seeded random permutation, without replacement until the member is
  exhausted; then a fresh permutation starts (so a small member is cycled, a large one partly visited).
* A member with pose clusters (ROMP's `homogenize_pose_space`, `romp_hydra.data.pose_clusters`) is drawn
  cluster-balanced: its draws go round its clusters in seeded random orders (each cluster equally often, as
  ROMP's `index % k`), and within a cluster items are visited as above.
* Every position also gets a 64-bit sample seed, a pure function of (seed, epoch, position), from which the
  dataset draws that sample's augmentation. The epoch is therefore reproducible whatever the number of
  DataLoader workers, and a resumed run replays exactly what the interrupted one would have drawn.

Sharding: the epoch's global sequence depends only on (seed, epoch); rank r of W takes positions r, r+W, r+2W,
... (each rank gets epoch_samples // W positions, so all ranks run the same number of steps; the remainder of
fewer than W positions is dropped). Within a rank there is nothing to shard: the sampler runs in the main
process, the DataLoader groups its output into batches and hands each batch to exactly one worker.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1
_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (2^64 / golden ratio, odd)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function: a bijection on uint64 with good avalanche (Steele et al., 2014)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, epoch: int, positions: np.ndarray | Sequence[int]) -> np.ndarray:
    """The 64-bit augmentation seed of each position of an epoch: f(seed, epoch, position), as uint64.

    Distinct positions of one epoch always get distinct seeds (SplitMix64 over a counter is a bijection).
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2^64 by design
        key = _splitmix64(np.asarray([seed & _MASK64], dtype=np.uint64))
        key = _splitmix64(key + np.uint64(epoch & _MASK64) * _GOLDEN_GAMMA)
        counters = np.asarray(positions, dtype=np.uint64) + np.uint64(1)
        return _splitmix64(key + counters * _GOLDEN_GAMMA)


class MixtureSampler(Sampler):
    """Yields `(member_idx, item_idx, sample_seed)` for this rank's share of an epoch.

    Args:
        sizes: number of items of each member.
        weights: marginal probability of each member (any non-negative numbers; they are normalised).
            None = uniform.
        epoch_samples: samples per epoch over all ranks.
        seed: the run's seed.
        names: member names for the log table and error messages.
        rank, world_size: this process's place in distributed training.
        clusters: per member, None or the (size,) cluster id of each item (draw that member cluster-balanced).

    Resume: the training loop (or `MixtureLoader`, which does it for you) calls `advance(n)` for each batch of n
    samples it has consumed; `state_dict()` stores the epoch and the position, and `load_state_dict()` makes the
    next iteration skip what was consumed. `set_epoch(e)` with a new epoch starts it from the beginning; with the
    epoch already loaded it keeps the restored position.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float] | None,
        epoch_samples: int,
        seed: int = 0,
        *,
        names: Sequence[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
        clusters: Sequence[np.ndarray | None] | None = None,
    ):
        self.sizes = [int(size) for size in sizes]
        self.clusters = self._cluster_members(clusters)
        self.names = list(names) if names is not None else [f"member{i}" for i in range(len(self.sizes))]
        raw = np.ones(len(self.sizes)) if weights is None else np.asarray(weights, dtype=np.float64)
        self._check(raw, epoch_samples, rank, world_size)
        self.raw_weights = raw
        self.probabilities = raw / raw.sum()
        self.epoch_samples = int(epoch_samples)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.samples_per_rank = self.epoch_samples // self.world_size
        self.epoch = 0
        self.consumed = 0  # samples of this rank's share of the current epoch already used for training
        self._plan_cache: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        if self.rank == 0:
            log.info("mixture sampling:\n%s", self.describe())

    def _cluster_members(self, clusters: Sequence[np.ndarray | None] | None) -> list[list[np.ndarray] | None]:
        """Per member, None or the item indices of each of its (non-empty) clusters."""
        if clusters is None:
            return [None] * len(self.sizes)
        if len(clusters) != len(self.sizes):
            raise ValueError(f"got cluster ids for {len(clusters)} members, the mixture has {len(self.sizes)}")
        grouped: list[list[np.ndarray] | None] = []
        for member, (ids, size) in enumerate(zip(clusters, self.sizes)):
            if ids is None:
                grouped.append(None)
                continue
            ids = np.asarray(ids).reshape(-1)
            if len(ids) != size:
                name = self.names[member] if member < len(self.names) else member
                raise ValueError(f"mixture member '{name}' has {size} items but {len(ids)} cluster ids; "
                                 f"delete its *_pose_clusters.npz next to the packed store to rebuild them")
            order = np.argsort(ids, kind="stable")
            bounds = np.flatnonzero(np.diff(ids[order])) + 1
            grouped.append(np.split(order.astype(np.int64), bounds))
        return grouped

    def _check(self, raw: np.ndarray, epoch_samples: int, rank: int, world_size: int) -> None:
        if len(self.names) != len(self.sizes) or raw.shape != (len(self.sizes),):
            raise ValueError(f"got {len(self.sizes)} member sizes, {len(self.names)} names and {raw.size} weights; "
                             f"they must match one to one")
        if not np.all(np.isfinite(raw)) or np.any(raw < 0) or raw.sum() <= 0:
            raise ValueError(f"mixture weights must be finite, >= 0 and not all 0, got {dict(zip(self.names, raw))}")
        for name, size, weight in zip(self.names, self.sizes, raw):
            if weight > 0 and size <= 0:
                raise ValueError(f"mixture member '{name}' has weight {weight:g} but no items; give it weight 0 "
                                 f"or fix the dataset (is its annotation file empty?)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if epoch_samples < world_size:
            raise ValueError(f"sampling.epoch_samples={epoch_samples} is smaller than the number of ranks "
                             f"({world_size}); every rank needs at least one sample")

    # -- the sequence ---------------------------------------------------------------------------------------------
    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole epoch over all ranks: (member_idx, item_idx, sample_seed), each of length epoch_samples."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        seed = self.seed & _MASK64
        drawable = np.flatnonzero(self.probabilities > 0)  # choosing only among these guarantees 0 is never drawn
        rng = np.random.default_rng([seed, epoch, 0])
        choice = rng.choice(len(drawable), size=self.epoch_samples, p=self.probabilities[drawable])
        members = drawable[choice]
        items = np.empty(self.epoch_samples, dtype=np.int64)
        for member in drawable:
            slots = np.flatnonzero(members == member)
            items[slots] = self._member_items(seed, epoch, int(member), len(slots))
        plan = (members, items, sample_seeds(seed, epoch, np.arange(self.epoch_samples)))
        self._plan_cache = (epoch, plan)
        return plan

    def _member_items(self, seed: int, epoch: int, member: int, count: int) -> np.ndarray:
        """`count` item indices: a seeded permutation of the member, then fresh permutations when it runs out.
        A clustered member: the clusters in seeded rounds, and each cluster's items that way."""
        rng = np.random.default_rng([seed, epoch, 1, member])
        groups = self.clusters[member]
        if groups is None:
            return _cycled_permutations(rng, self.sizes[member], count)
        which = _cycled_permutations(rng, len(groups), count)
        items = np.empty(count, dtype=np.int64)
        for cluster, group in enumerate(groups):  # a loop over clusters, not over samples
            slots = np.flatnonzero(which == cluster)
            items[slots] = group[_cycled_permutations(rng, len(group), len(slots))]
        return items

    def rank_positions(self) -> np.ndarray:
        """The global epoch positions this rank reads, in order."""
        return np.arange(self.rank, self.samples_per_rank * self.world_size, self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        members, items, seeds = self.epoch_plan(self.epoch)
        for position in self.rank_positions()[self.consumed:]:
            yield int(members[position]), int(items[position]), int(seeds[position])

    def __len__(self) -> int:
        return self.samples_per_rank - self.consumed

    # -- epochs and resume ----------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a different epoch than the current one starts at its beginning."""
        if epoch != self.epoch:
            self.epoch, self.consumed = int(epoch), 0

    def advance(self, num_samples: int) -> None:
        """Record that `num_samples` more samples of this rank's share were consumed by training."""
        self.consumed = min(self.consumed + int(num_samples), self.samples_per_rank)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and global position (samples consumed over all ranks), plus what defines the sequence."""
        return {
            "epoch": self.epoch,
            "position": self.consumed * self.world_size,
            "seed": self.seed,
            "epoch_samples": self.epoch_samples,
            "sizes": list(self.sizes),
            "probabilities": [float(p) for p in self.probabilities],
            "clustered": [groups is not None for groups in self.clusters],
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where `state` left off. The position is global, so a different world size resumes correctly
        (up to a partial stride). If the mixture itself changed, the new sequence is continued at the same
        position and a warning says so."""
        changed = [key for key in ("seed", "epoch_samples", "sizes") if state.get(key) != getattr(self, key)]
        saved_probabilities = np.asarray(state.get("probabilities", []), dtype=np.float64)
        if saved_probabilities.shape != self.probabilities.shape or not np.allclose(saved_probabilities,
                                                                                     self.probabilities):
            changed.append("probabilities")
        if state.get("clustered", [False] * len(self.sizes)) != [groups is not None for groups in self.clusters]:
            changed.append("cluster balancing")
        if changed:
            log.warning("the saved sampler state was made with a different %s; the resumed run continues the "
                        "new mixture's sequence at the saved position, not the old sequence", ", ".join(changed))
        saved_world = int(state.get("world_size", self.world_size))
        if saved_world != self.world_size and self.rank == 0:
            position = int(state["position"])
            log.warning("the checkpoint was written by %d rank(s) and this run has %d: the epoch's sample sequence "
                        "continues at the same sample count (%d into epoch %d); each step reads the same samples as "
                        "before only if the global batch (data.batch_size x ranks) is unchanged%s", saved_world,
                        self.world_size, position, int(state["epoch"]),
                        f"; {position % self.world_size} sample(s) are read twice" if position % self.world_size else "")
        self.epoch = int(state["epoch"])
        self.consumed = min(int(state["position"]) // self.world_size, self.samples_per_rank)

    # -- reporting ------------------------------------------------------------------------------------------------
    def describe(self) -> str:
        """A table of the members: size, raw and normalised weight, expected samples (and passes) per epoch."""
        header = ("dataset", "size", "weight", "normalised", "samples/epoch", "passes/epoch")
        rows = []
        for name, size, raw, p in zip(self.names, self.sizes, self.raw_weights, self.probabilities):
            expected = p * self.epoch_samples
            rows.append((name, f"{size}", f"{raw:g}", f"{p:.4f}", f"{expected:.0f}",
                         f"{expected / size:.3f}" if size else "-"))
        widths = [max(len(header[c]), *(len(row[c]) for row in rows)) for c in range(len(header))]
        lines = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths)))
                 for line in (header, *rows)]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"epoch = {self.epoch_samples} samples ({self.samples_per_rank} per rank x {self.world_size} "
                     f"rank(s)), seed {self.seed}")
        return "\n".join(lines)


def source_clusters(source: Any) -> np.ndarray | None:
    """A source's per-item cluster ids when it asks to be drawn cluster-balanced (`sampling_clusters()`)."""
    method = getattr(source, "sampling_clusters", None)
    return method() if callable(method) else None


def _cycled_permutations(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """`count` values: a random permutation of range(size), then fresh permutations until `count` are drawn."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    cycles = -(-count // size)
    return rng.permuted(np.tile(np.arange(size, dtype=np.int64), (cycles, 1)), axis=1).reshape(-1)[:count]


class SequentialSourceSampler(Sampler):
    """Every item of one source once, in order, as `(member_idx, item_idx, sample_seed)` (evaluation).

    The seed is fixed per item (epoch 0), so an evaluation pass is identical every time it runs.
    """

    def __init__(self, size: int, seed: int = 0, member_idx: int = 0):
        self.size, self.seed, self.member_idx = int(size), int(seed), int(member_idx)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        seeds = sample_seeds(self.seed, 0, np.arange(self.size))
        for item in range(self.size):
            yield self.member_idx, item, int(seeds[item])

    def __len__(self) -> int:
        return self.size
