"""Training settings: one frozen config per stage, each default written once.

A stage's config lists its fields and `PRESETS` (the field values per preset); `for_preset(name, **overrides)`
fills the rest from the preset, `resolve(...)` adds the `--resume` rules, and the CLI reads option defaults and
help from the same table (`preset_default`). A field's metadata names its `bgedit train <stage>` option, so
`command()` writes the command line of a run from the fields alone (and recipes, training/recipe.py, read the
same names). The run's state stores `cfg.to_dict()`, so `--resume` keeps it.
This module imports no torch: `bgedit --help` reads it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from bgedit_cli.config import Config
from bgedit_cli.errors import ConfigError, InputError

C = TypeVar("C", bound="StageConfig")
AUTO = "auto"  # a field's flag: `--` + its name with dashes
_KEEP = object()  # a field's `omit`: never left out of the command


def _field(default: Any, help: str, *, flag: str | None = AUTO, omit: Any = _KEEP) -> Any:
    """A config field and its option: `help` (cli/train_options.py reads it), `flag` (AUTO: `--name-with-dashes`;
    None: no option; `--no-x`: a switch that turns a bool off; `--{}-x`: one option per key of a dict) and `omit`:
    `command()` leaves the field out at this value, or where this function of the config says so (and at None)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "omit": omit})


# The warm-up + cosine schedule (`warmup_cosine_lr`, training/common.py): config fields, not options.
WARMUP_HELP = "share of the steps of the linear learning-rate warm-up"
MAX_WARMUP_HELP = "at most this many warm-up steps"
FINAL_LR_HELP = "the cosine ends at this fraction of the peak learning rate"


class WarmupCosine:
    """A stage config with a learning-rate schedule: linear warm-up over `warmup_fraction` of the steps (at most
    `max_warmup`), then cosine from `lr` to `final_lr_fraction * lr` (fields of the config, defaults per stage)."""

    warmup_fraction: float
    max_warmup: int
    final_lr_fraction: float

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        if not (0 <= self.warmup_fraction <= 1 and 0 <= self.final_lr_fraction <= 1 and self.max_warmup >= 0):
            raise ConfigError(f"warmup_fraction {self.warmup_fraction} and final_lr_fraction "
                              f"{self.final_lr_fraction}: expected fractions in [0, 1]; max_warmup "
                              f"{self.max_warmup}: expected >= 0.")

    def lr_schedule(self) -> dict[str, float]:
        """The keyword arguments of `warmup_cosine_lr` besides step, total and base lr."""
        return {"warmup_fraction": self.warmup_fraction, "max_warmup": self.max_warmup,
                "final_fraction": self.final_lr_fraction}


@dataclasses.dataclass(frozen=True)
class StageConfig(Config):
    """A stage's training settings. Subclasses list their fields and `PRESETS` (field values per preset);
    `for_preset(name, **overrides)` fills the rest from the preset, and the CLI's option defaults and help
    are read from the same table (`preset_default`). Stored in the run's state so `--resume` keeps it."""

    STAGE: ClassVar[str] = ""  # the command: `bgedit train STAGE`
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    LENGTH_FIELDS: ClassVar[tuple[str, ...]] = ("steps",)  # what `--resume` may change

    preset: str = _field("demo", "tiny, demo or paper-256: resolution, network sizes and training defaults")
    steps: int = _field(1, "total optimizer steps, counted from the start of the run (with --resume too)")
    batch_size: int = _field(1, "global batch size, split over processes")
    seed: int = _field(0, "seed of every random draw: initialization, data order, flips (and latents, noise)")

    def __post_init__(self) -> None:
        if self.preset not in self.PRESETS:
            raise ConfigError(f"preset {self.preset!r}: expected one of {', '.join(self.PRESETS)}.")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be positive.")

    @classmethod
    def for_preset(cls: type[C], preset: str, **overrides: Any) -> C:
        """The preset's settings with `overrides` (None = keep the preset's)."""
        if preset not in cls.PRESETS:
            raise InputError(f"--preset {preset}: expected one of {', '.join(cls.PRESETS)}.")
        values = dict(cls.PRESETS[preset])
        for name, value in overrides.items():
            if value is not None:  # a dict (loss lambdas) updates the preset's, key by key
                values[name] = {**values[name], **value} if isinstance(value, dict) and name in values else value
        return cls(preset=preset, **values)

    @classmethod
    def preset_default(cls, name: str) -> str:
        """`demo 4600, tiny 40, paper-256 80000`: a field's value per preset, for the CLI's help."""
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        values = {p: v.get(name, field.default) for p, v in cls.PRESETS.items()}
        if len(set(map(repr, values.values()))) == 1:
            return format_value(next(iter(values.values())))
        order = sorted(values, key=lambda p: p != "demo")
        return ", ".join(f"{p} {format_value(values[p])}" for p in order)

    @classmethod
    def resolve(cls: type[C], preset: str | None, overrides: dict[str, Any], flags: dict[str, str],
                saved: dict[str, Any] | None) -> C:
        """Command line > resumed run > preset. With a saved run only the length may change: any other given
        value that differs from the run's is refused. `flags` names the option of each overridden field."""
        if saved is None:
            return cls.for_preset(preset or "demo", **overrides)
        cfg = cls.from_dict(saved)
        given = {"preset": preset, **overrides}
        for name, value in given.items():
            if value is None or name in cls.LENGTH_FIELDS or value == getattr(cfg, name):
                continue
            flag = flags.get(name) or next((f for f, names in cls.options().items() if name in names),
                                           "--" + name.replace("_", "-"))
            old = format_value(getattr(cfg, name))
            raise InputError(f"{flag} {format_value(value)} differs from the resumed run's {old}; the run keeps "
                             f"{name} (saved {old}). Leave {flag} out to resume, or start a new run without --resume.")
        return cfg.replace(**{k: overrides[k] for k in cls.LENGTH_FIELDS if overrides.get(k) is not None})

    # The command line.

    @classmethod
    def options(cls) -> dict[str, list[str]]:
        """`{flag: [field, ...]}`: the fields that are options of `bgedit train STAGE`, in field order. A dict
        field's flag is a template (`--{}-lambda`: one option per key); several fields may share a flag (the
        generator's `--lr` sets g_lr and d_lr)."""
        out: dict[str, list[str]] = {}
        for f in dataclasses.fields(cls):
            flag = f.metadata.get("flag")
            if flag is not None:
                out.setdefault("--" + f.name.replace("_", "-") if flag == AUTO else flag, []).append(f.name)
        return out

    def command(self, data: Path, bundle: Path, world_size: int = 1, time_limit_min: float | None = None) -> str:
        """The command line that reproduces this run's settings (lists of words in double quotes)."""
        words = [f"{launch(world_size)} train {self.STAGE} --data {shell_word(str(data))} "
                 f"--model {shell_word(str(bundle))}"]
        words += [flag if value is None else f"{flag} {shell_word(value, always=texts)}"
                  for flag, value, texts in self._args()]
        if time_limit_min is not None:
            words.append(f"--time-limit {format_value(time_limit_min)}")
        return " ".join(words)

    def _args(self) -> list[tuple[str, str | None, bool]]:
        """(flag, value, is a list of words) of each option the command shows, in field order."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        out: list[tuple[str, str | None, bool]] = []
        for flag, names in self.options().items():
            value, omit = getattr(self, names[0]), fields[names[0]].metadata.get("omit", _KEEP)
            if value is None or omit is not _KEEP and (omit(self) if callable(omit) else value == omit):
                continue
            if isinstance(value, dict):
                out += [(flag.format(key.replace("_", "-")), format_value(v), False) for key, v in value.items()]
            elif isinstance(value, bool):
                if value != flag.startswith("--no-"):  # `--no-x` when off, `--x` when on
                    out.append((flag, None, False))
            else:
                texts = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
                out.append((flag, format_value(value), texts))
        return out


_SAFE = re.compile(r"[\w@%+=:,./-]+")


def shell_word(text: str, always: bool = False) -> str:
    """`text` as one shell word: bare when safe, else in double quotes (\\, ", $ and ` escaped)."""
    if _SAFE.fullmatch(text) and not always:
        return text
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def launch(world_size: int) -> str:
    """How a command line starts: `bgedit`, or torchrun for several processes."""
    return f"torchrun --nproc_per_node {world_size} -m bgedit_cli" if world_size > 1 else "bgedit"


def format_value(value: Any) -> str:
    """A value as the command line writes it: floats as short as they stay exact (0.0025, 0, 1e-05)."""
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


@dataclasses.dataclass(frozen=True)
class SegmenterTrainConfig(WarmupCosine, StageConfig):
    """What a segmenter run is made of. The demo values are the measured ones of docs/segmenter.md."""

    STAGE: ClassVar[str] = "segmenter"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"steps": 40, "batch_size": 8, "lr": 3e-3, "class_balance": 0.5, "progressive": 0.0},
        "demo": {"steps": 4600, "batch_size": 8, "lr": 1e-2, "class_balance": 0.5, "progressive": 0.5},
        "paper-256": {"steps": 80000, "batch_size": 16, "lr": 1e-3, "class_balance": 0.5, "progressive": 0.5},
    }

    lr: float = _field(1e-2, "peak AdamW learning rate (warm-up, then cosine to 0)")
    warmup_fraction: float = _field(0.05, WARMUP_HELP, flag=None)
    max_warmup: int = _field(500, MAX_WARMUP_HELP, flag=None)
    final_lr_fraction: float = _field(0.0, FINAL_LR_HELP, flag=None)
    class_balance: float = _field(0.5, "weigh class c's pixels by f_c^-P (f_c: its pixel frequency in the "
                                       "training maps); 0 = plain cross-entropy")
    progressive: float = _field(0.5, "fraction of the steps at reduced resolution: the first half of it at 1/4 "
                                     "with 16x the images per step, the rest at 1/2 with 4x (same compute); 0 = off")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr > 0:
            raise InputError("--lr must be positive.")
        if not 0 <= self.class_balance <= 1:
            raise InputError(f"--class-balance {self.class_balance}: expected a power between 0 and 1.")
        if not 0 <= self.progressive <= 1:
            raise InputError(f"--progressive {self.progressive}: expected a fraction of the steps, 0..1.")


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
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=200, batch_size=8, g_lr=0.002, d_lr=0.002, r1_gamma=0.01, pl_weight=2.0, ema_kimg=0.1,
                     swd_images=64, swd_patches=16, grid_cols=4, grid_rows=2),
        "demo": dict(steps=16000, batch_size=4, g_lr=0.0025, d_lr=0.0025, r1_gamma=0.1, pl_weight=0.0,
                     ema_kimg=2.0, swd_images=512, swd_patches=16),
        "paper-256": dict(steps=200_000, batch_size=32, g_lr=0.002, d_lr=0.002, r1_gamma=10.0, pl_weight=2.0,
                          ema_kimg=10.0, swd_images=2048, swd_patches=4),
    }

    channels: tuple[int, ...] | None = _field(None, "G and D widths per resolution 4..R px, comma-separated "
                                                    "(e.g. 128,128,64,64,64); default: the preset's network")
    g_lr: float = _field(0.0025, "Adam learning rate of G and D", flag="--lr")
    d_lr: float = dataclasses.field(default=0.0025, metadata={"flag": "--lr"})  # --lr sets both
    r1_gamma: float = _field(0.05, "R1 weight gamma")
    r1_interval: int = 16
    pl_weight: float = _field(0.0, "path-length regularization weight, 0: off")
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    w_avg_beta: float = 0.995
    augment: str = _field("none", "none, diffaug (DiffAugment color, translation, cutout) or ada (the same with "
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

    variant: str = _field("proposed", "proposed (image + seg encoders, two hypernetworks) or baseline "
                                      "(StyleTransformer + HyperStyle)")
    refine_steps: int = _field(3, "HyperStyle refinement iterations per batch")
    lr: float = _field(5e-4, "peak Adam learning rate (warm-up, then cosine to 10%)")
    warmup_fraction: float = _field(0.02, WARMUP_HELP, flag=None)
    max_warmup: int = _field(500, MAX_WARMUP_HELP, flag=None)
    final_lr_fraction: float = _field(0.1, FINAL_LR_HELP, flag=None)
    schedule: str = _field("joint", "joint (encoders and hypernetworks every step) or phased (encoders first, "
                                    "then hypernetworks)")
    encoder_fraction: float = _field(0.5, "phased: share of the steps that train the encoders alone",
                                     omit=lambda cfg: cfg.schedule != "phased")
    pretrain_steps: int = _field(0, "first steps that train the encoders on the generator's own samples with a latent "
                                    "loss (rows < seg_layers from one code, the rest from another; the map from "
                                    "the bundle's segmenter)", omit=0)
    seg_layers: int = _field(0, "proposed: W+ rows driven by the Seg Encoder (0: the rows up to 32x32, 8 of 14 at "
                                "256 px, the paper's split)", omit=0)
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

    lr: float = _field(0.5, "Adam learning rate of the mapper and the Text Encoder (their layers scale it by 0.01)")
    prompts: tuple[str, ...] = _field(("day", "sunset", "night", "snow", "fog", "autumn", "ocean", "a village"),
                                      "the prompts trained on (comma separated)")
    text_encoder: bool = _field(True, "train the paper's Text Encoder (delta2 = mu + sigma * eps) beside the mapper",
                                flag="--no-text-encoder")
    alpha: float = _field(0.5, "weight of the mapper's delta against the Text Encoder's (paper eq. 3)")
    condition: str = _field("film", "how the prompt conditions the mapper: film (FiLM on the prompt's CLIP "
                                    "embedding) or film-delta (on its difference from a neutral prompt's)")
    clip_lambda: float = _field(0.9, "weight of the CLIP loss 1 - cos(image, prompt)")
    sim_lambda: float = _field(0.1, "weight of the similarity loss between edit and reconstruction")
    latent_lambda: float = _field(0.0, "weight of the latent L2 |ws' - ws|^2 (StyleCLIP uses 0.8)")
    direction_lambda: float = _field(0.0, "weight of a directional CLIP loss: the image change should point "
                                           "along the prompt's difference from the neutral prompt")
    layout_lambda: float = _field(0.0, "weight of a layout term: the bundle's segmenter should read the edit "
                                       "as it reads the reconstruction (cross-entropy against the "
                                       "reconstruction's classes), for the prompts of --keep-layout", omit=0)
    keep_layout: tuple[str, ...] | None = _field(None, "prompts whose edits must keep the layout (comma "
                                                       "separated; default: the trained prompts that are "
                                                       "synthetic style names)")
    latent_source: str = _field("inversion", "training codes: inversion (the training split inverted with the "
                                             "bundle's inversion model), samples (the generator's) or both",
                                flag="--latents")
    num_latents: int = _field(2000, "number of training codes")
    truncation: float = _field(0.7, "truncation psi of the generator's sample codes", flag=None)

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

    def layout_prompts(self) -> tuple[str, ...]:
        """The prompts the layout term applies to: `keep_layout`, else the trained synthetic style names."""
        from bgedit_cli.data.synth import STYLE_NAMES

        if self.keep_layout is not None:
            return tuple(self.keep_layout)
        return tuple(p for p in self.prompts if p in STYLE_NAMES)


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

    lr: float = _field(5e-4, "peak AdamW learning rate (warm-up, then cosine to 0)")
    warmup_fraction: float = _field(0.05, WARMUP_HELP, flag=None)
    max_warmup: int = _field(2000, MAX_WARMUP_HELP, flag=None)
    final_lr_fraction: float = _field(0.0, FINAL_LR_HELP, flag=None)
    network: str = "demo"  # the CLIP size; the image resolution is the bundle generator's (else the network's)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr > 0:
            raise InputError("--lr must be positive.")
