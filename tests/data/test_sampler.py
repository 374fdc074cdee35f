"""MixtureSampler: weights, zero weights, permutation within members, sharding, resume, seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset, get_worker_info

from romp_hydra.data.sampler import MixtureSampler, SequentialSourceSampler, sample_seeds

MASK64 = (1 << 64) - 1


def splitmix64_reference(x: int) -> int:
    """SplitMix64's output function on Python ints (Steele, Lea & Flood 2014), for hand-checking."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_member_frequencies_match_weights(seed):
    # Each member's count over n draws is Binomial(n, p): allow 5 standard deviations (two-sided p ~ 6e-7
    # per member), so the test fails only if the frequencies are really off.
    weights = [0.5, 0.3, 0.15, 0.05, 0.0]
    draws = 20_000
    sampler = MixtureSampler([100, 50, 7, 1000, 10], weights, draws, seed=seed)
    members, _, _ = sampler.epoch_plan(0)
    counts = np.bincount(members, minlength=len(weights))
    for p, count in zip(weights, counts):
        sigma = math.sqrt(draws * p * (1 - p))
        assert abs(count - draws * p) <= 5 * sigma, (p, count)
    assert counts[4] == 0


def test_raw_weights_are_normalised():
    sampler = MixtureSampler([10, 10, 10], [2.0, 1.0, 1.0], 8000, seed=3)
    np.testing.assert_allclose(sampler.probabilities, [0.5, 0.25, 0.25])
    counts = np.bincount(sampler.epoch_plan(0)[0], minlength=3)
    assert abs(counts[0] - 4000) <= 5 * math.sqrt(8000 * 0.25)


def test_zero_weight_is_never_drawn_over_many_epochs():
    sampler = MixtureSampler([5, 5, 5], [0.0, 1e-9, 1.0], 5000, seed=7)
    for epoch in range(5):
        assert not np.any(sampler.epoch_plan(epoch)[0] == 0)


def test_uniform_when_no_weights():
    sampler = MixtureSampler([3, 4], None, 10, seed=0)
    np.testing.assert_allclose(sampler.probabilities, [0.5, 0.5])


def test_items_are_a_permutation_per_cycle():
    # 2000 draws from a member of 30 items: 66 full cycles + 20; every cycle visits each item exactly once.
    sampler = MixtureSampler([30], [1.0], 2000, seed=5)
    items = sampler.epoch_plan(0)[1]
    for cycle in range(2000 // 30):
        assert sorted(items[cycle * 30:(cycle + 1) * 30]) == list(range(30))
    assert len(set(items[-20:].tolist())) == 20
    assert not np.array_equal(items[:30], items[30:60])  # a fresh order each cycle


def test_large_member_is_visited_without_repeats():
    sampler = MixtureSampler([100_000, 10], [0.5, 0.5], 4000, seed=1)
    members, items, _ = sampler.epoch_plan(0)
    big = items[members == 0]
    assert len(np.unique(big)) == len(big)
    assert big.max() < 100_000


def test_epoch_length_does_not_depend_on_weights():
    a = MixtureSampler([10, 1000], [0.9, 0.1], 640, seed=0)
    b = MixtureSampler([10, 1000], [0.1, 0.9], 640, seed=0)
    assert len(a) == len(b) == 640
    assert len(list(a)) == 640


def test_epochs_and_seeds_change_the_sequence_reproducibly():
    a = MixtureSampler([50, 50], [0.5, 0.5], 200, seed=0)
    b = MixtureSampler([50, 50], [0.5, 0.5], 200, seed=0)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    c = MixtureSampler([50, 50], [0.5, 0.5], 200, seed=1)
    assert list(c) != first


def test_sample_seed_is_splitmix64_of_seed_epoch_position():
    golden = 0x9E3779B97F4A7C15
    seed, epoch, position = 42, 3, 17
    key = splitmix64_reference(seed)
    key = splitmix64_reference((key + epoch * golden) & MASK64)
    expected = splitmix64_reference((key + (position + 1) * golden) & MASK64)
    assert int(sample_seeds(seed, epoch, [position])[0]) == expected
    # negative run seeds are taken modulo 2^64
    assert int(sample_seeds(-1, 0, [0])[0]) == int(sample_seeds(MASK64, 0, [0])[0])


def test_sample_seeds_are_distinct_within_an_epoch_and_differ_between_epochs():
    seeds0 = sample_seeds(0, 0, np.arange(100_000))
    assert len(np.unique(seeds0)) == 100_000
    seeds1 = sample_seeds(0, 1, np.arange(100_000))
    assert not np.any(seeds0 == seeds1)


def test_ranks_partition_the_global_sequence():
    world = 3
    single = MixtureSampler([20, 30], [0.4, 0.6], 1000, seed=9)
    full = list(single)
    shards = [list(MixtureSampler([20, 30], [0.4, 0.6], 1000, seed=9, rank=r, world_size=world))
              for r in range(world)]
    assert all(len(shard) == 1000 // world for shard in shards)  # equal steps on every rank
    for rank, shard in enumerate(shards):
        assert shard == full[rank:999:world]
    positions = [set(range(rank, 999, world)) for rank in range(world)]
    assert set.union(*positions) == set(range(999)) and sum(map(len, positions)) == 999  # disjoint


class _WhoLoadedMe(Dataset):
    def __getitem__(self, index):
        member, item, seed = index
        info = get_worker_info()
        return member, item, seed, info.id if info else -1

    def __len__(self):
        return 10**6


def _as_list(batch):
    return batch  # sample seeds are uint64: the default collate would overflow int64


def test_dataloader_workers_get_disjoint_batches():
    # The sampler runs in the main process; each batch of its output goes to exactly one worker.
    sampler = MixtureSampler([7, 11], [0.5, 0.5], 64, seed=4)
    expected = list(sampler)
    loader = DataLoader(_WhoLoadedMe(), batch_size=4, sampler=sampler, num_workers=2, collate_fn=_as_list)
    seen, workers = [], set()
    for batch in loader:
        for member, item, seed, worker in batch:
            seen.append((member, item, seed))
            workers.add(worker)
    assert seen == expected  # every position exactly once, in order
    assert workers == {0, 1}


def test_resume_mid_epoch_continues_the_exact_sequence():
    reference = MixtureSampler([13, 29], [0.3, 0.7], 300, seed=11)
    reference.set_epoch(2)
    full = list(reference)

    interrupted = MixtureSampler([13, 29], [0.3, 0.7], 300, seed=11)
    interrupted.set_epoch(2)
    interrupted.advance(37)
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["position"] == 37

    resumed = MixtureSampler([13, 29], [0.3, 0.7], 300, seed=11)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the loop's usual call keeps the restored position
    assert len(resumed) == 300 - 37
    assert list(resumed) == full[37:]
    resumed.set_epoch(3)
    assert len(resumed) == 300


def test_resume_with_another_world_size_continues_at_the_global_position():
    full = list(MixtureSampler([13, 29], [0.3, 0.7], 300, seed=11))
    state = MixtureSampler([13, 29], [0.3, 0.7], 300, seed=11)
    state.advance(40)
    saved = state.state_dict()
    ranks = []
    for rank in range(2):
        sampler = MixtureSampler([13, 29], [0.3, 0.7], 300, seed=11, rank=rank, world_size=2)
        sampler.load_state_dict(saved)
        ranks.append(list(sampler))
    assert ranks[0] == full[40::2] and ranks[1] == full[41::2]


def test_invalid_mixtures_are_rejected_with_the_member_named():
    with pytest.raises(ValueError, match="'b' has weight 0.5 but no items"):
        MixtureSampler([3, 0], [0.5, 0.5], 10, names=["a", "b"])
    with pytest.raises(ValueError, match="finite, >= 0"):
        MixtureSampler([3, 3], [-0.1, 1.1], 10)
    with pytest.raises(ValueError, match="smaller than the number of ranks"):
        MixtureSampler([3], [1.0], 2, world_size=4, rank=0)
    MixtureSampler([3, 0], [1.0, 0.0], 10)  # an empty member with weight 0 is fine


def test_describe_lists_raw_and_normalised_weights_and_expected_samples():
    table = MixtureSampler([100, 40], [3.0, 1.0], 1000, names=["h36m", "lsp"]).describe()
    lines = table.splitlines()
    assert lines[0].split() == ["dataset", "size", "weight", "normalised", "samples/epoch", "passes/epoch"]
    assert lines[2].split() == ["h36m", "100", "3", "0.7500", "750", "7.500"]
    assert lines[3].split() == ["lsp", "40", "1", "0.2500", "250", "6.250"]


def test_sequential_source_sampler_visits_every_item_once_in_order():
    sampler = SequentialSourceSampler(5, seed=3)
    out = list(sampler)
    assert [item for _, item, _ in out] == [0, 1, 2, 3, 4]
    assert [seed for _, _, seed in out] == [int(s) for s in sample_seeds(3, 0, range(5))]
    assert out == list(sampler)
