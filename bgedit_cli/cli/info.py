"""`bgedit info FILE`: what a bgedit weight or latent file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bgedit_cli.cli.common import JsonOpt, cli_command, print_json


@cli_command
def info(
    file: Annotated[Path, typer.Argument(help="a bgedit .safetensors file")],
    json_out: JsonOpt = False,
) -> None:
    """Show a checkpoint's kind, config, provenance, tensor count and size.

    Example: bgedit info models/demo/segmenter.safetensors --json
    """
    from bgedit_cli.pipelines.bundles import describe_file

    result = describe_file(file)
    if json_out:
        print_json(result.to_dict())
        return
    typer.echo("\n".join([
        f"file         {result.path}", f"kind         {result.kind}", f"format       {result.format_version}",
        f"tensors      {result.num_tensors} ({result.tensor_bytes / 2**20:.2f} MiB)",
        f"config       {json.dumps(result.config, sort_keys=True)}",
        f"provenance   {json.dumps(result.provenance, sort_keys=True)}"]))
