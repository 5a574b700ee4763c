"""Training settings: one frozen config per stage, each default written once.

A stage's config lists its fields and `PRESETS` (the field values per preset); `for_preset(name, **overrides)`
fills the rest from the preset, `resolve(...)` adds the `--resume` rules, and the CLI reads option defaults and
help from the same table (`preset_default`). A field's metadata names its `bgedit train <stage>` option, so
`command()` writes the command line of a run from the fields alone (and recipes, training/recipe.py, read the
same names). The run's state stores `cfg.to_dict()`, so `--resume` keeps it.
Modules: base.py (StageConfig, generated commands), image.py (segmenter, generator), inversion.py, text.py
(CLIP, text). No torch here: `bgedit --help` reads it.
"""

from bgedit_cli.training.configs.base import StageConfig, WarmupCosine, format_value, launch, shell_word
from bgedit_cli.training.configs.image import (AUGMENT_MODES, DEFAULT_POLICY, GeneratorTrainConfig,
                                               SegmenterTrainConfig)
from bgedit_cli.training.configs.inversion import INVERSION_VARIANTS, SCHEDULES, InversionTrainConfig
from bgedit_cli.training.configs.text import (LATENT_SOURCES, MAPPER_CONDITIONS, ClipTrainConfig, TextTrainConfig,
                                              read_prompts)

__all__ = ["AUGMENT_MODES", "DEFAULT_POLICY", "INVERSION_VARIANTS", "LATENT_SOURCES", "MAPPER_CONDITIONS", "SCHEDULES",
           "ClipTrainConfig", "GeneratorTrainConfig", "InversionTrainConfig", "SegmenterTrainConfig", "StageConfig",
           "TextTrainConfig", "WarmupCosine", "format_value", "launch", "read_prompts", "shell_word"]
