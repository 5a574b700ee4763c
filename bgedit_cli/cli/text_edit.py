"""`bgedit text-edit IMG|LATENT... "PROMPT"`: restyle inverted images from text with the bundle's text model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt, ModelOpt,
                                   PrecisionOpt, QuietOpt, RefineStepsOpt, SegmenterOpt, cli_command, err_console,
                                   make_progress, print_failure, print_json)


@cli_command
def text_edit(
    sources: Annotated[list[Path], typer.Argument(
        help="images (inverted first) or .latent.safetensors files from `bgedit invert`", show_default=False)],
    prompt: Annotated[str, typer.Argument(help="what the scene should become, e.g. \"ocean\" or \"snowy night\"")],
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
    """
    from bgedit_cli.errors import InputError
    from bgedit_cli.pipelines.batch import Source
    from bgedit_cli.pipelines.models import load_models, load_text_model
    from bgedit_cli.pipelines.text_edit import edit_files

    if out is not None and (len(sources) > 1 or samples > 1):
        raise InputError("--out takes one source and one sample; use --out-dir for several.")

    models = load_models(model, None, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    text_model = load_text_model(models, text=text, clip=clip)
    match = text_model.gate(prompt, force=force_prompt)
    with make_progress(quiet or len(sources) <= 1) as bar:
        task = bar.add_task("editing", total=len(sources))
        report = edit_files(models, text_model, match, [Source(p) for p in sources], out=out, out_dir=out_dir,
                            alpha=alpha, strength=strength, seed=seed, samples=samples, steps=steps,
                            batch_size=batch_size, force=force, progress=lambda n: bar.advance(task, n),
                            on_failure=print_failure)

    editor = text_model.editor
    if json_out:
        print_json({"prompt": prompt, "nearest_trained": match.ranking[:3], "samples": samples, "seed": seed,
                    "alpha": editor.cfg.alpha if alpha is None else alpha, "strength": strength,
                    "text_encoder": editor.text_encoder is not None, "outputs": report.done,
                    "failed": [f.to_dict() for f in report.failed]})
    elif not quiet and not report.failed:
        err_console.print(f'Edited {len(report.done)} source(s) toward "{prompt}" (nearest trained prompt: '
                          f'"{match.ranking[0][0]}", cosine {match.nearest:.2f}).')
    if report.failed:
        raise typer.Exit(1)
