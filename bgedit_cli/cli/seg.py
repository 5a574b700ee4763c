"""`bgedit seg colorize|stats`: look at ADE20K segmentation maps (index or palette PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bgedit_cli.cli.common import ForceOpt, JsonOpt, QuietOpt, cli_command, err_console, print_json

seg_app = typer.Typer(help="Segmentation maps: colorize and count classes (ADE20K ids 0..150, 255 = ignore).",
                      no_args_is_help=True, epilog="Example: bgedit seg colorize inv/lake.seg.png lake-classes.png")

SegArg = Annotated[Path, typer.Argument(help="seg map: index PNG (ids 0..150, 255 = ignore) or ADE20K palette RGB")]


@seg_app.command("colorize")
@cli_command
def colorize(
    src: SegArg,
    out: Annotated[Path, typer.Argument(help="output PNG in the ADE20K palette (ignore = white)")],
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw a segmentation map in the ADE20K palette.

    Example: bgedit seg colorize inv/lake.seg.png lake-classes.png
    """
    from bgedit_cli.pipelines.seg import colorize_file

    colorize_file(src, out, force=force)
    if not quiet:
        err_console.print(f"Wrote {out}.")


@seg_app.command("stats")
@cli_command
def stats(src: SegArg, json_out: JsonOpt = False) -> None:
    """Pixel count and fraction of every class in a map, most frequent first (fractions of all pixels).

    Example: bgedit seg stats inv/lake.seg.png --json
    """
    from bgedit_cli.pipelines.seg import seg_stats

    stats = seg_stats(src)
    if json_out:
        print_json(stats.to_dict())
        return
    typer.echo(f"{src}: {stats.width}x{stats.height}, {len(stats.classes)} classes, {stats.ignore_pixels} ignore "
               f"pixels ({stats.ignore_pixels / stats.pixels:.2%})")
    for c in stats.classes:
        typer.echo(f"{c.id:4d}  {c.name:<20s} {c.pixels:>10d}  {c.fraction:7.2%}")
