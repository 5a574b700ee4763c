"""`bgedit bundle install SRC`, `bgedit bundle show [NAME|PATH]`, `bgedit bundle export SRC DST`: the installed
model bundles (bgedit_cli.bundle) and fp16 exports of a bundle's inference files (pipelines/bundle_export.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import ForceOpt, JsonOpt, QuietOpt, cli_command, err_console, print_json

bundle_app = typer.Typer(
    help="Model bundles: install one as the default (or under a name), show what one holds, export it in fp16.",
    epilog="Example: bgedit bundle install models/demo && bgedit bundle show",
    no_args_is_help=True,
)


@cli_command
def install(
    src: Annotated[Path, typer.Argument(help="model bundle folder (at least generator.safetensors)")],
    name: Annotated[str, typer.Option("--name", help="install as $BGEDIT_HOME/models/NAME; `default` is what "
                                      "commands use without --model")] = "default",
    copy: Annotated[bool, typer.Option("--copy", help="copy the .safetensors files and MODEL_CARD.md instead of "
                                       "linking to SRC")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace an existing bundle of that name")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Install a model bundle: make $BGEDIT_HOME/models/NAME a symlink to SRC (or a copy with --copy).

    Checks SRC first: a folder with generator.safetensors, every .safetensors in it with a readable bgedit header.
    An existing bundle of that name is replaced only with --force (a link to SRC already is a no-op).

    Example: bgedit bundle install models/demo
    """
    from bgedit_cli.pipelines.bundles import install as install_bundle

    done = install_bundle(src, name, copy=copy, force=force)
    if json_out:
        print_json(done.to_dict())
    elif quiet:
        return
    elif not done.changed:
        err_console.print(f"{done.path} already links to {done.source}; nothing to do.")
    else:
        how = f"a copy of {done.source}" if copy else f"a link to {done.source}"
        err_console.print(f"Installed {done.path} as {how} ({len(done.files)} networks: "
                          f"{', '.join(f.name for f in done.files)})"
                          + (". Commands without --model now use it." if name == "default" else
                             f"; use it with --model {done.path}."))


@cli_command
def show(
    bundle: Annotated[Optional[str], typer.Argument(
        help="an installed bundle's name or a bundle folder", show_default="default")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List a bundle's networks: present or missing, kind, size and a short sha256 of each file.

    Example: bgedit bundle show models/demo --json | jq -r '.files[] | select(.present | not) | .name'
    """
    from bgedit_cli.pipelines.bundles import inspect, locate

    report = inspect(locate(bundle), hashes=True)
    if json_out:
        print_json(report.to_dict())
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    title = f"Bundle {report.path}" + (f" -> {report.link}" if report.link else "")
    table = Table(title=title, title_justify="left")
    for col in ("network", "status", "kind", "size", "sha256"):
        table.add_column(col, overflow="fold", justify="right" if col == "size" else "left")
    for f in report.files:
        status = ("[red]unreadable[/] " + f.error) if f.error else "[green]present[/]" if f.present \
            else "[yellow]missing[/]"
        size = f"{f.bytes / 2**20:.1f} MiB" if f.bytes is not None else ""
        table.add_row(f.name, status, f.kind or "", size, (f.sha256 or "")[:12])
    console.print(table)
    if report.model_card:
        console.print(f"Model card: {report.model_card}")


@cli_command
def export(
    src: Annotated[Path, typer.Argument(help="trained bundle folder")],
    dst: Annotated[Path, typer.Argument(help="output folder (e.g. models/demo)")],
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="probe images from this dataset's validation split", show_default="the generator's samples")
    ] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a bundle's inference files, each in fp16 where its output agrees with fp32 (else fp32).

    Agreement of the fp16-rounded network with the original on 16 probe images: generator and inversion by PSNR
    (>= 40 dB), segmenter by pixels of the same class (>= 99.5%), CLIP and text by output cosine (>= 0.999).
    Hashes linking the files (inversion and text to the generator, text to the CLIP) are updated to the exported
    files. Run folders, training states and the model card are not copied.

    Example: bgedit bundle export runs/demo-bundle models/demo --data scenes/
    """
    from bgedit_cli.pipelines.bundle_export import export_bundle

    def progress(name: str) -> None:
        if not quiet and not json_out:
            err_console.print(f"checking {name} in fp16 ...")

    report = export_bundle(src, dst, data=data, force=force, progress=progress)
    if json_out:
        print_json(report.to_dict())
    elif not quiet:
        for f in report.files:
            relinked = f" (re-linked {', '.join(f.relinked)})" if f.relinked else ""
            err_console.print(f"{f.name:20s} {f.dtype:8s} {f.bytes / 2**20:7.2f} MiB  {f.measure} {f.value:.5g}"
                              + relinked)
        err_console.print(f"Wrote {len(report.files)} networks ({report.total_bytes / 2**20:.2f} MiB) to {dst}.")


bundle_app.command("install")(install)
bundle_app.command("show")(show)
bundle_app.command("export")(export)
