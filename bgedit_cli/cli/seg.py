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
    from bgedit_cli.fileio import check_writable
    from bgedit_cli.io import colorize_seg, load_seg, save_png

    check_writable(out, force)
    save_png(out, colorize_seg(load_seg(src)), force=force)
    if not quiet:
        err_console.print(f"Wrote {out}.")


@seg_app.command("stats")
@cli_command
def stats(src: SegArg, json_out: JsonOpt = False) -> None:
    """Pixel count and fraction of every class in a map, most frequent first (fractions of all pixels).

    Example: bgedit seg stats inv/lake.seg.png --json
    """
    import numpy as np

    from bgedit_cli.data.ade20k_classes import CLASS_NAMES, IGNORE_ID
    from bgedit_cli.io import load_seg

    ids = load_seg(src)
    counts = np.bincount(ids.ravel(), minlength=256)
    total = int(ids.size)
    present = [i for i in np.argsort(-counts[: len(CLASS_NAMES)], kind="stable").tolist() if counts[i] > 0]
    classes = [{"id": i, "name": CLASS_NAMES[i], "pixels": int(counts[i]), "fraction": counts[i] / total}
               for i in present]
    ignore = int(counts[IGNORE_ID])
    if json_out:
        print_json({"file": str(src), "width": int(ids.shape[1]), "height": int(ids.shape[0]), "pixels": total,
                    "ignore_pixels": ignore, "ignore_fraction": ignore / total, "classes": classes})
        return
    typer.echo(f"{src}: {ids.shape[1]}x{ids.shape[0]}, {len(classes)} classes, {ignore} ignore pixels "
               f"({ignore / total:.2%})")
    for c in classes:
        typer.echo(f"{c['id']:4d}  {c['name']:<20s} {c['pixels']:>10d}  {c['fraction']:7.2%}")
