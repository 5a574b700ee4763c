"""`bgedit train <stage>`: one training command per stage, each in its own module (cli/train_<stage>.py), and
`bgedit train all` (cli/train_all.py), which runs a recipe's stages in order."""

from __future__ import annotations

import typer

from bgedit_cli.cli.train_all import train_all
from bgedit_cli.cli.train_clip import train_clip
from bgedit_cli.cli.train_generator import train_generator
from bgedit_cli.cli.train_inversion import train_inversion
from bgedit_cli.cli.train_segmenter import train_segmenter
from bgedit_cli.cli.train_text import train_text

train_app = typer.Typer(help="Train the networks of a model bundle, stage by stage.", no_args_is_help=True,
                        epilog="Example: bgedit train segmenter --data scenes/ --model bundle/ --preset demo")

train_app.command("segmenter")(train_segmenter)
train_app.command("generator")(train_generator)
train_app.command("inversion")(train_inversion)
train_app.command("clip")(train_clip)
train_app.command("text")(train_text)
train_app.command("all")(train_all)
