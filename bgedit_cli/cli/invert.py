"""`bgedit invert IMG... --out DIR`: image(s) -> reconstruction PNG + `<stem>.latent.safetensors` per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, FilesFromOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt,
                                   ModelOpt, PrecisionOpt, QuietOpt, RefineStepsOpt, SegmenterOpt, SkipExistingOpt,
                                   StageProgress, cli_command, print_failure, report_batch, require_inputs)


@cli_command
def invert(
    images: Annotated[Optional[list[Path]], typer.Argument(
        help="images (PNG/JPEG/WebP, any size; centre-cropped)", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="output folder: <stem>.png, <stem>.latent.safetensors")] = ...,
    seg: Annotated[Optional[list[Path]], typer.Option("--seg", help="seg map per image argument, in the same "
                                                      "order (default: predicted by the bundle's segmenter)")] = None,
    files_from: FilesFromOpt = None,
    skip_existing: SkipExistingOpt = False,
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

    Many files: find scenes/ -name '*.jpg' -print0 | bgedit invert --files-from - --out inv/ --skip-existing;
    on N GPUs: torchrun --nproc_per_node N -m bgedit_cli invert --files-from list.txt --out inv/
    """
    from bgedit_cli.pipelines.invert import invert_paths

    if seg and len(seg) != len(images or []):
        raise typer.BadParameter(f"got {len(seg)} map(s) for {len(images or [])} image(s); give one per image, in "
                                 "order (the maps of --files-from's files are predicted).", param_hint="--seg")
    require_inputs(images, files_from)
    with StageProgress(disable=quiet, min_total=2) as progress:
        run = invert_paths(images, out, seg=seg, files_from=files_from, model=model, variant=variant,
                           generator=generator, inversion=inversion, segmenter=segmenter, device=device,
                           precision=precision, steps=steps, batch_size=batch_size, save_seg=save_seg, force=force,
                           skip_existing=skip_existing, progress=progress, on_failure=print_failure)
    report = run.report
    skipped = f" ({len(report.skipped)} skipped: their outputs exist)" if report.skipped else ""
    report_batch(report, run.shard, json_out=json_out, quiet=quiet, message=f"Inverted {len(report.done)} image(s) "
                 f"into {out}{skipped}.", result={"out": str(out), "variant": run.variant, "steps": steps,
                                                  "generator_sha256": run.generator_sha256})
