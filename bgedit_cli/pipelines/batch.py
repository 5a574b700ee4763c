"""The loop of the commands that take many inputs (`invert`, `text-edit`): prepare each item, process them in
batches, write each item's outputs as soon as its batch is done, and report what was done and what failed.

    report = run_batches(job, sources, batch_size=8, progress=bar_advance, on_failure=print_error)
    report.done      # [{"input": "a.png", <the outputs job.write returned>}, ...] in input order
    report.failed    # [Failure(input="b.png", error="b.png: not a readable image ..."), ...]

A job supplies three steps; a `BgeditError` in one of them fails only what that step was about:

    prepared = job.prepare(source)             # read the input, check the outputs: this item fails
    result = job.process([prepared, ...])      # one batch through the networks: the batch's items fail
    outputs = job.write(prepared, result, i)   # item i of the batch's result to its files: this item fails

Items are consumed from any iterable (a list, a generator reading a file list, one process's share of the
inputs) as the loop goes, and at most one batch of inputs and results is held at a time: beyond the report and
the claimed output names (a line per input), memory does not grow with the number of inputs, and an item's files
exist as soon as its batch is done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, TypeVar

from bgedit_cli.errors import BgeditError, InputError
from bgedit_cli.fileio import check_writable

P = TypeVar("P")  # a prepared item
R = TypeVar("R")  # what processing a batch returns


@dataclasses.dataclass(frozen=True)
class Source:
    """One input: an image or a latent file, and the seg map given for it (if any)."""

    path: Path
    seg: Path | None = None


@dataclasses.dataclass(frozen=True)
class Failure:
    input: str
    error: str  # one line

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BatchReport:
    done: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failed: list[Failure] = dataclasses.field(default_factory=list)


class BatchJob(Protocol[P, R]):
    def prepare(self, source: Source) -> P: ...

    def process(self, batch: list[P]) -> R: ...

    def write(self, item: P, result: R, index: int) -> dict[str, Any]: ...


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def run_batches(job: BatchJob[P, R], sources: Iterable[Source], *, batch_size: int,
                progress: Callable[[int], None] | None = None,
                on_failure: Callable[[Failure], None] | None = None) -> BatchReport:
    """Run `job` over `sources` (see the module doc). `progress(n)`: n more items finished (done or failed);
    `on_failure(failure)`: called as each failure happens."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: expected 1 or more.")
    report = BatchReport()

    def fail(source: Source, exc: BaseException) -> None:
        failure = Failure(str(source.path), one_line(exc))
        report.failed.append(failure)
        if on_failure is not None:
            on_failure(failure)

    def finish(batch: list[tuple[Source, P]]) -> None:
        try:
            result = job.process([item for _, item in batch])
        except BgeditError as exc:
            for source, _ in batch:
                fail(source, exc)
        else:
            for i, (source, item) in enumerate(batch):
                try:
                    report.done.append({"input": str(source.path), **job.write(item, result, i)})
                except BgeditError as exc:
                    fail(source, exc)
        if progress is not None:
            progress(len(batch))

    batch: list[tuple[Source, P]] = []
    for source in sources:
        try:
            batch.append((source, job.prepare(source)))
        except BgeditError as exc:
            fail(source, exc)
            if progress is not None:
                progress(1)
            continue
        if len(batch) == batch_size:
            finish(batch)
            batch = []
    if batch:
        finish(batch)
    return report


class OutputNames:
    """Claims each input's outputs: a second input with the same name stem, or with an output another input
    claimed, is an InputError (the outputs would collide), and so is an output that exists without `force`."""

    def __init__(self, force: bool) -> None:
        self.force = force
        self.stems: set[str] = set()
        self.outputs: set[Path] = set()

    def claim(self, path: Path, stem: str, outputs: Iterable[Path]) -> None:
        outputs = list(outputs)
        if stem in self.stems:
            raise InputError(f"{path}: another input has the same name stem '{stem}'; its outputs would collide. "
                             "Rename one of them.")
        taken = [str(out) for out in outputs if out in self.outputs]
        if taken:
            raise InputError(f"{path}: another input writes {', '.join(taken)}; give each input its own output.")
        for out in outputs:
            check_writable(out, self.force)
        self.stems.add(stem)
        self.outputs.update(outputs)


def check_out_dir(out: Path, option: str) -> None:
    """An output folder that exists as a file is one InputError (before any work)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: is a file; give a folder for the outputs.")
