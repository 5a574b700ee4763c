"""Shared CLI pieces: error handling, option aliases, devices, console output, progress."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Optional, TypeVar

import typer
from rich.console import Console

from bgedit_cli.errors import BgeditError, InputError

F = TypeVar("F", bound=Callable[..., Any])

# stderr for humans (progress, messages); stdout stays machine-readable.
err_console = Console(stderr=True, highlight=False)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]

# Options every `bgedit train <stage>` command takes (None = the preset's value).
PRESET_DEFAULT = "the preset's"
PresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", help="tiny, demo or paper-256: resolution, network sizes and training defaults", show_default="demo")]
StepsOpt = Annotated[Optional[int], typer.Option(
    "--steps", min=1, help="total optimizer steps, counted from the start of the run (with --resume too)",
    show_default=PRESET_DEFAULT)]
TrainBatchOpt = Annotated[Optional[int], typer.Option(
    "--batch-size", min=1, help="global batch size, split over processes", show_default=PRESET_DEFAULT)]
SeedOpt = Annotated[Optional[int], typer.Option(
    "--seed", help="seed of every random draw: initialization, data order, flips (and latents, noise)",
    show_default="0")]
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
            message = " ".join(str(exc).split())
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


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    import torch

    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto.")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise InputError(f"--device {name}: not a valid device name (use cuda or cuda:N).") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present.")
        return dev
    raise InputError(f"--device {name}: expected auto, cpu, cuda or cuda:N.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def make_progress(quiet: bool = False):
    """A rich progress bar on stderr; `--quiet` disables it. Use as a context manager."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, disable=quiet, transient=True)
