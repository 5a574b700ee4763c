"""Settings of the inversion stage."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from bgedit_cli.errors import InputError
from bgedit_cli.training.configs.base import (FINAL_LR_HELP, MAX_WARMUP_HELP, WARMUP_HELP, StageConfig,
                                              WarmupCosine, stage_field)


INVERSION_VARIANTS = ("proposed", "baseline")
SCHEDULES = ("joint", "phased")


@dataclasses.dataclass(frozen=True)
class InversionTrainConfig(WarmupCosine, StageConfig):
    """What an inversion run is made of. Loss lambdas: the keys of `losses.LOSS_NAMES` (0 = off). tiny/demo use
    weight-free losses only (docs/training-inversion.md); paper-256 is HyperStyle's README training command
    (batch 8, lr 1e-4, 5 iterations per batch, L2 1.0 + LPIPS-Alex 0.8 + MoCo 0.5)."""

    STAGE: ClassVar[str] = "inversion"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"steps": 40, "batch_size": 4, "lr": 1e-3, "refine_steps": 2,
                 "lambdas": {"l2": 1.0, "lpips": 0.0, "moco": 0.0, "ms_ssim": 0.0, "msl1": 0.0}},
        # demo: L2 + MS-SSIM + multi-scale L1 measured best of three weight-free sets.
        "demo": {"steps": 1500, "batch_size": 8, "lr": 5e-4, "refine_steps": 3,
                 "lambdas": {"l2": 1.0, "lpips": 0.0, "moco": 0.0, "ms_ssim": 0.5, "msl1": 1.0}},
        "paper-256": {"steps": 500_000, "batch_size": 8, "lr": 1e-4, "refine_steps": 5,
                      "lambdas": {"l2": 1.0, "lpips": 0.8, "moco": 0.5, "ms_ssim": 0.0, "msl1": 0.0}},
    }

    variant: str = stage_field("proposed", "proposed (image + seg encoders, two hypernetworks) or baseline "
                                      "(StyleTransformer + HyperStyle)")
    refine_steps: int = stage_field(3, "HyperStyle refinement iterations per batch")
    lr: float = stage_field(5e-4, "peak Adam learning rate (warm-up, then cosine to 10%)")
    warmup_fraction: float = stage_field(0.02, WARMUP_HELP, flag=None)
    max_warmup: int = stage_field(500, MAX_WARMUP_HELP, flag=None)
    final_lr_fraction: float = stage_field(0.1, FINAL_LR_HELP, flag=None)
    schedule: str = stage_field("joint", "joint (encoders and hypernetworks every step) or phased (encoders first, "
                                    "then hypernetworks)")
    encoder_fraction: float = stage_field(0.5, "phased: share of the steps that train the encoders alone",
                                     omit=lambda cfg: cfg.schedule != "phased")
    pretrain_steps: int = stage_field(0, "first steps that train the encoders on the generator's own samples with a latent "
                                    "loss (rows < seg_layers from one code, the rest from another; the map from "
                                    "the bundle's segmenter)", omit=0)
    seg_layers: int = stage_field(0, "proposed: W+ rows driven by the Seg Encoder (0: the rows up to 32x32, 8 of 14 at "
                                "256 px, the paper's split)", omit=0)
    edit_layout_lambda: float = stage_field(0.0, "proposed: weight of the layout-edit term (A redrawn on another scene's "
                                            "map, read back by the bundle's segmenter; training/layout.py)", omit=0)
    edit_look_lambda: float = stage_field(0.0, "proposed: weight of its look term (A's class colours kept)", omit=0)
    map_only_lambda: float = stage_field(0.0, "proposed: weight of the map-only reconstruction (each image redrawn "
                                              "from its map and w, without image deltas; training/layout.py)", omit=0)
    lambdas: dict[str, float] = dataclasses.field(default_factory=dict, metadata={"flag": "--{}-lambda"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in INVERSION_VARIANTS:
            raise InputError(f"--variant {self.variant}: expected one of {', '.join(INVERSION_VARIANTS)}.")
        if self.schedule not in SCHEDULES:
            raise InputError(f"--schedule {self.schedule}: expected one of {', '.join(SCHEDULES)}.")
        from bgedit_cli.losses import LOSS_NAMES  # torch: a config is built by training code, not by --help

        unknown = sorted(set(self.lambdas) - set(LOSS_NAMES))
        if unknown:
            raise InputError(f"unknown loss(es) {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}.")
        if not self.lr > 0 or self.refine_steps < 0:
            raise InputError("--steps, --batch-size and --lr must be positive, --refine-steps >= 0.")
        if not 0 <= self.pretrain_steps <= self.steps:
            raise InputError(f"--pretrain-steps {self.pretrain_steps}: expected 0..--steps ({self.steps}).")
        if min(self.edit_layout_lambda, self.edit_look_lambda, self.map_only_lambda) < 0:
            raise InputError("--edit-layout-lambda, --edit-look-lambda and --map-only-lambda must not be negative.")
        if self.seg_layers < 0:
            raise InputError(f"--seg-layers {self.seg_layers}: expected 0 (the default split) or a row count.")
        if not 0 <= self.encoder_fraction <= 1:
            raise InputError(f"--encoder-fraction {self.encoder_fraction}: expected a fraction in [0, 1].")
        if self.schedule == "phased" and self.refine_steps == 0:
            raise InputError("--schedule phased trains the hypernetworks after the encoders: give --refine-steps "
                             ">= 1.")

    @classmethod
    def lambda_default(cls, name: str) -> str:
        """A loss lambda per preset, for the CLI's help."""
        values = {p: v["lambdas"][name] for p, v in cls.PRESETS.items()}
        return ", ".join(f"{p} {values[p]:g}" for p in sorted(values, key=lambda p: p != "demo"))

    @property
    def encoder_steps(self) -> int:
        """Steps of the encoder-only phase (0 for the joint schedule)."""
        return int(round(self.encoder_fraction * self.steps)) if self.schedule == "phased" else 0
