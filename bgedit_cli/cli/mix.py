"""`bgedit mix-style CONTENT STYLE` and `bgedit mix-content A [B]`: mix inverted images (or latent files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (PrecisionOpt, DeviceOpt, ForceOpt, GeneratorOpt, InversionOpt, JsonOpt, ModelOpt, QuietOpt,
                                   RefineStepsOpt, SegmenterOpt, cli_command, err_console, print_json)

SourceArg = "image (PNG/JPEG/WebP) or .latent.safetensors from `bgedit invert`"
OutFileOpt = Annotated[Path, typer.Option("--out", help="output PNG")]
SaveLatentOpt = Annotated[bool, typer.Option("--save-latent", help="also write the mixed code as "
                                             "<out stem>.latent.safetensors (for text-edit etc.)")]


def _write(models, out: Path, images, codes, *, w, save_latent: bool, force: bool, source: str, steps: int) -> dict:
    """Write the PNG (and optionally the mixed latent); return what was written."""
    from bgedit_cli.io import save_png, to_uint8
    from bgedit_cli.latent import Inversion, latent_path, save_latent as write_latent

    written = {"image": str(out)}
    if save_latent:
        ws, d_img, d_seg = codes
        k = models.net.seg_layers
        inv = Inversion(ws=ws, w=w, seg_latents=ws[:, :k], delta_img=d_img, delta_seg=d_seg).to("cpu")
        lpath = latent_path(out.parent, out.name[: -len(out.suffix)] if out.suffix else out.name)
        write_latent(lpath, inv, {"generator_sha256": models.generator_sha256, "source": source,
                                  "resolution": models.resolution, "variant": "proposed", "steps": steps},
                     force=force, provenance={"command": source})
        written["latent"] = str(lpath)
    save_png(out, to_uint8(images)[0], force=force)
    return written


def _check_outputs(out: Path, save_latent: bool, force: bool) -> None:
    from bgedit_cli.fileio import check_writable
    from bgedit_cli.latent import latent_path

    check_writable(out, force)
    if save_latent:
        check_writable(latent_path(out.parent, out.stem), force)


def _require_proposed(models) -> None:
    from bgedit_cli.errors import InputError

    if not models.net.uses_seg:
        raise InputError("mixing needs the proposed variant (Seg Encoder + two hypernetworks); this model is the "
                         "baseline. Use --variant proposed or a bundle with inversion.safetensors.")


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
    import torch

    from bgedit_cli.latent import sum_deltas
    from bgedit_cli.pipelines.invert import inversion_for, render
    from bgedit_cli.pipelines.mix import DELTA_SOURCES, parse_layers, style_mix_codes
    from bgedit_cli.pipelines.models import load_models
    from bgedit_cli.runtime import autocast

    if delta_img not in DELTA_SOURCES:
        raise typer.BadParameter(f"expected a or b, got {delta_img!r}.", param_hint="--delta-img")
    _check_outputs(out, save_latent, force)
    models = load_models(model, None, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    _require_proposed(models)
    rows = parse_layers(layers, models.generator.cfg.num_ws) if layers else None
    inv_a = inversion_for(models, content, content_seg, steps)
    inv_b = inversion_for(models, style, style_seg, steps)
    codes = style_mix_codes(inv_a, inv_b, layers=rows, take_delta_img=delta_img)
    with torch.no_grad():
        with autocast(models.device, models.precision):
            images = render(models.generator, codes[0], sum_deltas(codes[1], codes[2])).float()
    rows = rows if rows is not None else list(range(models.net.seg_layers, models.generator.cfg.num_ws))
    written = _write(models, out, images, codes, w=inv_b.w, save_latent=save_latent, force=force,
                     source=f"mix-style {content.name} {style.name}", steps=steps)
    if json_out:
        print_json({**written, "content": str(content), "style": str(style), "layers": rows, "delta_img": delta_img})
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
    import torch

    from bgedit_cli.io import load_seg, one_hot_seg
    from bgedit_cli.latent import sum_deltas
    from bgedit_cli.pipelines.invert import inversion_for, render
    from bgedit_cli.pipelines.mix import SWAP_DELTAS, content_mix_codes, edit_layout
    from bgedit_cli.pipelines.models import load_models
    from bgedit_cli.runtime import autocast

    if swap_deltas not in SWAP_DELTAS:
        raise typer.BadParameter(f"expected one of {', '.join(SWAP_DELTAS)}, got {swap_deltas!r}.",
                                 param_hint="--swap-deltas")
    if b is None and seg is None:
        raise typer.BadParameter("give B (an image or latent) or a new layout map with --seg.", param_hint="B")
    _check_outputs(out, save_latent, force)
    models = load_models(model, None, device, generator=generator, inversion=inversion, segmenter=segmenter,
                         precision=precision)
    _require_proposed(models)
    inv_a = inversion_for(models, a, a_seg, steps)
    if b is not None:
        inv_b = inversion_for(models, b, seg, steps)
        codes = content_mix_codes(inv_a, inv_b, swap_deltas=swap_deltas)
        with torch.no_grad(), autocast(models.device, models.precision):
            images = render(models.generator, codes[0], sum_deltas(codes[1], codes[2])).float()
        source, mode = f"mix-content {a.name} {b.name}", "mix"
    else:
        ids = torch.from_numpy(load_seg(seg, models.resolution).copy()).long()
        with autocast(models.device, models.precision):
            edited = edit_layout(models.generator, models.net, inv_a, one_hot_seg(ids[None]).to(models.device),
                                 steps=steps)
        images, codes = edited.images.float(), (edited.ws, edited.delta_img, edited.delta_seg)
        source, mode = f"mix-content {a.name} --seg {seg.name}", "layout"
    written = _write(models, out, images, codes, w=inv_a.w, save_latent=save_latent, force=force, source=source,
                     steps=steps)
    if json_out:
        print_json({**written, "a": str(a), "b": str(b) if b else None, "seg": str(seg) if seg else None,
                    "mode": mode, "swap_deltas": swap_deltas if b is not None else None})
    elif not quiet:
        err_console.print(f"Wrote {out}.")
