"""Options the `bgedit train <stage>` commands share, and options read from a stage's config (default and
help written once, in training/configs.py)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Optional

import typer

from bgedit_cli.training.configs import StageConfig

TimeLimitOpt = Annotated[Optional[float], typer.Option(
    "--time-limit", min=0.0, help="stop after this many minutes, with a final evaluation and snapshot (resumable)")]
TrainPrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="auto (bf16 autocast on CUDA and on CPUs measured fast at bf16, else fp32), fp32 or bf16; "
                        "weights stay fp32, so a run resumes in any precision")]
EvalEveryOpt = Annotated[Optional[int], typer.Option(
    "--eval-every", min=0, help="validate every N steps (0: only at the end)", show_default="steps/10")]
SnapshotEveryOpt = Annotated[Optional[int], typer.Option(
    "--snapshot-every", min=0, help="save weights and state every N steps (0: only at the end)",
    show_default="steps/10")]


def config_option(cfg: type[StageConfig], name: str, *flags: str, **kwargs: Any) -> Any:
    """A `typer.Option` for config field `name`: its flag, its help from the field, its default shown per preset."""
    field = {f.name: f for f in dataclasses.fields(cfg)}[name]
    flag = next(f for f, names in cfg.options().items() if name in names)
    return typer.Option(*(flags or (flag,)), help=field.metadata.get("help", ""),
                        show_default=cfg.preset_default(name), **kwargs)
