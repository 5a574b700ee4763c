"""`bgedit evaluate`: a bundle's inversion (and mixing, text edits) on a dataset, or any two folders of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, ForceOpt, InversionOpt, JsonOpt, ModelOpt, QuietOpt,
                                   RefineStepsOpt, StageProgress, cli_command, err_console, print_json)

METRICS_HELP = "comma-separated: l2, lpips, fid, kid, psnr, ms_ssim, fd_clip, swd; or all"


@cli_command
def evaluate(
    data: Annotated[Optional[Path], typer.Option("--data", help="dataset in the ADE20K layout: evaluate the bundle "
                                                 "on it")] = None,
    real: Annotated[Optional[Path], typer.Option("--real", help="folder of reference images (with --fake)")] = None,
    fake: Annotated[Optional[Path], typer.Option("--fake", help="folder of images to score (with --real)")] = None,
    paired: Annotated[bool, typer.Option("--paired", help="--real/--fake: match files by name for the pairwise "
                                         "metrics")] = False,
    resolution: Annotated[Optional[int], typer.Option("--resolution", min=16, help="--real/--fake: common size",
                                                      show_default="the first fake image's shorter side")] = None,
    model: ModelOpt = None,
    split: Annotated[str, typer.Option("--split", help="split of --data")] = "validation",
    variants: Annotated[Optional[str], typer.Option("--variants", help="comma-separated: proposed, baseline",
                                                    show_default="those in the bundle")] = None,
    metrics: Annotated[str, typer.Option("--metrics", help=METRICS_HELP)] = "all",
    steps: RefineStepsOpt = 5,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="first N images of the split, by name",
                                                 show_default="all")] = None,
    mixing_scenes: Annotated[int, typer.Option("--mixing-scenes", min=0, help="scenes of the mixing benchmark "
                                               "(M scenes: M(M-1) ordered pairs)")] = 8,
    batch_size: BatchOpt = 8,
    seed: Annotated[int, typer.Option("--seed", help="seed of KID subsets, SWD and text-edit eps")] = 0,
    inversion: InversionOpt = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="of the bundle's networks (inverting, editing): fp32 (default: numbers comparable "
                            "across machines), auto or bf16; metric features always run in fp32")] = "fp32",
    text: Annotated[Optional[Path], typer.Option(
        "--text", help="text model to score instead of the bundle's text.safetensors (to compare two)")] = None,
    inception: Annotated[Optional[Path], typer.Option("--inception", help="weights-inception-2015-12-05-6726825d.pth "
                                                      "for FID/KID")] = None,
    alexnet: Annotated[Optional[Path], typer.Option("--alexnet", help="alexnet-owt-7be5be79.pth for LPIPS")] = None,
    clip: Annotated[Optional[Path], typer.Option("--clip", help="CLIP for FD_CLIP (OpenAI's ViT-B-32.pt or a "
                                                 "clip.safetensors)", show_default="the bundle's")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="write an HTML report with figures here")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score reconstructions (L2, LPIPS, PSNR, MS-SSIM, FID, KID, FD_CLIP, SWD), mixing and text edits.

    Example: bgedit evaluate --data /tmp/synth64 --model models/demo --report eval/

    Example: bgedit evaluate --real photos/ --fake edits/ --paired --metrics l2,psnr,ms_ssim,fid

    On N GPUs: torchrun --nproc_per_node N -m bgedit_cli evaluate ... (each process scores its share of the
    images; the numbers are those of one process)
    """
    from bgedit_cli.errors import InputError
    from bgedit_cli.nn.inversion import VARIANTS
    from bgedit_cli.pipelines.evaluation import METRICS, EvalOptions, parse_names, run

    if (data is None) == (real is None and fake is None) or (data is None and (real is None or fake is None)):
        raise InputError("give --data DIR (evaluate a bundle) or both --real DIR and --fake DIR (two folders).")
    opts = EvalOptions(metrics=parse_names(metrics, METRICS, "--metrics"), batch_size=batch_size, device=device,
                       precision=precision, seed=seed, inception=inception, alexnet=alexnet, clip=clip, model=model,
                       data=data, split=split, inversion=inversion, text=text, steps=steps, limit=limit,
                       mixing_scenes=mixing_scenes, real=real, fake=fake, paired=paired, resolution=resolution,
                       variants=None if variants is None else parse_names(variants, VARIANTS, "--variants"))

    with StageProgress(disable=quiet or not err_console.is_terminal) as progress:  # no bar in a log file
        ev = run(opts, report_dir=report, force=force, progress=progress)
    if ev is None:  # under torchrun every rank holds the whole evaluation; rank 0 shows it
        return

    if json_out:
        print_json(ev.to_json())
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a file gets the tables unwrapped
    for t in ev.tables():
        console.print(Text(t.title, style="bold"))
        table = Table()
        for i, h in enumerate(t.headers):
            table.add_column(Text(h), justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in t.rows:
            table.add_row(*(Text(c) for c in row))
        console.print(table)
        for i, n in enumerate(t.notes, 1):
            console.print(Text(f"  {i}. {n}"))
    for line in ev.all_notes():
        console.print(Text(f"Note: {line}"))
    if report is not None and not quiet:
        err_console.print(Text(f"Report: {ev.report}"))
