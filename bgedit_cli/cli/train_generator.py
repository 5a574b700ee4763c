"""`bgedit train generator --data DIR --model BUNDLE`: train a StyleGAN2 generator (stage 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ResumeOpt, cli_command, report_training
from bgedit_cli.cli.train_options import SnapshotEveryOpt, TimeLimitOpt, config_option
from bgedit_cli.errors import InputError
from bgedit_cli.training.configs import GeneratorTrainConfig as Cfg


@cli_command
def train_generator(
    data: Annotated[Path, typer.Option(
        "--data", help="ADE20K-layout folder (images/training is used; annotations are not needed)")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder; writes generator.safetensors (the EMA generator) and runs/generator-<time>/",
        show_default="$BGEDIT_HOME/models/default")] = None,
    preset: Annotated[Optional[str], config_option(Cfg, "preset")] = None,
    steps: Annotated[Optional[int], config_option(Cfg, "steps", min=1)] = None,
    kimg: Annotated[Optional[float], typer.Option(
        "--kimg", min=0.001, help="length in thousands of real images shown to D, instead of --steps")] = None,
    batch_size: Annotated[Optional[int], config_option(Cfg, "batch_size", min=1)] = None,
    lr: Annotated[Optional[float], config_option(Cfg, "g_lr", "--lr", min=0.0)] = None,
    r1_gamma: Annotated[Optional[float], config_option(Cfg, "r1_gamma", min=0.0)] = None,
    pl_weight: Annotated[Optional[float], config_option(Cfg, "pl_weight", min=0.0)] = None,
    ema_kimg: Annotated[Optional[float], config_option(Cfg, "ema_kimg", min=0.0)] = None,
    channels: Annotated[Optional[str], config_option(Cfg, "channels")] = None,
    init_from: Annotated[Optional[Path], typer.Option(
        "--init-from", help="start G and G_ema from this generator file (same network), D fresh: continue a run "
                            "whose training state is lost")] = None,
    augment: Annotated[Optional[str], config_option(Cfg, "augment")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16 (CUDA only)")] = "auto",
    resume: ResumeOpt = False,
    seed: Annotated[Optional[int], config_option(Cfg, "seed")] = None,
    device: DeviceOpt = "auto",
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="data loading processes", show_default="0 on CPU, 4 on CUDA")] = None,
    snapshot_every: SnapshotEveryOpt = None,
    time_limit: TimeLimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a StyleGAN2 generator on scene images (torchrun for several processes). Every snapshot also
    scores SWD and writes a sample grid.

    Example: bgedit train generator --data scenes/ --model bundle/ --preset demo --time-limit 60
    """
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.generator import GeneratorTrainOptions
    from bgedit_cli.training.generator import train_generator as run_training

    overrides = {"steps": steps, "batch_size": batch_size, "g_lr": lr, "d_lr": lr, "r1_gamma": r1_gamma,
                 "pl_weight": pl_weight, "ema_kimg": ema_kimg, "augment": augment, "seed": seed,
                 "channels": parse_widths(channels)}
    opts = GeneratorTrainOptions(data=data, bundle=resolve_bundle(model), preset=preset, overrides=overrides,
                                 kimg=kimg, init_from=init_from, resume=resume, device=device, precision=precision,
                                 workers=workers, snapshot_every=snapshot_every, time_limit_min=time_limit, force=force,
                                 progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def parse_widths(text: str | None) -> tuple[int, ...] | None:
    """`--channels 128,128,64,64,64` -> a tuple of ints."""
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--channels {text}: expected comma-separated integers, e.g. 128,128,64,64,64.") from None


def _summary_line(summary: dict) -> str:
    swd = summary["swd"].get("swd/avg", float("nan"))
    how = " (time limit)" if summary["stopped_by_time"] else ""
    return (f"Trained {summary['steps']} steps{how} ({summary['kimg']} kimg) in {summary['wall_seconds'] / 60:.1f} "
            f"min: SWD avg {swd:.2f} (x1e3). Wrote {summary['model']} (run {summary['run']}).")
