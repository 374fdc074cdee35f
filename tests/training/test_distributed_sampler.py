"""The mixture sampler's shards under several ranks: disjoint, together the 1-rank epoch, resumable (issue 13)."""
from __future__ import annotations

import logging

import pytest

from romp_hydra.data.sampler import MixtureSampler

SIZES, WEIGHTS, EPOCH = [7, 50, 13], [0.5, 0.3, 0.2], 96


def sampler(rank: int = 0, world_size: int = 1, epoch: int = 0) -> MixtureSampler:
    s = MixtureSampler(SIZES, WEIGHTS, EPOCH, seed=3, rank=rank, world_size=world_size)
    s.set_epoch(epoch)
    return s


def read(s: MixtureSampler, count: int | None = None) -> list[tuple[int, int, int]]:
    out = []
    for entry in s:
        out.append(entry)
        if count is not None and len(out) == count:
            break
    s.advance(len(out))
    return out


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("epoch", [0, 5])
def test_shards_are_disjoint_and_together_the_one_rank_epoch(world_size, epoch):
    single = read(sampler(epoch=epoch))
    shards = [read(sampler(r, world_size, epoch)) for r in range(world_size)]
    assert all(len(shard) == EPOCH // world_size for shard in shards)
    # Position p of the 1-rank epoch is read by rank p % W: interleaving the shards gives the 1-rank epoch back.
    interleaved = [shards[p % world_size][p // world_size] for p in range(EPOCH)]
    assert interleaved == single
    seeds = [entry[2] for shard in shards for entry in shard]
    assert len(set(seeds)) == EPOCH  # every position (its sample seed is unique) read by exactly one rank


def test_one_step_of_two_ranks_reads_the_samples_of_one_rank_with_twice_the_batch():
    batch = 8
    single = read(sampler())
    ranks = [read(sampler(r, 2)) for r in range(2)]
    for step in range(EPOCH // (2 * batch)):
        global_step = set(single[step * 2 * batch:(step + 1) * 2 * batch])
        per_rank = set(ranks[0][step * batch:(step + 1) * batch]) | set(ranks[1][step * batch:(step + 1) * batch])
        assert per_rank == global_step


def test_a_remainder_smaller_than_the_world_size_is_dropped_so_all_ranks_run_equal_steps():
    shards = [MixtureSampler(SIZES, WEIGHTS, 10, seed=3, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]


def test_resume_on_the_same_world_size_is_exact(caplog):
    uninterrupted = [read(sampler(r, 2)) for r in range(2)]
    for rank in range(2):
        first = sampler(rank, 2)
        head = read(first, 20)
        resumed = sampler(rank, 2)
        with caplog.at_level(logging.WARNING):
            resumed.load_state_dict(first.state_dict())
        assert head + read(resumed) == uninterrupted[rank]
    assert "written by" not in caplog.text


@pytest.mark.parametrize(("saved_world", "new_world", "consumed_per_rank"), [(2, 1, 20), (1, 2, 40), (2, 4, 12),
                                                                             (1, 3, 13)])
def test_resume_on_another_world_size_continues_at_the_same_sample_count(caplog, saved_world, new_world,
                                                                         consumed_per_rank):
    single = read(sampler())
    saved = sampler(0, saved_world)
    read(saved, consumed_per_rank)
    state = saved.state_dict()
    position = consumed_per_rank * saved_world
    assert state["position"] == position
    shards = []
    for rank in range(new_world):
        resumed = sampler(rank, new_world)
        with caplog.at_level(logging.WARNING):
            resumed.load_state_dict(state)
        shards.append(read(resumed))
    assert f"written by {saved_world} rank(s) and this run has {new_world}" in caplog.text
    # The new ranks continue the 1-rank sequence where the saved run stopped (rounded down to a whole stride).
    start = position - position % new_world
    rest = [shards[p % new_world][(p - start) // new_world] for p in range(start, (EPOCH // new_world) * new_world)]
    assert rest == single[start:(EPOCH // new_world) * new_world]
    if position % new_world:
        assert f"{position % new_world} sample(s) are read twice" in caplog.text
