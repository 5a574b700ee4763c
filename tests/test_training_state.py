"""Training scaffolding shared by every stage: random-stream save/restore and the resumable data iterator."""

from __future__ import annotations

import itertools

import torch

from bgedit_cli.training.common import Dist, resumable_batches
from bgedit_cli.training.state import rank_seed, restore_rng_states, rng_state, seed_everything


def _states(n: int) -> list[dict]:
    out = []
    for i in range(n):
        seed_everything(100 + i)
        out.append(rng_state())
    return out


def _draw() -> torch.Tensor:
    return torch.rand(4)


def test_each_rank_continues_its_own_stream():
    states = _states(2)
    expected = []
    for s in states:
        restore_rng_states([s], Dist(), fallback_seed=0)
        expected.append(_draw())
    for rank in (0, 1):
        seed_everything(7)
        restore_rng_states(states, Dist(rank=rank, world_size=2), fallback_seed=0)
        assert torch.equal(_draw(), expected[rank])
    assert not torch.equal(expected[0], expected[1])


def test_a_single_saved_state_is_a_one_process_run():
    (state,) = _states(1)
    restore_rng_states([state], Dist(), fallback_seed=0)
    want = _draw()
    seed_everything(7)
    restore_rng_states(state, Dist(), fallback_seed=0)  # older runs saved rank 0's dict only
    assert torch.equal(_draw(), want)


def test_another_world_size_starts_fresh_seeded_streams_per_rank():
    states = _states(2)
    draws = {}
    for rank in (0, 1, 2):
        restore_rng_states(states, Dist(rank=rank, world_size=3), fallback_seed=50)
        draws[rank] = _draw()
    for rank in (0, 1, 2):
        seed_everything(rank_seed(50, rank))
        assert torch.equal(_draw(), draws[rank])
    assert len({tuple(v.tolist()) for v in draws.values()}) == 3


class _Items(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"i": torch.tensor(i), "epoch": torch.tensor(self.epoch)}


def test_resumable_batches_continue_exactly_and_leave_the_global_rng_alone():
    ds = _Items(10)
    straight = list(itertools.islice(resumable_batches(ds, 4, seed=3), 7))  # 2 full batches per epoch
    seed_everything(11)
    before = torch.get_rng_state()
    for cut in range(1, 7):
        epoch, position, _ = straight[cut - 1]
        resumed = list(itertools.islice(resumable_batches(ds, 4, seed=3, epoch=epoch, position=position), 7 - cut))
        for (e1, p1, b1), (e2, p2, b2) in zip(straight[cut:], resumed):
            assert (e1, p1) == (e2, p2)
            assert torch.equal(b1["i"], b2["i"]) and torch.equal(b1["epoch"], b2["epoch"])
    assert torch.equal(torch.get_rng_state(), before)  # creating loaders drew nothing from the global RNG
    epochs = [e for e, _, _ in straight]
    assert epochs == [0, 0, 1, 1, 2, 2, 3]
    for epoch in (0, 1, 2):
        seen = torch.cat([b["i"] for e, _, b in straight if e == epoch]).tolist()
        assert len(set(seen)) == 8  # no item twice within an epoch
        assert all(int(b["epoch"][0]) == epoch for e, _, b in straight if e == epoch)  # set_epoch was called
