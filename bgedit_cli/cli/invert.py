"""`bgedit invert IMG... --out DIR`: image(s) -> reconstruction PNG + `<stem>.latent.safetensors` per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt, ModelOpt,
                                   PrecisionOpt, QuietOpt, RefineStepsOpt, SegmenterOpt, cli_command, err_console,
                                   make_progress, print_failure, print_json)


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
    from bgedit_cli.pipelines.batch import Source
    from bgedit_cli.pipelines.invert import invert_files
    from bgedit_cli.pipelines.models import load_models

    if seg and len(seg) != len(images):
        raise typer.BadParameter(f"got {len(seg)} map(s) for {len(images)} image(s); give one per image, in order.",
                                 param_hint="--seg")
    models = load_models(model, variant, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    sources = [Source(path, seg[k] if seg else None) for k, path in enumerate(images)]
    with make_progress(quiet or len(images) <= 1) as bar:
        task = bar.add_task("inverting", total=len(images))
        report = invert_files(models, sources, out, steps=steps, batch_size=batch_size, save_seg=save_seg,
                              force=force, progress=lambda n: bar.advance(task, n), on_failure=print_failure)

    if json_out:
        print_json({"out": str(out), "variant": models.net.variant, "steps": steps, "outputs": report.done,
                    "failed": [f.to_dict() for f in report.failed], "generator_sha256": models.generator_sha256})
    elif not quiet and not report.failed:  # with failures, stderr holds just their `Error:` lines
        err_console.print(f"Inverted {len(report.done)} image(s) into {out}.")
    if report.failed:
        raise typer.Exit(1)
