"""`bgedit data synth --out DIR`: synthetic landscape scenes in the ADE20K SceneParsing layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import ForceOpt, JsonOpt, QuietOpt, cli_command, err_console, make_progress, print_json

data_app = typer.Typer(help="Datasets: synthetic scenes in the ADE20K layout.", no_args_is_help=True,
                       epilog="Example: bgedit data synth --out scenes/ --num 2000 --resolution 64")


@cli_command
def synth(
    out: Annotated[Path, typer.Option("--out", help="output folder (ADE20K layout: images/, annotations/, ...)")],
    num: Annotated[int, typer.Option("--num", min=1, help="number of scenes")] = 1000,
    resolution: Annotated[int, typer.Option("--resolution", min=16, max=4096, help="image side in pixels")] = 256,
    seed: Annotated[int, typer.Option("--seed", min=0, help="scene i depends only on (seed, i)")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="share of scenes in validation/ (1: all of them, a held-out set)")] = 0.1,
    mixing_pairs: Annotated[int, typer.Option(
        "--mixing-pairs", min=0, help="first M validation scenes get mixing/ and textedit/ ground truth")] = 8,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="processes (default: min(2, CPU count)); output does not depend on it")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render procedural landscapes with their seg maps, captions, factors and style/content-mixing ground truth.

    Example: bgedit data synth --out scenes/ --num 2000 --resolution 64 --seed 0
    """
    from bgedit_cli.data.synth import synthesize

    # The bar starts on the first report, which comes after the worker processes are forked.
    bar, task = make_progress(quiet), None

    def report(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("rendering", total=total)
        bar.update(task, completed=done)

    try:
        summary = synthesize(out, num=num, resolution=resolution, seed=seed, val_fraction=val_fraction,
                             mixing_pairs=mixing_pairs, workers=workers, force=force, progress=report)
    finally:
        bar.stop()
    if json_out:
        print_json(summary)
    elif not quiet:
        err_console.print(f"Wrote {summary['training']} training and {summary['validation']} validation scenes "
                          f"({summary['mixing_images'] + summary['textedit_images']} mixing/text-edit images) "
                          f"to {out} in {summary['seconds']:.1f} s ({summary['scenes_per_s']:.0f} scenes/s).")


data_app.command("synth")(synth)
