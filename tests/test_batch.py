"""pipelines/batch.py: the many-inputs loop of invert and text-edit -- streamed items, batches of consecutive
inputs, failures per item or per batch, outputs written as each batch is done, output names claimed once, existing
outputs refused, replaced (force) or skipped (skip_existing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgedit_cli.errors import InputError, OutputExistsError
from bgedit_cli.pipelines.batch import OutputNames, Source, run_batches


class Job:
    """Doubles numbers read from the file names; `bad-*` fails to prepare, a batch holding 13 fails to process,
    14 fails to write. Records the order of the calls and the values written; its output is `OUT/<name>.out`."""

    def __init__(self, out: Path = Path("out")) -> None:
        self.calls: list[tuple] = []
        self.written: dict[int, int] = {}
        self.out = out

    def outputs(self, source: Source) -> tuple[str, dict]:
        return source.path.name, {"value": self.out / f"{source.path.name}.out"}

    def prepare(self, source: Source, outputs: dict) -> int:
        self.calls.append(("prepare", source.path.name))
        if source.path.name.startswith("bad"):
            raise InputError(f"{source.path}: not a number")
        return int(source.path.name)

    def process(self, batch: list[int]) -> list[int]:
        self.calls.append(("process", tuple(batch)))
        if 13 in batch:
            raise InputError("unlucky batch")
        return [2 * x for x in batch]

    def write(self, item: int, result: list[int], index: int) -> None:
        self.calls.append(("write", item))
        if item == 14:
            raise OutputExistsError("14.png already exists")
        self.written[item] = result[index]


def sources(*names: str):
    return (Source(Path(n)) for n in names)  # a generator: consumed as the loop goes


def test_batches_stream_and_write_as_they_go():
    job, progress = Job(), []
    report = run_batches(job, sources("1", "2", "3", "4", "5"), batch_size=2, progress=progress.append)
    assert job.written == {1: 2, 2: 4, 3: 6, 4: 8, 5: 10} and report.failed == []
    assert report.done == [{"input": n, "value": str(Path("out") / f"{n}.out")} for n in ("1", "2", "3", "4", "5")]
    # A batch is processed and written before the next items are even read (constant memory, early outputs).
    assert job.calls == [("prepare", "1"), ("prepare", "2"), ("process", (1, 2)), ("write", 1), ("write", 2),
                         ("prepare", "3"), ("prepare", "4"), ("process", (3, 4)), ("write", 3), ("write", 4),
                         ("prepare", "5"), ("process", (5,)), ("write", 5)]
    assert progress == [2, 2, 1]


def test_failures_are_per_item_or_per_batch():
    job, failures = Job(), []
    report = run_batches(job, sources("1", "bad-a", "13", "2", "14", "3"), batch_size=2, on_failure=failures.append)
    # Batches are consecutive inputs, a failed one leaves a hole: (1, bad-a) -> (1,), (13, 2) fails, (14, 3).
    assert [d["input"] for d in report.done] == ["1", "3"]
    assert [(f.input, f.error) for f in report.failed] == [
        ("bad-a", "bad-a: not a number"), ("13", "unlucky batch"), ("2", "unlucky batch"),
        ("14", "14.png already exists")]
    assert failures == report.failed  # reported as they happen


def test_batch_size_must_be_positive():
    with pytest.raises(InputError, match="--batch-size"):
        run_batches(Job(), sources("1"), batch_size=0)


def test_output_names(tmp_path):
    names = OutputNames()
    names.claim(Path("a/x.png"), "x", [tmp_path / "x.png"])
    with pytest.raises(InputError, match="same name stem 'x'"):
        names.claim(Path("b/x.jpg"), "x", [tmp_path / "x2.png"])
    with pytest.raises(InputError, match="another input writes"):
        names.claim(Path("y.png"), "y", [tmp_path / "x.png"])


def test_existing_outputs_refused_replaced_or_skipped(tmp_path):
    (tmp_path / "2.out").write_bytes(b"")
    report = run_batches(Job(tmp_path), sources("1", "2", "3"), batch_size=2)
    assert [d["input"] for d in report.done] == ["1", "3"] and report.skipped == []
    assert [f.input for f in report.failed] == ["2"] and "--force" in report.failed[0].error
    job = Job(tmp_path)
    report = run_batches(job, sources("1", "2", "3"), batch_size=2, force=True)
    assert [d["input"] for d in report.done] == ["1", "2", "3"] and not report.failed
    job = Job(tmp_path)
    (tmp_path / "1.out").write_bytes(b"")
    report = run_batches(job, sources("1", "2", "3"), batch_size=2, skip_existing=True)
    assert [d["input"] for d in report.skipped] == ["1", "2"] and [d["input"] for d in report.done] == ["3"]
    assert job.written == {3: 6}
