"""`bgedit runs plot RUN... --out FILE`: a metric's curve from training runs' logs (bgedit_cli/training/plots.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import ForceOpt, QuietOpt, cli_command, err_console

runs_app = typer.Typer(help="Training runs (BUNDLE/runs/<stage>-<time>/): plot their logs.", no_args_is_help=True,
                       epilog="Example: bgedit runs plot bundle/runs/generator-20261127-081028 --out swd.png")


@cli_command
def plot(
    runs: Annotated[list[Path], typer.Argument(help="run folders (or their log.jsonl)", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="output PNG")],
    metric: Annotated[str, typer.Option("--metric", help="log key: swd (its levels and swd/avg), val/miou, ...")
                      ] = "swd",
    x: Annotated[str, typer.Option("--x", help="minutes (wall clock, resumed sessions included), step or kimg")
                 ] = "minutes",
    label: Annotated[Optional[list[str]], typer.Option("--label", help="name of each run, in order (several "
                                                       "runs)", show_default="the run folder's name")] = None,
    floor: Annotated[Optional[float], typer.Option("--floor", help="a dashed horizontal line, e.g. SWD's real vs "
                                                   "real value")] = None,
    mark: Annotated[Optional[list[str]], typer.Option("--mark", help="X=TEXT: a vertical line at X, labelled")
                    ] = None,
    title: Annotated[Optional[str], typer.Option("--title", show_default="the metric's")] = None,
    xlabel: Annotated[Optional[str], typer.Option("--xlabel", show_default="the x key's")] = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Plot a metric of runs' logs against wall-clock minutes (or steps) as a PNG: one run with every part of
    the metric (SWD per level and its average), several runs with one line each.

    Example: bgedit runs plot bundle/runs/generator-20261127-081028 --out swd.png --floor 25 --mark "60=budget"
    """
    from bgedit_cli.training.plots import plot_runs

    marks = []
    for m in mark or []:
        at, sep, text = m.partition("=")
        try:
            marks.append((float(at), text if sep else ""))
        except ValueError:
            raise typer.BadParameter(f"expected X=TEXT with a number X, got {m!r}.", param_hint="--mark") from None
    series = plot_runs(runs, out, metric=metric, x=x, labels=label or (), title=title, xlabel=xlabel, floor=floor,
                       marks=marks, force=force)
    if not quiet:
        err_console.print(f"Wrote {out} ({', '.join(s.name for s in series)}).")


runs_app.command("plot")(plot)
