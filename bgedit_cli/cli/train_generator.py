"""`bgedit train generator --data DIR --model BUNDLE`: train a StyleGAN2 generator (stage 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (DeviceOpt, ForceOpt, JsonOpt, PresetOpt, QuietOpt, ResumeOpt, SeedOpt, StepsOpt,
                                   TrainBatchOpt, cli_command, report_training)


@cli_command
def train_generator(
    data: Annotated[Path, typer.Option(
        "--data", help="ADE20K-layout folder (images/training is used; annotations are not needed)")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder; writes generator.safetensors (the EMA generator) and "
                        "runs/generator-<time>/ (default: $BGEDIT_HOME/models/default)")] = None,
    preset: PresetOpt = None,
    steps: StepsOpt = None,
    kimg: Annotated[Optional[float], typer.Option(
        "--kimg", min=0.001, help="length in thousands of real images shown to D, instead of --steps")] = None,
    batch_size: TrainBatchOpt = None,
    lr: Annotated[Optional[float], typer.Option(
        "--lr", min=0.0, help="Adam learning rate of G and D (default: the preset's)")] = None,
    r1_gamma: Annotated[Optional[float], typer.Option(
        "--r1-gamma", min=0.0, help="R1 weight gamma (default: the preset's)")] = None,
    pl_weight: Annotated[Optional[float], typer.Option(
        "--pl-weight", min=0.0, help="path-length regularization weight, 0: off (default: the preset's)")] = None,
    augment: Annotated[Optional[str], typer.Option(
        "--augment", help="none, diffaug (DiffAugment color, translation, cutout) or ada (the same with an "
                          "adaptive probability) (default: none)")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16 (CUDA only)")] = "auto",
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="data loading processes (default: 0 on CPU, 4 on CUDA)")] = None,
    snapshot_every: Annotated[Optional[int], typer.Option(
        "--snapshot-every", min=1, help="every N steps: snapshot, samples, SWD and state "
                                        "(default: steps/10)")] = None,
    time_limit: Annotated[Optional[float], typer.Option(
        "--time-limit", min=0.0, help="stop (with a final snapshot, resumable) after this many minutes")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a StyleGAN2 generator on scene images (torchrun for several processes)."""
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.errors import InputError
    from bgedit_cli.training.augment import AUGMENT_MODES
    from bgedit_cli.training.generator import GeneratorTrainOptions
    from bgedit_cli.training.generator import train_generator as run_training

    if augment is not None and augment not in AUGMENT_MODES:
        raise InputError(f"--augment {augment}: expected one of {', '.join(AUGMENT_MODES)}.")
    opts = GeneratorTrainOptions(data=data, bundle=resolve_bundle(model), preset=preset, steps=steps, kimg=kimg,
                                 batch_size=batch_size, lr=lr, r1_gamma=r1_gamma, pl_weight=pl_weight,
                                 augment=augment, seed=seed, resume=resume, device=device, precision=precision,
                                 workers=workers, snapshot_every=snapshot_every, time_limit_min=time_limit,
                                 force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    swd = summary["swd"].get("swd/avg", float("nan"))
    how = " (time limit)" if summary["stopped_by_time"] else ""
    return (f"Trained {summary['steps']} steps{how} ({summary['kimg']} kimg) in {summary['wall_seconds'] / 60:.1f} "
            f"min: SWD avg {swd:.2f} (x1e3). Wrote {summary['model']} (run {summary['run']}).")
