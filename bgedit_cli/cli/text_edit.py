"""`bgedit text-edit IMG|LATENT... "PROMPT"`: restyle inverted images from text with the bundle's text model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, FilesFromOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt,
                                   ModelOpt, PrecisionOpt, QuietOpt, RefineStepsOpt, SegmenterOpt, SkipExistingOpt,
                                   StageProgress, cli_command, print_failure, report_batch, require_inputs)


@cli_command
def text_edit(
    sources: Annotated[Optional[list[Path]], typer.Argument(
        help="images (inverted first) or .latent.safetensors files from `bgedit invert`", show_default=False)] = None,
    prompt: Annotated[str, typer.Argument(help="what the scene should become, e.g. \"ocean\" or \"snowy night\"",
                                          show_default=False)] = ...,
    out: Annotated[Optional[Path], typer.Option("--out", help="output PNG (one source, one sample)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out-dir", help="output folder: <stem>.<prompt>.png (<stem>.<prompt>.<k>.png with --samples)")] = None,
    alpha: Annotated[Optional[float], typer.Option(
        "--alpha", min=0.0, max=1.0, help="weight of the mapper's edit against the Text Encoder's (paper eq. 3)",
        show_default="the text model's")] = None,
    strength: Annotated[float, typer.Option("--strength", help="scale of the whole edit (0: the reconstruction)")
                        ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the Text Encoder's eps")] = 0,
    samples: Annotated[int, typer.Option("--samples", min=1, help="edits per source with different eps")] = 1,
    force_prompt: Annotated[bool, typer.Option(
        "--force-prompt", help="edit even with a prompt far from every prompt the model was trained on")] = False,
    model: ModelOpt = None,
    text: Annotated[Optional[Path], typer.Option("--text", help="text model file instead of the bundle's")] = None,
    clip: Annotated[Optional[Path], typer.Option(
        "--clip", help="CLIP file (the one the text model was trained with)",
        show_default="BUNDLE/clip.safetensors, else $BGEDIT_HOME/weights/clip/ViT-B-32.pt")] = None,
    files_from: FilesFromOpt = None,
    skip_existing: SkipExistingOpt = False,
    steps: RefineStepsOpt = 5,
    batch_size: BatchOpt = 8,
    generator: GeneratorOpt = None,
    inversion: InversionOpt = None,
    segmenter: SegmenterOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Edit images from a text prompt: invert (or read the latent file), edit the code, render with the kept
    weight deltas.

    Example: bgedit text-edit lake.png "snowy night" --out-dir edits/ --samples 4

    Many files: bgedit text-edit --files-from latents.txt "snowy night" --out-dir edits/ (under torchrun
    --nproc_per_node N -m bgedit_cli: N processes, one per GPU, share them)
    """
    from bgedit_cli.errors import InputError
    from bgedit_cli.pipelines.text_edit import edit_paths

    if out is not None and (len(sources or []) > 1 or files_from is not None or samples > 1):
        raise InputError("--out takes one source and one sample; use --out-dir for several.")
    require_inputs(sources, files_from)
    with StageProgress(disable=quiet, min_total=2) as progress:
        run = edit_paths(sources, prompt, out=out, out_dir=out_dir, files_from=files_from, model=model, text=text,
                         clip=clip, generator=generator, inversion=inversion, segmenter=segmenter, device=device,
                         precision=precision, alpha=alpha, strength=strength, seed=seed, samples=samples,
                         force_prompt=force_prompt, steps=steps, batch_size=batch_size, force=force,
                         skip_existing=skip_existing, progress=progress, on_failure=print_failure)

    report, match = run.report, run.match
    skipped = f"; {len(report.skipped)} skipped: their edits exist" if report.skipped else ""
    report_batch(report, run.shard, json_out=json_out, quiet=quiet,
                 message=f'Edited {len(report.done)} source(s) toward "{prompt}" (nearest trained prompt: '
                         f'"{match.ranking[0][0]}", cosine {match.nearest:.2f}{skipped}).',
                 result={"prompt": prompt, "nearest_trained": match.ranking[:3], "samples": samples, "seed": seed,
                         "alpha": run.alpha, "strength": strength, "text_encoder": run.text_encoder})
