"""Processes under torchrun, for training and for the commands that shard their inputs (invert, text-edit, evaluate).

    d, device = join("auto")                # Dist(rank, world_size, local_rank); Dist() without torchrun
    everyone = all_gather_objects(obj, d)   # [rank 0's obj, rank 1's obj, ...]
    mine = contiguous_share(n, 8, d)        # this rank's run of whole batches of n items (a range)
    values = gather_items(values, d)        # per-item values of every rank's share, concatenated in rank order
    with main_process_first(d): ...         # rank 0 first (its on-disk decisions are then everyone's)

One process per device: under torchrun a CUDA device is cuda:LOCAL_RANK, and the processes talk over NCCL;
on CPU over gloo (which is how the tests run several processes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist

from bgedit_cli.runtime import resolve_device


@dataclasses.dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world_size=world, local_rank=local)


def rank_device(name: str, d: Dist | None = None) -> torch.device:
    """A `--device` value for this process: under torchrun a CUDA device is the rank's own, cuda:LOCAL_RANK."""
    dev = resolve_device(name)
    if dev.type == "cuda" and d is not None and d.enabled:
        return torch.device("cuda", d.local_rank)
    return dev


def join(device: str) -> tuple[Dist, torch.device]:
    """Join torchrun's processes (a single process outside torchrun) and pick this process's device."""
    d = init_distributed(resolve_device(device))
    return d, rank_device(device, d)


@contextlib.contextmanager
def main_process_first(d: Dist) -> Iterator[None]:
    """Rank 0 runs the block before the other ranks do (they wait at a barrier): what it decides and caches on
    disk, such as `--precision auto`'s measurement on a CPU (runtime.py), the others then read, so every rank
    decides alike. Without torchrun: just the block."""
    if d.enabled and not d.is_main:
        dist.barrier()
    yield
    if d.enabled and d.is_main:
        dist.barrier()


def all_gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order; `[obj]` without DDP. Collective: every rank must call it."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def contiguous_share(num_items: int, batch_size: int, d: Dist) -> range:
    """This rank's items of `num_items`: a contiguous run of whole batches of `batch_size` (the batches split as
    evenly as the count allows, rank 0 first). The batches are those of one process, and the ranks' shares in rank
    order are the items in order, so `gather_items` of per-item values gives one process's values."""
    num_batches = -(-num_items // batch_size)
    first, last = num_batches * d.rank // d.world_size, num_batches * (d.rank + 1) // d.world_size
    return range(min(first * batch_size, num_items), min(last * batch_size, num_items))


def gather_items(values: Any, d: Dist) -> Any:
    """Every rank's per-item `values` (tensors whose first axis is the item, in dicts, lists, tuples and
    dataclasses) concatenated in rank order; other leaves (settings, reasons) are rank 0's. A rank without items
    may leave keys out. Collective under torchrun; `values` as they are without it."""
    if not d.enabled:
        return values
    return _concat([v for v in all_gather_objects(values, d) if v is not None])


def _concat(parts: list[Any]) -> Any:
    parts = [p for p in parts if not (isinstance(p, (list, tuple, dict)) and not p)] or parts[:1]  # no items
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for p in parts for k in p))
        return {k: _concat([p[k] for p in parts if k in p]) for k in keys}
    if isinstance(first, (list, tuple)) and first and len({len(p) for p in parts}) == 1:
        return type(first)(_concat(list(items)) for items in zip(*parts))
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return dataclasses.replace(first, **{f.name: _concat([getattr(p, f.name) for p in parts])
                                             for f in dataclasses.fields(first) if f.init})
    return first
