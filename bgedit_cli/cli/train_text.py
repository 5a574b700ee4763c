"""`bgedit train text --data DIR --model BUNDLE --prompts "snow,night,ocean"`: train the text editor (stage 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ResumeOpt, cli_command, report_training
from bgedit_cli.cli.train_options import (EvalEveryOpt, SnapshotEveryOpt, TimeLimitOpt, TrainPrecisionOpt,
                                          config_option)
from bgedit_cli.training.configs import TextTrainConfig as Cfg


@cli_command
def train_text(
    data: Annotated[Path, typer.Option(
        "--data", help="ADE20K-layout folder: its training split is inverted for the codes to edit")],
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="bundle folder: reads generator, inversion and clip files, writes text.safetensors and "
                        "runs/text-<time>/", show_default="$BGEDIT_HOME/models/default")] = None,
    prompts: Annotated[Optional[str], config_option(Cfg, "prompts")] = None,
    prompts_file: Annotated[Optional[Path], typer.Option(
        "--prompts-file", help="the prompts, one per line (instead of --prompts)")] = None,
    no_text_encoder: Annotated[bool, typer.Option(
        "--no-text-encoder", help="the paper's ablation: the mapper alone, no Text Encoder")] = False,
    alpha: Annotated[Optional[float], config_option(Cfg, "alpha", min=0.0, max=1.0)] = None,
    condition: Annotated[Optional[str], config_option(Cfg, "condition")] = None,
    preset: Annotated[Optional[str], config_option(Cfg, "preset")] = None,
    steps: Annotated[Optional[int], config_option(Cfg, "steps", min=1)] = None,
    batch_size: Annotated[Optional[int], config_option(Cfg, "batch_size", min=1)] = None,
    lr: Annotated[Optional[float], config_option(Cfg, "lr", min=0.0)] = None,
    clip_lambda: Annotated[Optional[float], config_option(Cfg, "clip_lambda", min=0.0)] = None,
    sim_lambda: Annotated[Optional[float], config_option(Cfg, "sim_lambda", min=0.0)] = None,
    latent_lambda: Annotated[Optional[float], config_option(Cfg, "latent_lambda", min=0.0)] = None,
    direction_lambda: Annotated[Optional[float], config_option(Cfg, "direction_lambda", min=0.0)] = None,
    layout_lambda: Annotated[Optional[float], config_option(Cfg, "layout_lambda", min=0.0)] = None,
    keep_layout: Annotated[Optional[str], config_option(Cfg, "keep_layout")] = None,
    latents: Annotated[Optional[str], config_option(Cfg, "latent_source", "--latents")] = None,
    num_latents: Annotated[Optional[int], config_option(Cfg, "num_latents", min=1)] = None,
    clip: Annotated[Optional[Path], typer.Option(
        "--clip", help="CLIP file: the bundle's kind (clip.safetensors) or OpenAI's ViT-B-32.pt",
        show_default="BUNDLE/clip.safetensors, else $BGEDIT_HOME/weights/clip/ViT-B-32.pt")] = None,
    moco: Annotated[Optional[Path], typer.Option(
        "--moco", help="moco_v2_800ep_pretrain.pth.tar for L_sim (without it: the CLIP image tower, stated in "
                       "the log)", show_default="$BGEDIT_HOME/weights/")] = None,
    generator: Annotated[Optional[Path], typer.Option("--generator", help="instead of the bundle's")] = None,
    inversion: Annotated[Optional[Path], typer.Option("--inversion", help="instead of the bundle's")] = None,
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
    """Train the text editor (StyleCLIP levels mapper + Text Encoder) for a set of prompts.

    Example: bgedit train text --data scenes/ --model bundle/ --prompts "snow,night,ocean" --preset demo
    """
    from bgedit_cli.bundle import resolve_bundle
    from bgedit_cli.training.configs import read_prompts
    from bgedit_cli.training.text import TextTrainOptions
    from bgedit_cli.training.text import train_text as run_training

    overrides = {"prompts": read_prompts(prompts, prompts_file), "text_encoder": False if no_text_encoder else None,
                 "alpha": alpha, "condition": condition, "steps": steps, "batch_size": batch_size, "lr": lr,
                 "clip_lambda": clip_lambda, "sim_lambda": sim_lambda, "latent_lambda": latent_lambda,
                 "direction_lambda": direction_lambda, "layout_lambda": layout_lambda,
                 "keep_layout": None if keep_layout is None else tuple(p.strip() for p in keep_layout.split(",")
                                                                       if p.strip()),
                 "latent_source": latents, "num_latents": num_latents,
                 "seed": seed}
    opts = TextTrainOptions(data=data, bundle=resolve_bundle(model), preset=preset, overrides=overrides, clip=clip,
                            moco=moco, generator=generator, inversion=inversion, resume=resume, device=device,
                            precision=precision, eval_every=eval_every, snapshot_every=snapshot_every,
                            time_limit_min=time_limit, force=force, progress=not quiet)
    report_training(run_training(opts), json_out, quiet, _summary_line)


def _summary_line(summary: dict) -> str:
    val = summary["val"]
    return (f"Trained {summary['steps']} steps in {summary['wall_seconds'] / 60:.1f} min on "
            f"{len(summary['prompts'])} prompts: CLIP similarity to the prompt +{val.get('clip_gain', float('nan')):.4f} "
            f"on held-out codes (rises for {100 * val.get('clip_rise', float('nan')):.0f}% of pairs); L_sim: "
            f"{summary['similarity_loss']}. Wrote {summary['model']} (run {summary['run']}).")
