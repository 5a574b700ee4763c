"""`bgedit train clip --data DIR --model BUNDLE`: train a small CLIP on the dataset's captions (for text editing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ResumeOpt, cli_command, report_training
from bgedit_cli.cli.train_options import (EvalEveryOpt, SnapshotEveryOpt, TimeLimitOpt, TrainPrecisionOpt,
                                          config_option)
from bgedit_cli.training.configs import ClipTrainConfig as Cfg


@cli_command
def train_clip(
    data: Annotated[Path, typer.Option(
        "--data", help="ADE20K-layout folder (images/training, images/validation) with metadata.jsonl captions, "
                       "as `bgedit data synth` writes")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder: writes clip.safetensors and runs/clip-<time>/ there; its generator, if "
                        "any, sets the image resolution", show_default="$BGEDIT_HOME/models/default")] = None,
    preset: Annotated[Optional[str], config_option(Cfg, "preset")] = None,
    steps: Annotated[Optional[int], config_option(Cfg, "steps", min=1)] = None,
    batch_size: Annotated[Optional[int], config_option(Cfg, "batch_size", min=1)] = None,
    lr: Annotated[Optional[float], config_option(Cfg, "lr", min=0.0)] = None,
    resume: ResumeOpt = False,
    seed: Annotated[Optional[int], config_option(Cfg, "seed")] = None,
    device: DeviceOpt = "auto",
    precision: TrainPrecisionOpt = "auto",
    eval_every: EvalEveryOpt = None,
    snapshot_every: SnapshotEveryOpt = None,
    time_limit: TimeLimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a small CLIP contrastively on captioned scenes; validation reports zero-shot accuracy of the look
    and of each content factor. At paper scale, text editing uses OpenAI's ViT-B/32 weights instead (`--clip`
    of the text stage); `--preset paper-256` trains that shape from scratch.

    Example: bgedit train clip --data scenes/ --model bundle/ --preset demo
    """
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.clip import ClipTrainOptions
    from bgedit_cli.training.clip import train_clip as run_training

    overrides = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed}
    opts = ClipTrainOptions(data=data, bundle=resolve_bundle(model), preset=preset, overrides=overrides,
                            resume=resume, device=device, precision=precision, eval_every=eval_every,
                            snapshot_every=snapshot_every, time_limit_min=time_limit, force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    val, tasks = summary["val"], summary["zero_shot"]
    zero_shot = ", ".join(f"{task} {val[f'zs_{task}']:.2f} [{info['chance']:.2f}/{info['majority']:.2f}]"
                          for task, info in tasks.items() if f"zs_{task}" in val)
    return (f"Trained {summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min: validation loss "
            f"{val.get('loss', float('nan')):.4f}; zero-shot accuracy [chance/majority class]: "
            f"{zero_shot or 'no labelled images'}. Wrote "
            f"{summary['model']} (run {summary['run']}).")
