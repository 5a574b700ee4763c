"""`bgedit info FILE`: what a bgedit weight or latent file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bgedit_cli.cli.common import JsonOpt, cli_command, print_json

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@cli_command
def info(
    file: Annotated[Path, typer.Argument(help="a bgedit .safetensors file")],
    json_out: JsonOpt = False,
) -> None:
    """Show a checkpoint's kind, config, provenance, tensor count and size.

    Example: bgedit info models/demo/segmenter.safetensors --json
    """
    from bgedit_cli.checkpoint import read_header

    meta, entries = read_header(file)
    num_bytes = 0
    for dtype, shape in entries.values():
        n = 1
        for s in shape:
            n *= s
        num_bytes += n * _DTYPE_BYTES.get(dtype, 4)
    result = {
        "path": str(file),
        "kind": meta["bgedit.kind"],
        "format_version": int(meta["bgedit.format_version"]),
        "config": json.loads(meta.get("bgedit.config", "{}")),
        "provenance": json.loads(meta.get("bgedit.provenance", "{}")),
        "num_tensors": len(entries),
        "tensor_bytes": num_bytes,
        "file_bytes": file.stat().st_size,
    }
    if json_out:
        print_json(result)
        return
    lines = [f"file         {result['path']}", f"kind         {result['kind']}",
             f"format       {result['format_version']}",
             f"tensors      {result['num_tensors']} ({num_bytes / 2**20:.2f} MiB)"]
    lines += [f"config       {json.dumps(result['config'], sort_keys=True)}",
              f"provenance   {json.dumps(result['provenance'], sort_keys=True)}"]
    typer.echo("\n".join(lines))
