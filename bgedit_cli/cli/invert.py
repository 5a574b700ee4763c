"""`bgedit invert IMG... --out DIR`: image(s) -> reconstruction PNG + `<stem>.latent.safetensors` per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (PrecisionOpt, BatchOpt, DeviceOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt, ModelOpt,
                                   QuietOpt, RefineStepsOpt, SegmenterOpt, cli_command, err_console, make_progress,
                                   print_json)


def latent_meta(models, source: Path, steps: int) -> dict:
    """Header of the latent file of `source` inverted with `models` (a pipelines.models.Models)."""
    net = models.net
    return {"generator_sha256": models.generator_sha256, "source": Path(source).name,
            "resolution": models.resolution, "variant": net.variant, "steps": steps,
            "inversion_file": Path(getattr(net, "checkpoint_path", "")).name}


@cli_command
def invert(
    images: Annotated[list[Path], typer.Argument(help="images (PNG/JPEG/WebP, any size; centre-cropped)")],
    out: Annotated[Path, typer.Option("--out", help="output folder: <stem>.png, <stem>.latent.safetensors")],
    seg: Annotated[Optional[list[Path]], typer.Option("--seg", help="seg map per image, in the same order "
                                                      "(default: predicted by the bundle's segmenter)")] = None,
    model: ModelOpt = None,
    steps: RefineStepsOpt = 5,
    batch_size: BatchOpt = 4,
    variant: Annotated[Optional[str], typer.Option("--variant", help="proposed (default) or baseline")] = None,
    save_seg: Annotated[bool, typer.Option("--save-seg", help="also write the map used as <stem>.seg.png")] = False,
    generator: GeneratorOpt = None,
    inversion: InversionOpt = None,
    segmenter: SegmenterOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Invert images into the generator: reconstruction and latent file per image.

    Example: bgedit invert lake.png forest.jpg --out inv/ --save-seg
    """
    import sys

    import torch

    from bgedit_cli.errors import BgeditError, InputError
    from bgedit_cli.fileio import check_writable
    from bgedit_cli.io import save_png, save_seg as write_seg_png, to_uint8
    from bgedit_cli.latent import latent_path, save_latent
    from bgedit_cli.pipelines.invert import load_item, run_inversion
    from bgedit_cli.pipelines.models import load_models
    from bgedit_cli.runtime import autocast

    if seg and len(seg) != len(images):
        raise typer.BadParameter(f"got {len(seg)} map(s) for {len(images)} image(s); give one per image, in order.",
                                 param_hint="--seg")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the outputs.")
    models = load_models(model, variant, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    write_seg = save_seg and models.net.uses_seg
    if models.net.uses_seg and not seg:
        models.segmenter()  # no maps given: a missing segmenter is one error, before any work
    failed: list[dict] = []
    done: list[dict] = []

    def fail(path: Path, exc: BaseException) -> None:
        message = " ".join(str(exc).split())
        failed.append({"input": str(path), "error": message})
        print(f"Error: {message}", file=sys.stderr)

    # Check outputs and read inputs; a bad item is reported and skipped.
    items, seen = [], set()
    for k, path in enumerate(images):
        stem = path.stem
        outs = {"image": out / f"{stem}.png", "latent": latent_path(out, stem)}
        if write_seg:
            outs["seg"] = out / f"{stem}.seg.png"
        try:
            if stem in seen:
                raise InputError(f"{path}: another input has the same name stem '{stem}'; its outputs would "
                                     "collide. Rename one of them.")
            seen.add(stem)
            for p in outs.values():
                check_writable(p, force)
            img, ids = load_item(models, path, seg[k] if seg else None)
        except BgeditError as exc:
            fail(path, exc)
            continue
        items.append((path, img, ids, outs))

    # Invert in batches and write (one autocast context: bf16 weight copies are made once, not per batch).
    with make_progress(quiet or len(items) <= 1) as bar, autocast(models.device, models.precision):
        task = bar.add_task("inverting", total=len(items))
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            try:
                inv, ids = run_inversion(models, torch.stack([c[1] for c in chunk]), [c[2] for c in chunk],
                                         [c[0] for c in chunk], steps)
            except BgeditError as exc:
                for c in chunk:
                    fail(c[0], exc)
                bar.advance(task, len(chunk))
                continue
            pixels = to_uint8(inv.images)
            for i, (path, _, _, outs) in enumerate(chunk):
                try:
                    save_latent(outs["latent"], inv.select(i), latent_meta(models, path, steps), force=force,
                                provenance={"command": "bgedit invert"})
                    save_png(outs["image"], pixels[i], force=force)
                    if "seg" in outs:
                        write_seg_png(outs["seg"], ids[i].to(torch.uint8), force=force)
                except BgeditError as exc:
                    fail(path, exc)
                    continue
                done.append({"input": str(path), **{k: str(v) for k, v in outs.items()}})
            bar.advance(task, len(chunk))

    if json_out:
        print_json({"out": str(out), "variant": models.net.variant, "steps": steps, "outputs": done,
                    "failed": failed, "generator_sha256": models.generator_sha256})
    elif not quiet and not failed:  # with failures, stderr holds just their `Error:` lines
        err_console.print(f"Inverted {len(done)} image(s) into {out}.")
    if failed:
        raise typer.Exit(1)

