"""Pieces the stage runner (training/runner.py) and the stages share: processes, logs, progress, data order.

- Processes (joining torchrun, the device per rank, `all_gather_objects`) are bgedit_cli/distributed.py, which
  the sharded commands share; here `all_reduce_mean`, `any_ranks`, `sum_over_ranks`: the collectives only the
  stages use.
- `RunLog.write(step=..., **scalars)`: one JSON object per line in `RUN/log.jsonl`, flushed at once.
- `TrainProgress`: a rich progress bar on stderr with step, images/s, losses and ETA (rank 0, not --quiet).
- `resumable_batches`: the data order as a function of (seed, epoch), resumable mid-epoch.
- `StopRequest`: the first Ctrl-C asks the loop to stop after its step.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from bgedit_cli.console import err_console
from bgedit_cli.distributed import Dist
from bgedit_cli.errors import InputError


# ----------------------------------------------------------------------------------------------------------
# Distributed.


def all_reduce_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        x = x.clone()
        dist.all_reduce(x)
        x /= d.world_size
    return x


def mean_scalars(scalars: dict[str, float], d: Dist, device: torch.device | str = "cpu") -> dict[str, float]:
    """Logged scalars averaged over ranks (one collective; the same dict when not distributed)."""
    if not d.enabled:
        return scalars
    keys = sorted(scalars)
    vec = torch.tensor([scalars[k] for k in keys], dtype=torch.float64, device=device)
    return dict(zip(keys, all_reduce_mean(vec, d).tolist()))


def any_ranks(flags: list[bool], d: Dist | None) -> list[bool]:
    """Each flag true on any rank (one collective call under DDP: every rank must make it)."""
    if d is None or not d.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return [bool(v > 0) for v in t.tolist()]


def average_gradients(params: list[torch.nn.Parameter], d) -> None:
    """Average the gradients over ranks with one flattened all-reduce (no-op for one process). Parameters
    without a gradient on every rank (a frozen phase) are skipped consistently: the phase is the same on all."""
    if not d.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_over_ranks(d: Dist):
    """A function summing a tensor over ranks (None without DDP), for stages that reduce their own statistics."""
    if not d.enabled:
        return None

    def reduce(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    return reduce


def split_batch(batch_size: int, d: Dist) -> int:
    """The per-rank share of a global batch size (which must divide evenly)."""
    if batch_size % d.world_size:
        raise InputError(f"--batch-size {batch_size} must be divisible by the number of processes ({d.world_size}).")
    return batch_size // d.world_size


# ----------------------------------------------------------------------------------------------------------
# Learning rate.


def warmup_cosine_lr(step: int, total: int, base_lr: float, *, warmup_fraction: float, max_warmup: int,
                     final_fraction: float = 0.0) -> float:
    """Learning rate of step `step` (0-based): linear warm-up over `warmup_fraction` of the steps (at most
    `max_warmup`), then cosine from `base_lr` down to `final_fraction * base_lr` at the last step."""
    warmup = min(max_warmup, max(1, int(warmup_fraction * total)))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = min((step - warmup) / max(1, total - warmup), 1.0)
    return base_lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------------------------------------
# Run folders and logs.


class RunLog:
    """Append-only JSON-lines log; every record carries `step` and wall `time` (seconds since start)."""

    def __init__(self, path: Path | None, start_time: float | None = None) -> None:
        self.path = path
        self.t0 = start_time if start_time is not None else time.time()

    def write(self, **record: Any) -> None:
        if self.path is None:
            return
        record = {"time": round(time.time() - self.t0, 3), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True, default=_jsonable) + "\n")
            f.flush()


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


def read_log(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------------------------------------
# Progress.


class TrainProgress:
    """Rich progress on stderr: step/total, images/s, latest losses, ETA. Disabled when quiet or not rank 0."""

    def __init__(self, total_steps: int, start_step: int, *, description: str, enabled: bool = True) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            console=err_console, disable=not enabled)
        self.task = self.bar.add_task(description, total=total_steps, completed=start_step, rate="", info="")
        self.t_last = time.time()
        self.images = 0

    def __enter__(self) -> "TrainProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def update(self, steps: int, images: int, **scalars: float) -> None:
        self.images += images
        now = time.time()
        rate = self.images / max(now - self.t_last, 1e-9)
        info = " ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        self.bar.update(self.task, advance=steps, rate=f"{rate:.1f} img/s", info=info)
        if now - self.t_last > 10:
            self.t_last, self.images = now, 0


# ----------------------------------------------------------------------------------------------------------
# Resumable data order.


class EpochBatchSampler(torch.utils.data.Sampler):
    """This rank's batches of one epoch, resumable mid-epoch without loading the skipped samples.

    Epoch e visits the items in the order of a permutation seeded by (seed, e) (in order without shuffle),
    cut into global batches of `batch_size` (an incomplete last batch is dropped); rank r of W takes the r-th
    contiguous share of every global batch. `start` skips the epoch's first `start` global batches.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int, epoch: int, start: int = 0,
                 shuffle: bool = True, d: Dist | None = None) -> None:
        d = d or Dist()
        if num_items < batch_size:
            raise InputError(f"only {num_items} training item(s), fewer than one batch of {batch_size}; "
                             "lower --batch-size or add data.")
        self.num_batches = num_items // batch_size
        self.local = split_batch(batch_size, d)
        self.batch_size, self.rank, self.start = batch_size, d.rank, start
        if shuffle:
            self.order = np.random.default_rng([seed, epoch]).permutation(num_items).tolist()
        else:
            self.order = list(range(num_items))

    def __len__(self) -> int:
        return max(self.num_batches - self.start, 0)

    def __iter__(self):
        for b in range(self.start, self.num_batches):
            first = b * self.batch_size + self.rank * self.local
            yield self.order[first:first + self.local]


def resumable_batches(dataset: torch.utils.data.Dataset, batch_size: int, *, seed: int, epoch: int = 0,
                      position: int = 0, workers: int = 0, d: Dist | None = None, shuffle: bool = True,
                      pin_memory: bool = False):
    """Endless `(epoch, position, batch)`: `position` counts the global batches of `epoch` consumed so far,
    this one included. Save both in the training state; passing them back continues with the next batch.
    Calls `dataset.set_epoch(epoch)` (when it has one) before each epoch; workers are not persistent, so
    they see it. Each epoch's loader has its own seeded generator: creating an iterator never draws from the
    global RNG (a resumed run must see the same random stream as a straight one)."""
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        sampler = EpochBatchSampler(len(dataset), batch_size, seed=seed, epoch=epoch, start=position,
                                    shuffle=shuffle, d=d)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                            persistent_workers=False, generator=torch.Generator().manual_seed(epoch))
        for batch in loader:
            position += 1
            yield epoch, position, batch
        epoch, position = epoch + 1, 0


# ----------------------------------------------------------------------------------------------------------
# Ctrl-C between steps.


class StopRequest:
    """`with StopRequest() as stop:` the first Ctrl-C (SIGINT) only sets `stop.requested`, so the loop can
    finish its step, save a consistent state and leave; a second Ctrl-C raises KeyboardInterrupt at once.
    Outside the main thread (no signal handlers there) it is inert. The runner agrees across ranks (`any_ranks`)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
