"""`bgedit train inversion --data DIR --model BUNDLE`: train the encoders and hypernetworks (stage 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ResumeOpt, cli_command, report_training
from bgedit_cli.cli.train_options import (EvalEveryOpt, SnapshotEveryOpt, TimeLimitOpt, TrainPrecisionOpt,
                                          config_option)
from bgedit_cli.training.configs import InversionTrainConfig as Cfg


def _lambda(name: str, what: str = "") -> typer.Option:
    return typer.Option(f"--{name.replace('_', '-')}-lambda", min=0.0, help=f"weight of the {name} loss{what} (0: off)",
                        show_default=Cfg.lambda_default(name))


@cli_command
def train_inversion(
    data: Annotated[Path, typer.Option("--data", help="ADE20K-layout folder (images/ and annotations/, training "
                                                      "and validation splits)")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder: reads generator.safetensors, writes inversion[-baseline].safetensors and "
                        "runs/ there", show_default="$BGEDIT_HOME/models/default")] = None,
    variant: Annotated[str, config_option(Cfg, "variant")] = "proposed",
    preset: Annotated[Optional[str], config_option(Cfg, "preset")] = None,
    steps: Annotated[Optional[int], config_option(Cfg, "steps", min=1)] = None,
    refine_steps: Annotated[Optional[int], config_option(Cfg, "refine_steps", min=0)] = None,
    batch_size: Annotated[Optional[int], config_option(Cfg, "batch_size", min=1)] = None,
    lr: Annotated[Optional[float], config_option(Cfg, "lr", min=0.0)] = None,
    schedule: Annotated[Optional[str], config_option(Cfg, "schedule")] = None,
    encoder_fraction: Annotated[Optional[float], config_option(Cfg, "encoder_fraction", min=0.0, max=1.0)] = None,
    seg_layers: Annotated[Optional[int], config_option(Cfg, "seg_layers", min=0)] = None,
    pretrain_steps: Annotated[Optional[int], config_option(Cfg, "pretrain_steps", min=0)] = None,
    edit_layout_lambda: Annotated[Optional[float], config_option(Cfg, "edit_layout_lambda", min=0.0)] = None,
    edit_look_lambda: Annotated[Optional[float], config_option(Cfg, "edit_look_lambda", min=0.0)] = None,
    map_only_lambda: Annotated[Optional[float], config_option(Cfg, "map_only_lambda", min=0.0)] = None,
    l2_lambda: Annotated[Optional[float], _lambda("l2")] = None,
    lpips_lambda: Annotated[Optional[float], _lambda("lpips", " (LPIPS-Alex; needs AlexNet weights)")] = None,
    moco_lambda: Annotated[Optional[float], _lambda("moco", " (MoCo-v2 similarity; needs its weights)")] = None,
    ms_ssim_lambda: Annotated[Optional[float], _lambda("ms_ssim")] = None,
    msl1_lambda: Annotated[Optional[float], _lambda("msl1", " (multi-scale L1)")] = None,
    alexnet: Annotated[Optional[Path], typer.Option(
        "--alexnet", help="torchvision's alexnet-owt-7be5be79.pth for LPIPS",
        show_default="$BGEDIT_HOME/weights/ or the torch hub cache")] = None,
    moco: Annotated[Optional[Path], typer.Option(
        "--moco", help="moco_v2_800ep_pretrain.pth.tar", show_default="$BGEDIT_HOME/weights/")] = None,
    generator: Annotated[Optional[Path], typer.Option(
        "--generator", help="use this generator file instead of the bundle's")] = None,
    init_from: Annotated[Optional[Path], typer.Option(
        "--init-from", help="start from the weights of this inversion file (same variant and generator), e.g. to "
                            "train the hypernetworks longer with --schedule phased --encoder-fraction 0")] = None,
    resume: ResumeOpt = False,
    seed: Annotated[Optional[int], config_option(Cfg, "seed")] = None,
    device: DeviceOpt = "auto",
    precision: TrainPrecisionOpt = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="data loading processes")] = 0,
    eval_every: EvalEveryOpt = None,
    eval_images: Annotated[int, typer.Option("--eval-images", min=0, help="validation images scored")] = 64,
    snapshot_every: SnapshotEveryOpt = None,
    time_limit: TimeLimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the inversion networks (encoders + HyperStyle hypernetworks) against the bundle's frozen generator.

    Example: bgedit train inversion --data scenes/ --model bundle/ --preset demo --variant proposed
    """
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.inversion import InversionTrainOptions
    from bgedit_cli.training.inversion import train_inversion as run_training

    overrides = {"steps": steps, "refine_steps": refine_steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                 "schedule": schedule, "encoder_fraction": encoder_fraction,
                 "seg_layers": seg_layers, "pretrain_steps": pretrain_steps,
                 "edit_layout_lambda": edit_layout_lambda, "edit_look_lambda": edit_look_lambda,
                 "map_only_lambda": map_only_lambda}
    lambdas = {"l2": l2_lambda, "lpips": lpips_lambda, "moco": moco_lambda, "ms_ssim": ms_ssim_lambda,
               "msl1": msl1_lambda}
    opts = InversionTrainOptions(data=data, bundle=resolve_bundle(model), variant=variant, preset=preset,
                                 overrides=overrides, lambdas=lambdas, alexnet=alexnet, moco=moco, generator=generator,
                                 init_from=init_from,
                                 resume=resume, device=device, precision=precision, workers=workers,
                                 eval_every=eval_every, eval_images=eval_images, snapshot_every=snapshot_every,
                                 time_limit_min=time_limit, force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    val = summary["val"]
    return (f"Trained {summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min: validation L2 "
            f"{val.get('l2', float('nan')):.4f}, PSNR {val.get('psnr', float('nan')):.2f} dB, MS-SSIM "
            f"{val.get('ms_ssim', float('nan')):.4f} after {val.get('steps', 0)} refinement steps. Wrote "
            f"{summary['model']} (run {summary['run']}).")
