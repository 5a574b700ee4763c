"""`bgedit train <stage>`: one training command per stage, each in its own module (cli/train_<stage>.py)."""

from __future__ import annotations

import typer

train_app = typer.Typer(help="Train the networks of a model bundle, stage by stage.", no_args_is_help=True)

