"""`bgedit train inversion --data DIR --model BUNDLE`: train the encoders and hypernetworks (stage 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (DeviceOpt, ForceOpt, JsonOpt, PresetOpt, QuietOpt, ResumeOpt, SeedOpt, StepsOpt,
                                   TrainBatchOpt, cli_command, report_training)


def _lambda(name: str, default: str) -> typer.Option:
    return typer.Option(f"--{name}-lambda", min=0.0, help=f"weight of the {name} loss (0: off) (default: {default})")


@cli_command
def train_inversion(
    data: Annotated[Path, typer.Option("--data", help="ADE20K-layout folder (images/ and annotations/, training "
                                                      "and validation splits)")],
    model: Annotated[Optional[Path], typer.Option("--model", help="bundle folder: reads generator.safetensors, "
                                                                  "writes inversion[-baseline].safetensors and "
                                                                  "runs/ there (default: $BGEDIT_HOME/models/default)")] = None,
    variant: Annotated[str, typer.Option("--variant", help="proposed (image + seg encoders, two hypernetworks) or "
                                                           "baseline (StyleTransformer + HyperStyle)")] = "proposed",
    preset: PresetOpt = None,
    steps: StepsOpt = None,
    refine_steps: Annotated[Optional[int], typer.Option("--refine-steps", min=0, help="HyperStyle refinement "
                                                                                      "iterations per batch (default: "
                                                                                      "the preset's, 3 for demo)")] = None,
    batch_size: TrainBatchOpt = None,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="peak Adam learning rate (warm-up, then cosine "
                                                                      "to 10%) (default: the preset's)")] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="joint (encoders and hypernetworks every "
                                                                       "step) or phased (encoders first, then "
                                                                       "hypernetworks) (default: joint)")] = None,
    encoder_fraction: Annotated[Optional[float], typer.Option("--encoder-fraction", min=0.0, max=1.0,
                                                              help="phased: share of the steps that train the "
                                                                   "encoders alone (default: 0.5)")] = None,
    l2_lambda: Annotated[Optional[float], _lambda("l2", "1.0")] = None,
    lpips_lambda: Annotated[Optional[float], _lambda("lpips", "0.8 for paper-256, 0 otherwise")] = None,
    moco_lambda: Annotated[Optional[float], _lambda("moco", "0.5 for paper-256, 0 otherwise")] = None,
    ms_ssim_lambda: Annotated[Optional[float], _lambda("ms-ssim", "0.5 for demo, 0 otherwise")] = None,
    msl1_lambda: Annotated[Optional[float], _lambda("msl1", "1.0 for demo, 0 otherwise; multi-scale L1")] = None,
    alexnet: Annotated[Optional[Path], typer.Option("--alexnet", help="torchvision's alexnet-owt-7be5be79.pth for "
                                                                      "LPIPS (default: $BGEDIT_HOME/weights/ or the "
                                                                      "torch hub cache)")] = None,
    moco: Annotated[Optional[Path], typer.Option("--moco", help="moco_v2_800ep_pretrain.pth.tar (default: "
                                                                "$BGEDIT_HOME/weights/)")] = None,
    generator: Annotated[Optional[Path], typer.Option("--generator", help="use this generator file instead of the "
                                                                          "bundle's")] = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 "
                                                               "or bf16")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="data loading processes")] = 0,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", min=0, help="validate every N steps (0: only "
                                                                                  "at the end) (default: steps/10)")] = None,
    eval_images: Annotated[int, typer.Option("--eval-images", min=0, help="validation images scored")] = 64,
    snapshot_every: Annotated[Optional[int], typer.Option("--snapshot-every", min=0, help="save weights and state "
                                                                                          "every N steps (default: steps/10)")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the inversion networks (encoders + HyperStyle hypernetworks) against the bundle's frozen generator."""
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.inversion import InversionTrainOptions
    from bgedit_cli.training.inversion import train_inversion as run_training

    lambdas = {"l2": l2_lambda, "lpips": lpips_lambda, "moco": moco_lambda, "ms_ssim": ms_ssim_lambda,
               "msl1": msl1_lambda}
    opts = InversionTrainOptions(data=data, bundle=resolve_bundle(model), variant=variant, preset=preset, steps=steps,
                                 refine_steps=refine_steps, batch_size=batch_size, lr=lr, seed=seed,
                                 schedule=schedule, encoder_fraction=encoder_fraction, lambdas=lambdas,
                                 alexnet=alexnet, moco=moco, generator=generator, resume=resume, device=device,
                                 precision=precision, workers=workers, eval_every=eval_every, eval_images=eval_images,
                                 snapshot_every=snapshot_every, force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    val = summary["val"]
    return (f"Trained {summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min: validation L2 "
            f"{val.get('l2', float('nan')):.4f}, PSNR {val.get('psnr', float('nan')):.2f} dB, MS-SSIM "
            f"{val.get('ms_ssim', float('nan')):.4f} after {val.get('steps', 0)} refinement steps. Wrote "
            f"{summary['model']} (run {summary['run']}).")
