"""`bgedit mix-style CONTENT STYLE` and `bgedit mix-content A [B]`: mix inverted images (or latent files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (DeviceOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt, ModelOpt, PrecisionOpt,
                                   QuietOpt, RefineStepsOpt, SegmenterOpt, cli_command, err_console, print_json)

SourceArg = "image (PNG/JPEG/WebP) or .latent.safetensors from `bgedit invert`"
OutFileOpt = Annotated[Path, typer.Option("--out", help="output PNG")]
SaveLatentOpt = Annotated[bool, typer.Option("--save-latent", help="also write the mixed code as "
                                             "<out stem>.latent.safetensors (for text-edit etc.)")]


@cli_command
def mix_style(
    content: Annotated[Path, typer.Argument(help=f"A, whose content is kept: {SourceArg}")],
    style: Annotated[Path, typer.Argument(help=f"B, whose style is taken: {SourceArg}")],
    out: OutFileOpt,
    layers: Annotated[Optional[str], typer.Option("--layers", help="W+ rows taken from STYLE, e.g. 8: or 6:12 or "
                                                  "8,9,12-13 (default: seg_layers: , the rows after the "
                                                  "Seg Encoder's)")] = None,
    delta_img: Annotated[str, typer.Option("--delta-img", help="whose delta_img to use: a (CONTENT) or b "
                                           "(STYLE)")] = "a",
    content_seg: Annotated[Optional[Path], typer.Option("--content-seg", help="seg map of CONTENT if it is an "
                                                        "image (default: predicted)")] = None,
    style_seg: Annotated[Optional[Path], typer.Option("--style-seg", help="seg map of STYLE if it is an image "
                                                      "(default: predicted)")] = None,
    model: ModelOpt = None,
    steps: RefineStepsOpt = 5,
    save_latent: SaveLatentOpt = False,
    generator: GeneratorOpt = None,
    inversion: InversionOpt = None,
    segmenter: SegmenterOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Keep CONTENT's layout, take STYLE's look (high-resolution W+ rows).

    Example: bgedit mix-style inv/lake.latent.safetensors inv/sunset.latent.safetensors --out lake-at-sunset.png
    """
    from bgedit_cli.pipelines.mix import DELTA_SOURCES, mix_style_files
    from bgedit_cli.pipelines.models import load_models

    if delta_img not in DELTA_SOURCES:
        raise typer.BadParameter(f"expected a or b, got {delta_img!r}.", param_hint="--delta-img")
    models = load_models(model, None, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    done = mix_style_files(models, content, style, out, layers=layers, take_delta_img=delta_img,
                           content_seg=content_seg, style_seg=style_seg, steps=steps, save_latent=save_latent,
                           force=force)
    if json_out:
        print_json({**done.files(), "content": str(content), "style": str(style), "layers": done.rows,
                    "delta_img": delta_img})
    elif not quiet:
        err_console.print(f"Wrote {out}.")


@cli_command
def mix_content(
    a: Annotated[Path, typer.Argument(help=f"A, whose style is kept: {SourceArg}")],
    out: OutFileOpt,
    b: Annotated[Optional[Path], typer.Argument(help=f"B, whose content is taken: {SourceArg}; omit it to "
                                                "take the content from the --seg map alone (layout edit)")] = None,
    seg: Annotated[Optional[Path], typer.Option("--seg", help="B's seg map if B is an image (default: predicted); "
                                                "without B: the new layout map")] = None,
    a_seg: Annotated[Optional[Path], typer.Option("--a-seg", help="seg map of A if it is an image "
                                                  "(default: predicted)")] = None,
    swap_deltas: Annotated[str, typer.Option("--swap-deltas", help="residuals taken from B: seg (delta_seg), all, "
                                             "or none")] = "seg",
    model: ModelOpt = None,
    steps: RefineStepsOpt = 5,
    save_latent: SaveLatentOpt = False,
    generator: GeneratorOpt = None,
    inversion: InversionOpt = None,
    segmenter: SegmenterOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Keep A's look, take B's content (seg latents + delta_seg) -- or the content of a new map (--seg, no B).

    Example: bgedit mix-content lake.png city.png --seg city.seg.png --out lake-look-city-layout.png

    Example: bgedit mix-content inv/lake.latent.safetensors --seg new-layout.png --out relaid.png
    """
    from bgedit_cli.pipelines.mix import SWAP_DELTAS, mix_content_files
    from bgedit_cli.pipelines.models import load_models

    if swap_deltas not in SWAP_DELTAS:
        raise typer.BadParameter(f"expected one of {', '.join(SWAP_DELTAS)}, got {swap_deltas!r}.",
                                 param_hint="--swap-deltas")
    if b is None and seg is None:
        raise typer.BadParameter("give B (an image or latent) or a new layout map with --seg.", param_hint="B")
    models = load_models(model, None, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    done = mix_content_files(models, a, b, out, seg=seg, a_seg=a_seg, swap_deltas=swap_deltas, steps=steps,
                             save_latent=save_latent, force=force)
    if json_out:
        print_json({**done.files(), "a": str(a), "b": str(b) if b else None, "seg": str(seg) if seg else None,
                    "mode": done.mode, "swap_deltas": swap_deltas if b is not None else None})
    elif not quiet:
        err_console.print(f"Wrote {out}.")
