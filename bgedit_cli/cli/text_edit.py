"""`bgedit text-edit IMG|LATENT... "PROMPT"`: restyle inverted images from text with the bundle's text model."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (PrecisionOpt, BatchOpt, DeviceOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt, ModelOpt,
                                   QuietOpt, RefineStepsOpt, SegmenterOpt, cli_command, err_console, make_progress,
                                   print_json)

# A prompt whose CLIP embedding is further than this (cosine) from every trained prompt is refused.
MIN_PROMPT_COSINE = 0.8


def prompt_slug(prompt: str) -> str:
    """`"a snowy night!"` -> `a-snowy-night` (for output names)."""
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "prompt"


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
    import sys

    import torch

    from bgedit_cli.bundle import bundle_file
    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.errors import BgeditError, InputError
    from bgedit_cli.fileio import check_writable
    from bgedit_cli.io import save_png, to_uint8
    from bgedit_cli.latent import Inversion
    from bgedit_cli.pipelines.invert import inversion_for
    from bgedit_cli.pipelines.models import load_clip, load_models
    from bgedit_cli.pipelines.text_edit import nearest_trained_prompts
    from bgedit_cli.pipelines.text_edit import text_edit as edit_images
    from bgedit_cli.runtime import autocast

    if (out is None) == (out_dir is None):
        raise InputError("give --out FILE (one source, one sample) or --out-dir DIR.")
    if out is not None and (len(sources) > 1 or samples > 1):
        raise InputError("--out takes one source and one sample; use --out-dir for several.")
    if not prompt.strip():
        raise InputError("the prompt is empty; say what the scene should become, e.g. \"ocean\".")

    # Models: generator + inversion, the text model, its CLIP.
    models = load_models(model, None, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    editor = load_network(bundle_file(models.bundle, "text", override=text), "text", models.device).eval()
    editor.check_generator(models.generator, models.generator_sha256)
    encoder = load_clip(models.bundle, clip, models.device)
    editor.check_clip(encoder)

    # The prompt: refused when far from everything the model was trained on.
    emb = encoder.encode_text([prompt])
    nearest, ranking = nearest_trained_prompts(emb, editor.prompt_embs, editor.cfg.prompts)
    if nearest < MIN_PROMPT_COSINE and not force_prompt:
        trained = ", ".join(f'"{p}"' for p in editor.cfg.prompts)
        raise InputError(f'"{prompt}" is far from every prompt this text model was trained on (best cosine '
                         f"{nearest:.2f} < {MIN_PROMPT_COSINE}); trained prompts: {trained}. Use one of those, "
                         "retrain with `bgedit train text --prompts ...`, or pass --force-prompt.")

    # Outputs and inputs; a bad item is reported and skipped.
    failed, done, items = [], [], []
    slug = prompt_slug(prompt)

    def fail(path: Path, exc: BaseException) -> None:
        message = " ".join(str(exc).split())
        failed.append({"input": str(path), "error": message})
        print(f"Error: {message}", file=sys.stderr)

    seen: set[str] = set()
    for path in sources:
        stem = path.name.removesuffix(".latent.safetensors") if path.name.endswith(".latent.safetensors") \
            else path.stem
        outs = [out] if out is not None else [
            out_dir / (f"{stem}.{slug}.png" if samples == 1 else f"{stem}.{slug}.{k}.png") for k in range(samples)]
        try:
            if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
                raise InputError(f"--out-dir {out_dir}: is a file; give a folder.")
            if stem in seen:
                raise InputError(f"{path}: another input has the same name stem '{stem}'; its outputs would "
                                 "collide. Rename one of them.")
            seen.add(stem)
            for p in outs:
                check_writable(p, force)
            inv = inversion_for(models, path, None, steps)
            items.append((path, dataclasses.replace(inv, images=None, steps_images=None, meta=None), outs))
        except BgeditError as exc:
            fail(path, exc)

    # Edit in batches (K samples of a source in one generator call) and write.
    with make_progress(quiet or len(items) <= 1) as bar:
        task = bar.add_task("editing", total=len(items))
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            try:
                inv = Inversion.cat([c[1] for c in chunk])
                with torch.no_grad(), autocast(models.device, models.precision):
                    images = edit_images(models.generator, inv, editor, emb, alpha=alpha, strength=strength,
                                         seed=seed, samples=samples).float()
            except BgeditError as exc:
                for c in chunk:
                    fail(c[0], exc)
                bar.advance(task, len(chunk))
                continue
            pixels = to_uint8(images)
            for i, (path, _, outs) in enumerate(chunk):
                try:
                    for k, p in enumerate(outs):
                        save_png(p, pixels[i * samples + k], force=force)
                except BgeditError as exc:
                    fail(path, exc)
                    continue
                done.append({"input": str(path), "outputs": [str(p) for p in outs]})
            bar.advance(task, len(chunk))

    if json_out:
        print_json({"prompt": prompt, "nearest_trained": ranking[:3], "samples": samples, "seed": seed,
                    "alpha": editor.cfg.alpha if alpha is None else alpha, "strength": strength,
                    "text_encoder": editor.text_encoder is not None, "outputs": done, "failed": failed})
    elif not quiet and not failed:
        err_console.print(f'Edited {len(done)} source(s) toward "{prompt}" (nearest trained prompt: '
                          f'"{ranking[0][0]}", cosine {nearest:.2f}).')
    if failed:
        raise typer.Exit(1)
