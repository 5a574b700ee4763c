"""Settings of the text stages: the CLIP and the text model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Sequence

from bgedit_cli.errors import InputError
from bgedit_cli.training.configs.base import (FINAL_LR_HELP, MAX_WARMUP_HELP, WARMUP_HELP, StageConfig,
                                              WarmupCosine, stage_field)


LATENT_SOURCES = ("inversion", "samples", "both")
MAPPER_CONDITIONS = ("film", "film-delta")


@dataclasses.dataclass(frozen=True)
class TextTrainConfig(StageConfig):
    """What a text-editing run is made of (paper eq. 4: 0.9 CLIP + 0.1 similarity, generator and CLIP frozen).
    `prompts` are the trained prompts; each training code is paired with an independently drawn prompt."""

    STAGE: ClassVar[str] = "text"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"steps": 20, "batch_size": 4, "lr": 0.1, "num_latents": 16},
        # StyleCLIP's mapper: Adam lr 0.5 on equalized-lr layers with lr multiplier 0.01.
        "demo": {"steps": 3000, "batch_size": 8, "lr": 0.5, "num_latents": 2000},
        "paper-256": {"steps": 50_000, "batch_size": 8, "lr": 0.5, "num_latents": 20_000},
    }

    lr: float = stage_field(0.5, "Adam learning rate of the mapper and the Text Encoder (their layers scale it by 0.01)")
    prompts: tuple[str, ...] = stage_field(("day", "sunset", "night", "snow", "fog", "autumn", "ocean", "a village"),
                                      "the prompts trained on (comma separated)")
    text_encoder: bool = stage_field(True, "train the paper's Text Encoder (delta2 = mu + sigma * eps) beside the mapper",
                                flag="--no-text-encoder")
    alpha: float = stage_field(0.5, "weight of the mapper's delta against the Text Encoder's (paper eq. 3)")
    condition: str = stage_field("film", "how the prompt conditions the mapper: film (FiLM on the prompt's CLIP "
                                    "embedding) or film-delta (on its difference from a neutral prompt's)")
    clip_lambda: float = stage_field(0.9, "weight of the CLIP loss 1 - cos(image, prompt)")
    sim_lambda: float = stage_field(0.1, "weight of the similarity loss between edit and reconstruction")
    latent_lambda: float = stage_field(0.0, "weight of the latent L2 |ws' - ws|^2 (StyleCLIP uses 0.8)")
    direction_lambda: float = stage_field(0.0, "weight of a directional CLIP loss: the image change should point "
                                           "along the prompt's difference from the neutral prompt")
    layout_lambda: float = stage_field(0.0, "weight of a layout term: the bundle's segmenter should read the edit "
                                       "as it reads the reconstruction (cross-entropy against the "
                                       "reconstruction's classes), for the prompts of --keep-layout", omit=0)
    keep_layout: tuple[str, ...] | None = stage_field(None, "prompts whose edits must keep the layout (comma "
                                                       "separated; default: the trained prompts that are "
                                                       "style names of the data's vocabulary)")
    latent_source: str = stage_field("inversion", "training codes: inversion (the training split inverted with the "
                                             "bundle's inversion model), samples (the generator's) or both",
                                flag="--latents")
    num_latents: int = stage_field(2000, "number of training codes")
    truncation: float = stage_field(0.7, "truncation psi of the generator's sample codes", flag=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prompts or any(not p.strip() for p in self.prompts):
            raise InputError("--prompts: give at least one non-empty prompt.")
        if not self.lr > 0 or self.num_latents < 1:
            raise InputError("--lr and --num-latents must be positive.")
        if not 0 <= self.alpha <= 1:
            raise InputError(f"--alpha {self.alpha}: expected a weight in [0, 1].")
        if self.latent_source not in LATENT_SOURCES:
            raise InputError(f"--latents {self.latent_source}: expected one of {', '.join(LATENT_SOURCES)}.")
        if self.condition not in MAPPER_CONDITIONS:
            raise InputError(f"--condition {self.condition}: expected one of {', '.join(MAPPER_CONDITIONS)}.")
        if min(self.clip_lambda, self.sim_lambda, self.latent_lambda, self.direction_lambda, self.layout_lambda) < 0:
            raise InputError("loss weights must not be negative.")
        unknown = [p for p in self.keep_layout or () if p not in self.prompts]
        if unknown:
            raise InputError(f"--keep-layout: {', '.join(unknown)} not among the trained prompts "
                             f"({', '.join(self.prompts)}).")

    def layout_prompts(self, style_names: Sequence[str]) -> tuple[str, ...]:
        """The prompts the layout term applies to: `keep_layout`, else the trained prompts among `style_names`, the
        data's named looks (`data.synth.read_vocabulary(DATA).style_names`: its own vocabulary.json)."""
        if self.keep_layout is not None:
            return tuple(self.keep_layout)
        return tuple(p for p in self.prompts if p in style_names)


def read_prompts(prompts: str | None, prompts_file: Path | None) -> tuple[str, ...] | None:
    """The `prompts` override of `bgedit train text`: `--prompts` split at commas, or `--prompts-file`'s lines
    (UTF-8), blanks dropped and ends stripped; None when neither is given. Both given, or a file that cannot be
    read, is an InputError."""
    if prompts is not None and prompts_file is not None:
        raise InputError("give --prompts or --prompts-file, not both.")
    if prompts is not None:
        return tuple(p.strip() for p in prompts.split(",") if p.strip())
    if prompts_file is None:
        return None
    try:
        lines = Path(prompts_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--prompts-file {prompts_file}: cannot read it ({exc}).") from None
    return tuple(line.strip() for line in lines if line.strip())


@dataclasses.dataclass(frozen=True)
class ClipTrainConfig(WarmupCosine, StageConfig):
    """What a CLIP run is made of: a `clip.model.CLIP` of size `network` (nn/clip_model.py CLIP_PRESETS) trained
    contrastively on the dataset's captions. demo: about 1.2 s per step at batch 64 on 2 CPU cores, so 1800 steps
    take 35-40 minutes. paper-256 trains OpenAI's ViT-B/32 shape from scratch; real text editing at that scale
    uses OpenAI's released weights instead (`--clip` of the text stage)."""

    STAGE: ClassVar[str] = "clip"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"steps": 20, "batch_size": 16, "lr": 1e-3, "network": "tiny"},
        "demo": {"steps": 1800, "batch_size": 64, "lr": 5e-4, "network": "demo"},
        "paper-256": {"steps": 100_000, "batch_size": 256, "lr": 5e-4, "network": "vit-b-32"},
    }

    lr: float = stage_field(5e-4, "peak AdamW learning rate (warm-up, then cosine to 0)")
    warmup_fraction: float = stage_field(0.05, WARMUP_HELP, flag=None)
    max_warmup: int = stage_field(2000, MAX_WARMUP_HELP, flag=None)
    final_lr_fraction: float = stage_field(0.0, FINAL_LR_HELP, flag=None)
    network: str = "demo"  # the CLIP size; the image resolution is the bundle generator's (else the network's)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr > 0:
            raise InputError("--lr must be positive.")
