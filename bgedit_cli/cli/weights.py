"""`bgedit weights fetch [NAME...] [--all]`: the auxiliary weight files `bgedit doctor` lists, from their publishers
(or a mirror, or a file obtained elsewhere), hash-checked, resumable, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import ForceOpt, JsonOpt, QuietOpt, cli_command, err_console, print_json

weights_app = typer.Typer(help="Auxiliary pretrained weights (CLIP, LPIPS AlexNet, FID/KID Inception, MoCo).",
                          no_args_is_help=True, epilog="Example: bgedit weights fetch --all")

MirrorOpt = Annotated[Optional[str], typer.Option(
    "--mirror", envvar="BGEDIT_MIRROR", help="base URL serving the publishers' file names (e.g. a cluster's "
                                             "mirror, or file:///shared/weights); default: $BGEDIT_MIRROR")]


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


@cli_command
def fetch(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="names as `bgedit doctor` lists them: clip, alexnet, inception, moco", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="every file bgedit can use")] = False,
    folder: Annotated[Optional[Path], typer.Option(
        "--dir", help="where to put the files (default: $BGEDIT_HOME/weights, where every command looks)")] = None,
    mirror: MirrorOpt = None,
    from_file: Annotated[Optional[Path], typer.Option(
        "--from", help="install this file (downloaded elsewhere) after checking its hash; one NAME")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download the publishers' weight files, check their published hashes, put them where bgedit looks.

    A partial download is resumed on the next run; a file already in place with the right hash is kept.

    Example: bgedit weights fetch alexnet inception  (or: --all; --mirror URL; NAME --from FILE)
    """
    from bgedit_cli.errors import BgeditError
    from bgedit_cli.weights import REGISTRY, fetch_weights, get_spec

    if all_ == bool(names):
        raise typer.BadParameter(f"give NAME... ({', '.join(REGISTRY)}) or --all, not both or neither.")
    specs = list(REGISTRY.values()) if all_ else [get_spec(n) for n in names]
    if from_file is not None and len(specs) != 1:
        raise typer.BadParameter("--from installs one file: give exactly one NAME.")

    done, failed = [], []
    with TransferProgress(quiet or json_out) as bar:
        for spec in specs:
            try:
                row = fetch_weights(spec, folder=folder, mirror=mirror, from_file=from_file, force=force,
                                    progress=bar.callback(spec.key))
            except BgeditError as exc:
                failed.append({"name": spec.key, "error": " ".join(str(exc).split())})
                continue
            done.append(row)
            if not quiet and not json_out:
                err_console.print(f"{row['name']}: {row['status']} {row['path']} (published {row['published_hash']} "
                                  "verified)")
    if json_out:
        print_json({"files": done, "failed": failed})
    for f in failed:
        print(f"Error: {f['name']}: {f['error']}", file=sys.stderr)
    if failed:
        raise typer.Exit(1)


weights_app.command("fetch")(fetch)
