"""`bgedit train segmenter --data DIR --model BUNDLE`: train the seg-map predictor (stage 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ResumeOpt, cli_command, report_training
from bgedit_cli.cli.train_options import (EvalEveryOpt, SnapshotEveryOpt, TimeLimitOpt, TrainPrecisionOpt,
                                          config_option)
from bgedit_cli.training.configs import SegmenterTrainConfig as Cfg


@cli_command
def train_segmenter(
    data: Annotated[Path, typer.Option(
        "--data", help="ADE20K-layout folder (images/ and annotations/, training and validation splits)")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder: writes segmenter.safetensors and runs/segmenter-<time>/ there",
        show_default="$BGEDIT_HOME/models/default")] = None,
    preset: Annotated[Optional[str], config_option(Cfg, "preset")] = None,
    steps: Annotated[Optional[int], config_option(Cfg, "steps", min=1)] = None,
    batch_size: Annotated[Optional[int], config_option(Cfg, "batch_size", min=1)] = None,
    lr: Annotated[Optional[float], config_option(Cfg, "lr", min=0.0)] = None,
    class_balance: Annotated[Optional[float], config_option(Cfg, "class_balance", min=0.0, max=1.0)] = None,
    progressive: Annotated[Optional[float], config_option(Cfg, "progressive", min=0.0, max=1.0)] = None,
    degrade: Annotated[Optional[float], config_option(Cfg, "degrade", min=0.0, max=1.0)] = None,
    resume: ResumeOpt = False,
    seed: Annotated[Optional[int], config_option(Cfg, "seed")] = None,
    device: DeviceOpt = "auto",
    precision: TrainPrecisionOpt = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="data loading processes")] = 0,
    eval_every: EvalEveryOpt = None,
    snapshot_every: SnapshotEveryOpt = None,
    time_limit: TimeLimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the segmenter that predicts ADE20K seg maps for images given without --seg.

    Example: bgedit train segmenter --data scenes/ --model bundle/ --preset demo
    """
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.segmenter import SegmenterTrainOptions
    from bgedit_cli.training.segmenter import train_segmenter as run_training

    overrides = {"steps": steps, "batch_size": batch_size, "lr": lr, "class_balance": class_balance,
                 "progressive": progressive, "degrade": degrade, "seed": seed}
    opts = SegmenterTrainOptions(data=data, bundle=resolve_bundle(model), preset=preset, overrides=overrides,
                                 resume=resume, device=device, precision=precision, workers=workers,
                                 eval_every=eval_every, snapshot_every=snapshot_every, time_limit_min=time_limit,
                                 force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    val = summary["val"]
    return (f"Trained {summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min: validation mIoU "
            f"{val.get('miou', float('nan')):.4f}, pixel accuracy {val.get('pixel_acc', float('nan')):.4f}. Wrote "
            f"{summary['model']} (run {summary['run']}).")
