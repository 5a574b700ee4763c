"""`bgedit convert SRC DST.safetensors`: import a rosinality .pt or NVIDIA .pkl StyleGAN2 generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bgedit_cli.cli.common import ForceOpt, JsonOpt, QuietOpt, cli_command, err_console, print_json


@cli_command
def convert(
    src: Annotated[Path, typer.Argument(help="rosinality .pt or NVIDIA network-snapshot .pkl")],
    dst: Annotated[Path, typer.Argument(help="output .safetensors file")],
    which: Annotated[str, typer.Option("--which", help="g_ema (EMA weights, default) or g (training copy).")] = "g_ema",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import a StyleGAN2 generator from a rosinality .pt or NVIDIA .pkl into bgedit's safetensors format.

    Example: bgedit convert stylegan2-church-config-f.pt church.safetensors
    """
    from bgedit_cli.pipelines.convert import convert_generator

    done = convert_generator(src, dst, which=which, force=force)
    if json_out:
        print_json(done.to_dict())
    elif not quiet:
        c = done.config
        err_console.print(f"Converted {src} ({done.format}, {done.which}) -> {dst}: {c.img_resolution}px, "
                          f"w_dim {c.w_dim}, {c.mapping_layers} mapping layers, channels {list(c.channels)}.")
