"""`bgedit generate CKPT --out DIR`: sample a generator from z, W/W+ or seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (PrecisionOpt, BatchOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, cli_command, err_console,
                                   make_progress, print_json)


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
    import torch

    from bgedit_cli.bundle import bundle_file, resolve_bundle
    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.errors import InputError
    from bgedit_cli.fileio import check_writable
    from bgedit_cli.io import load_npy, save_npy, save_png, to_uint8
    from bgedit_cli.nn.stylegan2 import NOISE_MODES
    from bgedit_cli.pipelines.generate import generate as run_generate
    from bgedit_cli.pipelines.generate import parse_seeds, seeds_to_z
    from bgedit_cli.runtime import autocast, cache_casts, resolve_device, resolve_precision

    if sum(x is not None for x in (z_file, w_file, seeds)) != 1:
        raise InputError("give exactly one of --z, --w or --seeds.")
    if noise not in NOISE_MODES:
        raise InputError(f"--noise {noise}: expected one of {', '.join(NOISE_MODES)}.")
    if ckpt is None or ckpt.is_dir():
        ckpt = bundle_file(resolve_bundle(ckpt), "generator")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev, ("auto", "fp32", "bf16"))
    g = load_network(ckpt, "generator", device=dev)
    if prec == "bf16":
        cache_casts(g)
    z = load_npy(z_file, what="z array") if z_file else None
    w = load_npy(w_file, what="w array") if w_file else None
    if seeds is not None:
        z = seeds_to_z(parse_seeds(seeds), g.cfg.z_dim)
    n = (z if z is not None else w).shape[0]
    paths = [out / f"{i:06d}.png" for i in range(n)]
    if not force:  # refuse before computing anything
        for p in paths + ([raw] if raw else []):
            check_writable(p, force)

    torch.manual_seed(seed)
    with make_progress(quiet or n <= batch_size) as bar, autocast(dev, prec):
        task = bar.add_task("generating", total=n)
        imgs = run_generate(g, z=z, w=w, truncation_psi=truncation, noise_mode=noise, batch_size=batch_size,
                            device=dev, progress=lambda k: bar.advance(task, k))
    if raw:
        save_npy(raw, imgs.numpy(), force=force)
    for p, pixels in zip(paths, to_uint8(imgs)):
        save_png(p, pixels, force=force)
    if json_out:
        print_json({"out": str(out), "images": [str(p) for p in paths], "raw": str(raw) if raw else None,
                    "resolution": g.cfg.img_resolution})
    elif not quiet:
        err_console.print(f"Wrote {n} image(s) to {out}" + (f" and {raw}" if raw else "") + ".")
