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
    from bgedit_cli.checkpoint import file_sha256, save_network
    from bgedit_cli.convert import build_generator, convert_file
    from bgedit_cli.errors import InputError
    from bgedit_cli.fileio import check_writable

    if which not in ("g_ema", "g"):
        raise InputError(f"--which {which}: expected g_ema or g.")
    check_writable(dst, force)
    conv = convert_file(src, which)
    g = build_generator(conv)
    provenance = {
        "command": "convert",
        "source": {"file": src.name, "sha256": file_sha256(src), "format": conv.source_format, "which": conv.which},
        "notes": conv.notes,
    }
    digest = save_network(dst, g, kind="generator", provenance=provenance, force=force)
    result = {"path": str(dst), "sha256": digest, "format": conv.source_format, "which": conv.which,
              "config": g.cfg.to_dict(), "notes": conv.notes}
    if json_out:
        print_json(result)
    elif not quiet:
        c = g.cfg
        err_console.print(f"Converted {src} ({conv.source_format}, {conv.which}) -> {dst}: {c.img_resolution}px, "
                          f"w_dim {c.w_dim}, {c.mapping_layers} mapping layers, channels {list(c.channels)}.")
