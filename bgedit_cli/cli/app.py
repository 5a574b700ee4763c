"""The `bgedit` command: registers one thin module per command."""

from __future__ import annotations

import typer

from bgedit_cli import __version__
from bgedit_cli.cli.bundle import bundle_app
from bgedit_cli.cli.convert import convert
from bgedit_cli.cli.data import data_app
from bgedit_cli.cli.doctor import doctor
from bgedit_cli.cli.evaluate import evaluate
from bgedit_cli.cli.generate import generate
from bgedit_cli.cli.info import info
from bgedit_cli.cli.invert import invert
from bgedit_cli.cli.mix import mix_content, mix_style
from bgedit_cli.cli.runs import runs_app
from bgedit_cli.cli.seg import seg_app
from bgedit_cli.cli.text_edit import text_edit
from bgedit_cli.cli.train import train_app
from bgedit_cli.cli.weights import weights_app

app = typer.Typer(
    name="bgedit",
    help="Edit background and scene images with StyleGAN2: invert, mix style/content, restyle from text.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog="Example: bgedit invert photo.jpg --out inv/ && bgedit text-edit inv/photo.latent.safetensors \"snowy "
           "night\" --out snowy.png",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bgedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """bgedit command-line toolkit."""


app.command("convert")(convert)
app.command("doctor")(doctor)
app.command("evaluate")(evaluate)
app.command("generate")(generate)
app.command("info")(info)
app.command("invert")(invert)
app.command("mix-style")(mix_style)
app.command("mix-content")(mix_content)
app.command("text-edit")(text_edit)
app.add_typer(bundle_app, name="bundle")
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
app.add_typer(seg_app, name="seg")
app.add_typer(train_app, name="train")
app.add_typer(weights_app, name="weights")


def main() -> None:
    app(prog_name="bgedit")
