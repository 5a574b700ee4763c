"""Shared CLI pieces: error handling, option aliases, console output, progress (bars, `TransferProgress`).

Device parsing lives in `bgedit_cli.runtime` (trainers use it too); that module imports torch, so commands import
it inside their function bodies and `bgedit --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from bgedit_cli.console import err_console
from bgedit_cli.errors import BgeditError, one_line

F = TypeVar("F", bound=Callable[..., Any])

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="auto (bf16 on CUDA and on CPUs measured fast at bf16, else fp32), fp32 or bf16")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]

# Options of the commands over many files (invert, text-edit).
FilesFromOpt = Annotated[Optional[Path], typer.Option(
    "--files-from", metavar="FILE|-", help="also read input paths from FILE (- for stdin): one per line, or "
    "NUL-separated (find -print0); read as the work goes, for lists of any length")]
SkipExistingOpt = Annotated[bool, typer.Option(
    "--skip-existing", help="skip inputs whose outputs all exist (continue an interrupted run); an input with "
    "only some of them is done again")]

# Options of the commands that run a model bundle (invert, mix-style, mix-content).
ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="model bundle folder (default: "
                                                  "$BGEDIT_HOME/models/default)")]
RefineStepsOpt = Annotated[int, typer.Option("--steps", min=0, help="HyperStyle refinement steps")]
GeneratorOpt = Annotated[Optional[Path], typer.Option("--generator", help="generator file instead of the bundle's")]
InversionOpt = Annotated[Optional[Path], typer.Option("--inversion", help="inversion file instead of the bundle's")]
SegmenterOpt = Annotated[Optional[Path], typer.Option("--segmenter", help="segmenter file instead of the bundle's")]

# Option every `bgedit train <stage>` command takes (the others: cli/train_options.py).
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="continue this stage's latest run in the bundle (runs/<stage>-<time>/state.safetensors)")]


def cli_command(fn: F) -> F:
    """Turn BgeditErrors into one `Error: ...` line on stderr and exit 1 (BGEDIT_DEBUG=1 re-raises)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BgeditError as exc:
            if os.environ.get("BGEDIT_DEBUG") == "1":
                raise
            message = one_line(exc)
            print(f"Error: {message}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("Error: interrupted.", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def report_training(summary: dict[str, Any], json_out: bool, quiet: bool, line: Callable[[dict], str]) -> None:
    """Print a training summary: JSON on stdout with --json, else `line(summary)` on stderr unless --quiet.
    Under torchrun only rank 0 reports."""
    if not summary["is_main"]:
        return
    if json_out:
        print_json(summary)
    elif not quiet:
        err_console.print(line(summary))


def require_inputs(paths: list[Path] | None, files_from: Path | None) -> None:
    """A many-inputs command (invert, text-edit) given no input at all: a usage error (exit 2)."""
    if not paths and files_from is None:
        raise typer.BadParameter("give input files as arguments or with --files-from.", param_hint="IMAGES")


def report_batch(report: Any, d: Any, *, json_out: bool, quiet: bool, result: dict[str, Any], message: str) -> None:
    """Print a many-inputs command's result (a pipelines.batch.BatchReport): `result` plus its outputs, skipped
    and failed inputs as JSON with --json, else `message` on stderr unless --quiet or something failed (stderr
    then holds just the `Error:` lines); exit 1 when any input failed. Under torchrun the report is every rank's:
    rank 0 alone prints, the failures too (one process prints them as they happen), and its exit code covers
    every rank (the others exit 0: one that exited 1 first would have torchrun stop rank 0 before it printed)."""
    if d.is_main:
        if d.enabled:
            for failure in report.failed:
                print_failure(failure)
        if json_out:
            print_json({**result, "outputs": report.done, "skipped": report.skipped,
                        "failed": [f.to_dict() for f in report.failed]})
        elif not quiet and not report.failed:
            err_console.print(message)
    if report.failed and d.is_main:
        raise typer.Exit(1)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def print_failure(failure: Any) -> None:
    """One `Error: ...` line on stderr for an input that failed among many (a pipelines.batch.Failure)."""
    print(f"Error: {failure.error}", file=sys.stderr)


def make_progress(quiet: bool = False):
    """A rich progress bar on stderr; `--quiet` disables it. Use as a context manager."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, disable=quiet, transient=True)


class StageProgress:
    """Bars on stderr for a pipeline's `progress(stage, done, total)` callback, one per stage. They appear with the
    first report (under torchrun the pipelines report on rank 0 only) and vanish at the end. `disable`: none at all
    (--quiet); a stage whose known total is below `min_total` gets none (a single input needs no bar)."""

    def __init__(self, disable: bool = False, min_total: int = 0) -> None:
        self.disable, self.min_total = disable, min_total
        self.bar: Any = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.disable or (total is not None and total < self.min_total):
            return
        if self.bar is None:
            self.bar = make_progress()
            self.bar.start()
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


class TransferProgress:
    """Rich bars on stderr, one per (item, stage): bytes with size, speed and ETA for downloading, verifying and
    unpacking; a file count for "checking ..." stages. `callback(label)` gives one item's `download.Progress`."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn,
                                   TextColumn, TimeRemainingColumn, TransferSpeedColumn)
        from rich.text import Text

        class Amount(ProgressColumn):  # bytes for transfers, "done/total" for file counts
            def __init__(self, for_bytes: ProgressColumn, for_counts: ProgressColumn | None) -> None:
                super().__init__()
                self.for_bytes, self.for_counts = for_bytes, for_counts

            def render(self, task):
                if task.fields.get("unit") == "bytes":
                    return self.for_bytes.render(task)
                return self.for_counts.render(task) if self.for_counts is not None else Text("")

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), Amount(DownloadColumn(), MofNCompleteColumn()),
                            Amount(TransferSpeedColumn(), None), TimeRemainingColumn(), console=err_console,
                            disable=quiet, transient=True)
        self.tasks: dict[tuple[str, str], int] = {}

    def __enter__(self) -> "TransferProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def callback(self, label: str):
        def report(stage: str, done: int, total: int | None) -> None:
            key = (label, stage)
            if key not in self.tasks:
                unit = "files" if stage.startswith("checking") else "bytes"
                self.tasks[key] = self.bar.add_task(f"{label} {stage}", total=total, unit=unit)
            self.bar.update(self.tasks[key], completed=done, total=total)

        return report
