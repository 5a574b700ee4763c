"""Scaffolding every training stage shares: run folders, JSON-lines logs, progress, devices, DDP, resume.

A stage's loop reads top to bottom (`# Load data.`, `# Build networks.`, `# Resume.`, `# Train.`,
`# Snapshot.`) and uses these pieces:

- `TrainSetup.create(...)`: rank/world size (torchrun env), device, run folder (rank 0 only), log, seed.
- `RunLog.write(step=..., **scalars)`: one JSON object per line in `RUN/log.jsonl`, flushed at once.
- `TrainProgress`: a rich progress bar on stderr with step, images/s, losses and ETA (rank 0, not --quiet).
- `save_state` / `load_state` (training/state.py): resumable state (networks, optimizers, RNG, step, data
  position) in `RUN/state.safetensors`, written atomically, so Ctrl-C never leaves a broken checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bgedit_cli.bundle import latest_run_dir, new_run_dir
from bgedit_cli.cli.common import err_console
from bgedit_cli.errors import BgeditError, InputError


# ----------------------------------------------------------------------------------------------------------
# Distributed.


@dataclasses.dataclass
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


def train_device(name: str, d: Dist | None = None) -> torch.device:
    from bgedit_cli.cli.common import resolve_device

    dev = resolve_device(name)
    if dev.type == "cuda" and d is not None and d.enabled:
        return torch.device("cuda", d.local_rank)
    return dev


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        x = x.clone()
        dist.all_reduce(x)
        x /= d.world_size
    return x


def any_rank(flag: bool, d: Dist | None) -> bool:
    """True when `flag` is true on any rank (a collective call under DDP: every rank must make it)."""
    if d is None or not d.enabled:
        return flag
    t = torch.tensor([float(flag)])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order; `[obj]` without DDP. Collective: every rank must call it."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def split_batch(batch_size: int, d: Dist) -> int:
    """The per-rank share of a global batch size (which must divide evenly)."""
    if batch_size % d.world_size:
        raise InputError(f"--batch-size {batch_size} must be divisible by the number of processes ({d.world_size}).")
    return batch_size // d.world_size


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


def run_dir_for(bundle: Path, stage: str, resume: bool, d: Dist) -> tuple[Path | None, bool]:
    """(run folder, resuming?) — the latest resumable run with `--resume`, else a new one. Rank 0 decides;
    other ranks get the same path (torchrun ranks share a filesystem)."""
    path: Path | None = None
    resuming = False
    if d.is_main:
        if resume:
            path = latest_run_dir(bundle, stage)
            if path is None:
                raise InputError(f"--resume: no {stage} run with a saved state under {Path(bundle) / 'runs'}; "
                                 "start without --resume.")
            resuming = True
        else:
            path = new_run_dir(bundle, stage)
    if d.enabled:
        box = [str(path) if path else None, resuming]
        dist.broadcast_object_list(box, src=0)
        path, resuming = (Path(box[0]) if box[0] else None), bool(box[1])
    return path, resuming


# ----------------------------------------------------------------------------------------------------------
# Progress.


class TrainProgress:
    """Rich progress on stderr: step/total, images/s, latest losses, ETA. Disabled when quiet or not rank 0."""

    def __init__(self, total_steps: int, start_step: int, *, description: str, enabled: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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


class TrainingInterrupted(BgeditError):
    """Raised after Ctrl-C once the resumable state has been saved."""

    exit_code = 130


def format_hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
            import numpy as np

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
    from torch.utils.data import DataLoader

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
    Outside the main thread (no signal handlers there) it is inert. `stop.check(d)` agrees across ranks."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self) -> "StopRequest":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def check(self, d: Dist | None = None) -> bool:
        """True when any rank got Ctrl-C (a collective call under DDP: every rank must make it)."""
        return any_rank(self.requested, d)


def save_snapshot(net: torch.nn.Module, kind: str, out_path: Path, run_dir: Path, name: str, step: int,
                  provenance: dict[str, Any]) -> None:
    """Write the network to the bundle (`out_path`, replacing it) and to `RUN/snapshots/<name>-<step>.safetensors`."""
    from bgedit_cli.checkpoint import save_network

    save_network(out_path, net, kind=kind, provenance=provenance, force=True)
    save_network(Path(run_dir) / "snapshots" / f"{name}-{step:06d}.safetensors", net, kind=kind,
                 provenance=provenance, force=True)
