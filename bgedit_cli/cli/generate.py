"""`bgedit generate CKPT --out DIR`: sample a generator from z, W/W+ or seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, ForceOpt, JsonOpt, PrecisionOpt, QuietOpt, cli_command,
                                   err_console, make_progress, print_json)


@cli_command
def generate(
    out: Annotated[Path, typer.Option("--out", help="output folder for 000000.png, 000001.png, ...")],
    ckpt: Annotated[Optional[Path], typer.Argument(
        help="generator .safetensors (kind generator) or a bundle folder (its generator.safetensors)",
        show_default="the default bundle's generator ($BGEDIT_HOME/models/default)")] = None,
    z_file: Annotated[Optional[Path], typer.Option("--z", help=".npy of z codes [N, z_dim]")] = None,
    w_file: Annotated[Optional[Path], typer.Option("--w", help=".npy of W [N, w_dim] or W+ [N, num_ws, w_dim]")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="seeds, e.g. 0-7 or 1,5,10-12")] = None,
    truncation: Annotated[float, typer.Option("--truncation", help="truncation psi toward w_avg (1 = none)")] = 1.0,
    noise: Annotated[str, typer.Option("--noise", help="const (stored buffers), random or none")] = "const",
    raw: Annotated[Optional[Path], typer.Option("--raw", help="also write the float32 NCHW output (.npy)")] = None,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    seed: Annotated[int, typer.Option("--seed", help="RNG seed for --noise random")] = 0,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate images with a StyleGAN2 generator.

    Example: bgedit generate --seeds 0-15 --truncation 0.7 --out samples/
    """
    from bgedit_cli.pipelines.generate import generate_files
    from bgedit_cli.pipelines.models import load_generator

    gen = load_generator(ckpt, device, precision)
    with make_progress(quiet) as bar:
        task = bar.add_task("generating", total=None)
        result = generate_files(gen, out, z_file=z_file, w_file=w_file, seeds=seeds, truncation=truncation,
                                noise=noise, raw=raw, batch_size=batch_size, seed=seed, force=force,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_out:
        print_json({"out": str(out), "images": [str(p) for p in result.images], "raw": str(raw) if raw else None,
                    "resolution": result.resolution})
    elif not quiet:
        err_console.print(f"Wrote {len(result.images)} image(s) to {out}" + (f" and {raw}" if raw else "") + ".")
