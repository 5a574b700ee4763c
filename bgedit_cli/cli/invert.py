"""`bgedit invert IMG... --out DIR`: image(s) -> reconstruction PNG + `<stem>.latent.safetensors` per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, FilesFromOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt,
                                   ModelOpt, PrecisionOpt, QuietOpt, RefineStepsOpt, SegmenterOpt, SkipExistingOpt,
                                   cli_command, input_paths, make_progress, print_failure, report_batch)


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
    from bgedit_cli.distributed import join, main_process_first
    from bgedit_cli.pipelines.batch import Source, share_size
    from bgedit_cli.pipelines.invert import invert_files
    from bgedit_cli.pipelines.models import load_models

    if seg and len(seg) != len(images or []):
        raise typer.BadParameter(f"got {len(seg)} map(s) for {len(images or [])} image(s); give one per image, in "
                                 "order (the maps of --files-from's files are predicted).", param_hint="--seg")
    d, dev = join(device)
    paths = input_paths(images, files_from, d)
    with main_process_first(d):  # under torchrun: one `--precision auto` decision for all
        models = load_models(model, variant, str(dev), generator=generator, inversion=inversion, segmenter=segmenter,
                             precision=precision)
    sources = (Source(path, seg[k] if k < len(seg or []) else None) for k, path in enumerate(paths))
    if files_from is None:
        sources = list(sources)
    total = None if files_from is not None else share_size(len(images), batch_size, d)
    with make_progress(quiet or not d.is_main or (total is not None and total <= 1)) as bar:
        task = bar.add_task("inverting", total=total)
        report = invert_files(models, sources, out, steps=steps, batch_size=batch_size, save_seg=save_seg,
                              force=force, skip_existing=skip_existing, shard=d,
                              progress=lambda n: bar.advance(task, n), on_failure=None if d.enabled else print_failure)
    skipped = f" ({len(report.skipped)} skipped: their outputs exist)" if report.skipped else ""
    report_batch(report, d, json_out=json_out, quiet=quiet, message=f"Inverted {len(report.done)} image(s) into "
                 f"{out}{skipped}.", result={"out": str(out), "variant": models.net.variant, "steps": steps,
                                             "generator_sha256": models.generator_sha256})
