"""The loop of the commands that take many inputs (`invert`, `text-edit`): claim each item's outputs, prepare
it, process the items in batches, write each item's outputs as soon as its batch is done, and report what was
done, skipped and failed.

    report = run_batches(job, sources, batch_size=8, progress=bar_advance, on_failure=print_error)
    report.done      # [{"input": "a.png", <its outputs, as job.outputs named them>}, ...] in input order
    report.failed    # [Failure(input="b.png", error="b.png: not a readable image ..."), ...]
    report.skipped   # with skip_existing: the inputs whose outputs all existed, like `done`

A job supplies four steps; a `BgeditError` in one of them fails only what that step was about:

    stem, outputs = job.outputs(source)        # the files it writes, {"image": Path, ...} (claimed: see below)
    prepared = job.prepare(source, outputs)    # read the input: this item fails
    result = job.process([prepared, ...])      # one batch through the networks: the batch's items fail
    job.write(prepared, result, i)             # item i of the batch's result to its files: this item fails

Claims: a second input with the same name stem, or one whose output another input writes, fails (the outputs
would collide); so does an output that exists, unless `force` (then it is replaced) or `skip_existing` (an input
whose outputs all exist is skipped; one with only some of them, which an interrupted run leaves, is done again).

Batches are the consecutive runs of `batch_size` inputs (an input that fails or is skipped leaves its batch one
smaller), so which inputs share a batch, and with it every output byte, does not depend on anything else.
Under torchrun (`shard`), rank r of N does the batches b with b % N == r and claims every input (so the
collisions are the same as in one process); `gather_report` then gives every rank the whole report.

`input_paths(ARGS, FILES_FROM, shard)` streams a command's inputs (its arguments, then a `--files-from` list);
`stage_progress` turns the loop's progress(n) into a command's progress(stage, done, total), on rank 0.

Items are consumed from any iterable (a list, a generator reading a file list) as the loop goes, and at most one
batch of inputs and results is held at a time: beyond the report and the claimed output names (a line per
input), memory does not grow with the number of inputs, and an item's files exist as soon as its batch is done.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Protocol, TypeVar

from bgedit_cli.distributed import Dist, all_gather_objects
from bgedit_cli.errors import BgeditError, InputError, one_line
from bgedit_cli.fileio import check_writable

P = TypeVar("P")  # a prepared item
R = TypeVar("R")  # what processing a batch returns
Outputs = dict[str, Any]  # an item's output files by name: a Path or a list of Paths


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
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The input index of each entry of done, failed and skipped (to merge the ranks' reports in input order).
    index: dict[str, list[int]] = dataclasses.field(
        default_factory=lambda: {"done": [], "failed": [], "skipped": []}, repr=False)

    def add(self, kind: str, position: int, entry: Any) -> None:
        getattr(self, kind).append(entry)
        self.index[kind].append(position)


class BatchJob(Protocol[P, R]):
    def outputs(self, source: Source) -> tuple[str, Outputs]: ...

    def prepare(self, source: Source, outputs: Outputs) -> P: ...

    def process(self, batch: list[P]) -> R: ...

    def write(self, item: P, result: R, index: int) -> None: ...


def output_paths(outputs: Outputs) -> list[Path]:
    """The files of an Outputs dict, flattened."""
    paths: list[Path] = []
    for value in outputs.values():
        paths.extend(value if isinstance(value, list) else [value])
    return paths


def _strings(outputs: Outputs) -> dict[str, Any]:
    return {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in outputs.items()}


def run_batches(job: BatchJob[P, R], sources: Iterable[Source], *, batch_size: int, force: bool = False,
                skip_existing: bool = False, shard: Dist | None = None,
                progress: Callable[[int], None] | None = None,
                on_failure: Callable[[Failure], None] | None = None) -> BatchReport:
    """Run `job` over `sources` (see the module doc). `shard`: this process's place under torchrun (its report
    holds its own inputs only; `gather_report` merges them). `progress(n)`: n more of this process's items
    finished (done, skipped or failed); `on_failure(failure)`: called as each failure happens."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: expected 1 or more.")
    shard = shard or Dist()
    report = BatchReport()
    names = OutputNames()

    def fail(position: int, source: Source, exc: BaseException) -> None:
        failure = Failure(str(source.path), one_line(exc))
        report.add("failed", position, failure)
        if on_failure is not None:
            on_failure(failure)

    def finish(batch: list[tuple[int, Source, Outputs, P]]) -> None:
        try:
            result = job.process([item for *_, item in batch])
        except BgeditError as exc:
            for position, source, _, _ in batch:
                fail(position, source, exc)
        else:
            for i, (position, source, outputs, item) in enumerate(batch):
                try:
                    job.write(item, result, i)
                    report.add("done", position, {"input": str(source.path), **_strings(outputs)})
                except BgeditError as exc:
                    fail(position, source, exc)
        if progress is not None:
            progress(len(batch))

    batch: list[tuple[int, Source, Outputs, P]] = []
    for position, source in enumerate(sources):
        mine = owns(shard, position, batch_size)
        try:
            stem, outputs = job.outputs(source)
            names.claim(source.path, stem, output_paths(outputs))
            if mine:
                if skip_existing and all(p.exists() for p in output_paths(outputs)):
                    report.add("skipped", position, {"input": str(source.path), **_strings(outputs)})
                    if progress is not None:
                        progress(1)
                else:
                    for path in output_paths(outputs):
                        check_writable(path, force or skip_existing)
                    batch.append((position, source, outputs, job.prepare(source, outputs)))
        except BgeditError as exc:
            if mine:  # another rank's input fails there, with the same claims
                fail(position, source, exc)
                if progress is not None:
                    progress(1)
        if (position + 1) % batch_size == 0 and batch:  # the end of a batch: done before reading on
            finish(batch)
            batch = []
    if batch:
        finish(batch)
    return report


def owns(shard: Dist, position: int, batch_size: int) -> bool:
    """Whether this rank does input `position`: rank r of N does the batches b (of `batch_size` consecutive
    inputs) with b % N == r."""
    return (position // batch_size) % shard.world_size == shard.rank


def share_size(num_inputs: int, batch_size: int, shard: Dist | None) -> int:
    """How many of `num_inputs` inputs this rank does (its progress bar's total)."""
    shard = shard or Dist()
    return sum(owns(shard, i, batch_size) for i in range(num_inputs))


def merge_reports(reports: Iterable[BatchReport]) -> BatchReport:
    """The ranks' reports as one, in input order."""
    reports = list(reports)
    merged = BatchReport()
    for kind in ("done", "failed", "skipped"):
        entries = [(i, e) for r in reports for i, e in zip(r.index[kind], getattr(r, kind))]
        for position, entry in sorted(entries, key=lambda pair: pair[0]):
            merged.add(kind, position, entry)
    return merged


def gather_report(report: BatchReport, shard: Dist | None) -> BatchReport:
    """Every rank's report merged in input order (a collective under torchrun: every rank must call it; the same
    report without it)."""
    if shard is None or not shard.enabled:
        return report
    return merge_reports(all_gather_objects(report, shard))


def input_paths(paths: Iterable[Path] | None, files_from: Path | None, shard: Dist) -> Iterator[Path]:
    """A command's input paths: `paths` (its arguments), then `files_from`'s list (`-`: stdin), streamed by
    `read_file_list`. The list is checked first: a missing file is an InputError, and so is stdin under torchrun
    (every process reads the whole list)."""
    if files_from is not None and str(files_from) == "-" and shard.enabled:
        raise InputError("--files-from -: under torchrun every process reads the whole list; give a file.")
    if files_from is not None and str(files_from) != "-" and not Path(files_from).is_file():
        raise InputError(f"--files-from {files_from}: no such file.")

    def stream() -> Iterator[Path]:
        yield from paths or []
        if files_from is None:
            return
        if str(files_from) == "-":
            yield from read_file_list(sys.stdin.buffer)
        else:
            with open(files_from, "rb") as f:
                yield from read_file_list(f)

    return stream()


def stage_progress(progress: Callable[[str, int, int | None], None] | None, stage: str, total: int | None,
                   shard: Dist) -> Callable[[int], None] | None:
    """`run_batches`' progress(n) as a command's progress(stage, done, total) (`total` None: not known, a
    streamed list), reported at 0 at once; under torchrun on rank 0 only (its own share)."""
    if progress is None or not shard.is_main:
        return None
    done = 0
    progress(stage, done, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(stage, done, total)

    return advance


PATH_MAX = 4096  # the longest path on Linux: a NUL-separated list has a NUL within its first PATH_MAX + 1 bytes


def read_file_list(stream: BinaryIO, chunk_size: int = 1 << 16) -> Iterator[Path]:
    """The paths of a file list (`--files-from`), read as it goes: NUL-separated (`find -print0`) when a NUL byte
    comes within its first PATH_MAX + 1 bytes, else one per line (a trailing CR is dropped); empty entries are
    skipped."""
    sep = None
    rest = b""

    def paths(entries: list[bytes]) -> Iterator[Path]:
        for entry in entries:
            entry = entry.removesuffix(b"\r") if sep == b"\n" else entry
            if entry:
                yield Path(os.fsdecode(entry))

    while chunk := stream.read(chunk_size):
        rest += chunk
        if sep is None:
            if b"\0" not in rest and len(rest) <= PATH_MAX:
                continue  # not decided yet
            sep = b"\0" if b"\0" in rest[:PATH_MAX + 1] else b"\n"
        *entries, rest = rest.split(sep)
        yield from paths(entries)
    sep = sep or (b"\0" if b"\0" in rest else b"\n")
    yield from paths(rest.split(sep))


class OutputNames:
    """Claims each input's outputs: a second input with the same name stem, or with an output another input
    claimed, is an InputError (the outputs would collide). Names only: whether the files exist is not asked, so
    every process makes the same claims."""

    def __init__(self) -> None:
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
        self.stems.add(stem)
        self.outputs.update(outputs)


def check_out_dir(out: Path, option: str) -> None:
    """An output folder that exists as a file is one InputError (before any work)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: is a file; give a folder for the outputs.")
