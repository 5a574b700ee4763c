"""`bgedit train segmenter --data DIR --model BUNDLE`: train the seg-map predictor (stage 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (PRESET_DEFAULT, DeviceOpt, ForceOpt, JsonOpt, PresetOpt, QuietOpt, ResumeOpt, SeedOpt,
                                   StepsOpt, TrainBatchOpt, cli_command, report_training)


@cli_command
def train_segmenter(
    data: Annotated[Path, typer.Option(
        "--data", help="ADE20K-layout folder (images/ and annotations/, training and validation splits)")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder: writes segmenter.safetensors and runs/segmenter-<time>/ there",
        show_default="$BGEDIT_HOME/models/default")] = None,
    preset: PresetOpt = None,
    steps: StepsOpt = None,
    batch_size: TrainBatchOpt = None,
    lr: Annotated[Optional[float], typer.Option(
        "--lr", min=0.0, help="peak AdamW learning rate (warm-up, then cosine to 0)",
        show_default=PRESET_DEFAULT)] = None,
    class_balance: Annotated[Optional[float], typer.Option(
        "--class-balance", min=0.0, max=1.0, help="weigh class c's pixels by f_c^-P (f_c: its pixel frequency in "
        "the training maps); 0 = plain cross-entropy", show_default=PRESET_DEFAULT)] = None,
    progressive: Annotated[Optional[float], typer.Option(
        "--progressive", min=0.0, max=1.0, help="fraction of the steps at reduced resolution: the first half of it "
        "at 1/4 with 16x the images per step, the rest at 1/2 with 4x (same compute); 0 = off",
        show_default=PRESET_DEFAULT)] = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="data loading processes")] = 0,
    eval_every: Annotated[Optional[int], typer.Option(
        "--eval-every", min=0, help="validate every N steps (0: only at the end)", show_default="steps/10")] = None,
    snapshot_every: Annotated[Optional[int], typer.Option(
        "--snapshot-every", min=0, help="save weights and state every N steps (0: only at the end)",
        show_default="steps/10")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the segmenter that predicts ADE20K seg maps for images given without --seg."""
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.segmenter import SegmenterTrainOptions
    from bgedit_cli.training.segmenter import train_segmenter as run_training

    opts = SegmenterTrainOptions(data=data, bundle=resolve_bundle(model), preset=preset, steps=steps,
                                 batch_size=batch_size, lr=lr, class_balance=class_balance,
                                 progressive=progressive, seed=seed,
                                 resume=resume, device=device, workers=workers, eval_every=eval_every,
                                 snapshot_every=snapshot_every, force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    val = summary["val"]
    return (f"Trained {summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min: validation mIoU "
            f"{val.get('miou', float('nan')):.4f}, pixel accuracy {val.get('pixel_acc', float('nan')):.4f}. Wrote "
            f"{summary['model']} (run {summary['run']}).")
