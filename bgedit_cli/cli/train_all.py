"""`bgedit train all --recipe FILE --data DIR --model BUNDLE`: every stage of a recipe, in order, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import DeviceOpt, ForceOpt, JsonOpt, QuietOpt, cli_command, err_console, print_json
from bgedit_cli.cli.train_options import TimeLimitOpt


@cli_command
def train_all(
    recipe: Annotated[Path, typer.Option("--recipe", help="recipe file (TOML): the data step and the stages with "
                                                          "their options, e.g. recipes/demo.toml")],
    data: Annotated[Path, typer.Option(
        "--data", help="dataset folder: the recipe's data step makes it unless it holds a dataset")],
    model: Annotated[Path, typer.Option("--model", help="bundle folder the stages write (and read)")],
    only: Annotated[Optional[str], typer.Option(
        "--only", help="comma-separated steps to run (data and stage names), in the recipe's order")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print each step's command line; train nothing")] = False,
    time_limit: TimeLimitOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a bundle from a recipe: the data step, then each stage through its trainer, printing the equivalent
    `bgedit train ...` command of each. A finished stage is skipped and an interrupted one continues (--resume),
    so running the command again continues where it stopped. --time-limit applies to each stage; --force
    restarts a stage whose earlier run has other settings.

    Example: bgedit train all --recipe recipes/demo.toml --data scenes/ --model bundle/ --dry-run
    """
    from bgedit_cli.training.recipe import load_recipe, plan_recipe, plan_summary, run_recipe

    wanted = [s.strip() for s in only.split(",") if s.strip()] if only is not None else None
    steps = plan_recipe(load_recipe(recipe), data, model, only=wanted, time_limit_min=time_limit, device=device)
    if dry_run:
        plan = plan_summary(steps)
        if json_out:
            print_json({"recipe": str(recipe), "steps": plan})
        else:
            typer.echo("\n".join(step["command"] for step in plan))
        return
    report = (lambda line: None) if quiet else (lambda line: err_console.print(line, markup=False, highlight=False,
                                                                                soft_wrap=True))  # copyable lines
    summary = run_recipe(steps, force=force, progress=not quiet, report=report)
    if json_out:
        print_json({"recipe": str(recipe), **summary})
    elif not quiet:
        err_console.print("All steps finished." if summary["finished"] else
                          "Stopped early: run the same command again to continue.", markup=False)
