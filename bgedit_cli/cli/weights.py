"""`bgedit weights fetch [NAME...] [--all]`: the auxiliary weight files `bgedit doctor` lists, from their publishers
(or a mirror, or a file obtained elsewhere), hash-checked, resumable, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (ForceOpt, JsonOpt, QuietOpt, TransferProgress, cli_command, err_console,
                                   print_json)

weights_app = typer.Typer(help="Auxiliary pretrained weights (CLIP, LPIPS AlexNet, FID/KID Inception, MoCo).",
                          no_args_is_help=True, epilog="Example: bgedit weights fetch --all")

MirrorOpt = Annotated[Optional[str], typer.Option(
    "--mirror", envvar="BGEDIT_MIRROR", help="base URL serving the publishers' file names (e.g. a cluster's "
                                             "mirror, or file:///shared/weights); default: $BGEDIT_MIRROR")]


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
    from bgedit_cli.weights import REGISTRY, fetch_many

    if all_ == bool(names):
        raise typer.BadParameter(f"give NAME... ({', '.join(REGISTRY)}) or --all, not both or neither.")
    if from_file is not None and (all_ or len(names) != 1):
        raise typer.BadParameter("--from installs one file: give exactly one NAME.")

    def show(row: dict) -> None:
        if not quiet and not json_out:
            err_console.print(f"{row['name']}: {row['status']} {row['path']} (published {row['published_hash']} "
                              "verified)")

    with TransferProgress(quiet or json_out) as bar:
        report = fetch_many(list(REGISTRY) if all_ else names, folder=folder, mirror=mirror, from_file=from_file,
                            force=force, progress=bar.callback, on_done=show)
    if json_out:
        print_json({"files": report.done, "failed": report.failed})
    for f in report.failed:
        print(f"Error: {f['name']}: {f['error']}", file=sys.stderr)
    if report.failed:
        raise typer.Exit(1)

weights_app.command("fetch")(fetch)
