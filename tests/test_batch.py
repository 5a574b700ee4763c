"""pipelines/batch.py: the many-inputs loop of invert and text-edit -- streamed items, batches, failures per item or
per batch, outputs written as each batch is done, output names claimed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgedit_cli.errors import InputError, OutputExistsError
from bgedit_cli.pipelines.batch import OutputNames, Source, run_batches


class Job:
    """Doubles numbers read from the file names; `bad-*` fails to prepare, a batch holding 13 fails to process,
    14 fails to write. Records the order of the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def prepare(self, source: Source) -> int:
        self.calls.append(("prepare", source.path.name))
        if source.path.name.startswith("bad"):
            raise InputError(f"{source.path}: not a number")
        return int(source.path.name)

    def process(self, batch: list[int]) -> list[int]:
        self.calls.append(("process", tuple(batch)))
        if 13 in batch:
            raise InputError("unlucky batch")
        return [2 * x for x in batch]

    def write(self, item: int, result: list[int], index: int) -> dict:
        self.calls.append(("write", item))
        if item == 14:
            raise OutputExistsError("14.png already exists")
        return {"value": result[index]}


def sources(*names: str):
    return (Source(Path(n)) for n in names)  # a generator: consumed as the loop goes


def test_batches_stream_and_write_as_they_go():
    job, progress = Job(), []
    report = run_batches(job, sources("1", "2", "3", "4", "5"), batch_size=2, progress=progress.append)
    assert [d["value"] for d in report.done] == [2, 4, 6, 8, 10] and report.failed == []
    assert [d["input"] for d in report.done] == ["1", "2", "3", "4", "5"]
    # A batch is processed and written before the next items are even read (constant memory, early outputs).
    assert job.calls == [("prepare", "1"), ("prepare", "2"), ("process", (1, 2)), ("write", 1), ("write", 2),
                         ("prepare", "3"), ("prepare", "4"), ("process", (3, 4)), ("write", 3), ("write", 4),
                         ("prepare", "5"), ("process", (5,)), ("write", 5)]
    assert progress == [2, 2, 1]


def test_failures_are_per_item_or_per_batch():
    job, failures = Job(), []
    report = run_batches(job, sources("1", "bad-a", "13", "2", "14", "3"), batch_size=2, on_failure=failures.append)
    assert [d["input"] for d in report.done] == ["2", "3"]  # batches: (1, 13) fails, (2, 14), (3,)
    assert [(f.input, f.error) for f in report.failed] == [
        ("bad-a", "bad-a: not a number"), ("1", "unlucky batch"), ("13", "unlucky batch"),
        ("14", "14.png already exists")]
    assert failures == report.failed  # reported as they happen


def test_batch_size_must_be_positive():
    with pytest.raises(InputError, match="--batch-size"):
        run_batches(Job(), sources("1"), batch_size=0)


def test_output_names(tmp_path):
    names = OutputNames(force=False)
    names.claim(Path("a/x.png"), "x", [tmp_path / "x.png"])
    with pytest.raises(InputError, match="same name stem 'x'"):
        names.claim(Path("b/x.jpg"), "x", [tmp_path / "x2.png"])
    with pytest.raises(InputError, match="another input writes"):
        names.claim(Path("y.png"), "y", [tmp_path / "x.png"])
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(OutputExistsError):
        names.claim(Path("z.png"), "z", [tmp_path / "z.png"])
    OutputNames(force=True).claim(Path("z.png"), "z", [tmp_path / "z.png"])
