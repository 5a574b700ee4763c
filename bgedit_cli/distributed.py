"""Processes under torchrun, for training and for the commands that shard their inputs (invert, text-edit).

    d, device = join("auto")                # Dist(rank, world_size, local_rank); Dist() without torchrun
    everyone = all_gather_objects(obj, d)   # [rank 0's obj, rank 1's obj, ...]

One process per device: under torchrun a CUDA device is cuda:LOCAL_RANK, and the processes talk over NCCL;
on CPU over gloo (which is how the tests run several processes).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

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


def all_gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order; `[obj]` without DDP. Collective: every rank must call it."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out
