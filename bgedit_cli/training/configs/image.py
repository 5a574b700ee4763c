"""Settings of the stages that train on images alone: the segmenter and the generator."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from bgedit_cli.errors import ConfigError, InputError
from bgedit_cli.training.configs.base import (FINAL_LR_HELP, MAX_WARMUP_HELP, WARMUP_HELP, StageConfig,
                                              WarmupCosine, stage_field, format_value)


@dataclasses.dataclass(frozen=True)
class SegmenterTrainConfig(WarmupCosine, StageConfig):
    """What a segmenter run is made of. The demo values are the measured ones of docs/segmenter.md."""

    STAGE: ClassVar[str] = "segmenter"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"steps": 40, "batch_size": 8, "lr": 3e-3, "class_balance": 0.5, "progressive": 0.0},
        "demo": {"steps": 4600, "batch_size": 8, "lr": 1e-2, "class_balance": 0.5, "progressive": 0.5},
        "paper-256": {"steps": 80000, "batch_size": 16, "lr": 1e-3, "class_balance": 0.5, "progressive": 0.5},
    }

    lr: float = stage_field(1e-2, "peak AdamW learning rate (warm-up, then cosine to 0)")
    warmup_fraction: float = stage_field(0.05, WARMUP_HELP, flag=None)
    max_warmup: int = stage_field(500, MAX_WARMUP_HELP, flag=None)
    final_lr_fraction: float = stage_field(0.0, FINAL_LR_HELP, flag=None)
    class_balance: float = stage_field(0.5, "weigh class c's pixels by f_c^-P (f_c: its pixel frequency in the "
                                       "training maps); 0 = plain cross-entropy")
    progressive: float = stage_field(0.5, "fraction of the steps at reduced resolution: the first half of it at 1/4 "
                                     "with 16x the images per step, the rest at 1/2 with 4x (same compute); 0 = off")
    degrade: float = stage_field(0.0, "share of the training images given a random degradation (blur, half "
                                 "resolution, gain/offset, noise), so that reconstructions and photos read as clean "
                                 "renders do; 0 = off")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr > 0:
            raise InputError("--lr must be positive.")
        if not 0 <= self.class_balance <= 1:
            raise InputError(f"--class-balance {self.class_balance}: expected a power between 0 and 1.")
        if not 0 <= self.progressive <= 1:
            raise InputError(f"--progressive {self.progressive}: expected a fraction of the steps, 0..1.")
        if not 0 <= self.degrade <= 1:
            raise InputError(f"--degrade {self.degrade}: expected a share of the images, 0..1.")


AUGMENT_MODES = ("none", "diffaug", "ada")
DEFAULT_POLICY = "color,translation,cutout"


@dataclasses.dataclass(frozen=True)
class GeneratorTrainConfig(StageConfig):
    """StyleGAN2 training hyperparameters (network sizes are GENERATOR_PRESETS in nn/stylegan2.py).

    gamma follows the ADA paper's heuristic 0.0002 * R^2 / batch where it is not the paper's value; `demo` was
    tuned by measured runs on 2 CPU cores (docs/training-generator.md): batch 4 beat 8 and 16 at equal wall
    time, and 16000 steps (64 kimg) is about 60 minutes there. Its gamma stays at the batch-8 heuristic's 0.1,
    the value those runs used.
    """

    STAGE: ClassVar[str] = "generator"
    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("steps", "ema_kimg", "g_lr", "d_lr")  # a long run's later legs
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=200, batch_size=8, g_lr=0.002, d_lr=0.002, r1_gamma=0.01, pl_weight=2.0, ema_kimg=0.1,
                     swd_images=64, swd_patches=16, grid_cols=4, grid_rows=2),
        "demo": dict(steps=16000, batch_size=4, g_lr=0.0025, d_lr=0.0025, r1_gamma=0.1, pl_weight=0.0,
                     ema_kimg=2.0, swd_images=512, swd_patches=16),
        "paper-256": dict(steps=200_000, batch_size=32, g_lr=0.002, d_lr=0.002, r1_gamma=10.0, pl_weight=2.0,
                          ema_kimg=10.0, swd_images=2048, swd_patches=4),
    }

    channels: tuple[int, ...] | None = stage_field(None, "G and D widths per resolution 4..R px, comma-separated "
                                                    "(e.g. 128,128,64,64,64); default: the preset's network")
    g_lr: float = stage_field(0.0025, "Adam learning rate of G and D (may change on --resume: a long run's later "
                                      "legs lower it)", flag="--lr")
    d_lr: float = dataclasses.field(default=0.0025, metadata={"flag": "--lr"})  # --lr sets both
    r1_gamma: float = stage_field(0.05, "R1 weight gamma")
    r1_interval: int = 16
    pl_weight: float = stage_field(0.0, "path-length regularization weight, 0: off")
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = stage_field(10.0, "half-life of the EMA generator in thousands of images (may change on "
                                        "--resume)")
    ema_rampup: float | None = 0.05
    w_avg_beta: float = 0.995
    augment: str = stage_field("none", "none, diffaug (DiffAugment color, translation, cutout) or ada (the same with "
                                  "an adaptive probability)")
    augment_policy: str = DEFAULT_POLICY
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0
    swd_images: int = 1024
    swd_patches: int = 8
    grid_cols: int = 8
    grid_rows: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment not in AUGMENT_MODES:
            raise InputError(f"--augment {self.augment}: expected one of {', '.join(AUGMENT_MODES)}.")
        if min(self.r1_interval, self.pl_interval, self.swd_images) < 1:
            raise ConfigError("intervals and swd_images must be positive.")
        if min(self.g_lr, self.d_lr, self.r1_gamma, self.pl_weight, self.ema_kimg) < 0:
            raise ConfigError("learning rates, gamma, pl_weight and ema_kimg must not be negative.")
        if self.channels is not None and (not self.channels or min(self.channels) < 1):
            raise InputError(f"--channels {format_value(self.channels)}: expected positive widths, one per resolution.")

    @property
    def kimg(self) -> float:
        return self.steps * self.batch_size / 1000
