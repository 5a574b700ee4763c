"""The stage config base: fields with their CLI flags and help, presets, the --resume rule, generated command
lines. No torch here: `bgedit --help` reads it."""

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


def stage_field(default: Any, help: str, *, flag: str | None = AUTO, omit: Any = _KEEP) -> Any:
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
    # What `--resume` may change: the length, and in a subclass the settings a long run retunes between legs
    # (the generator's EMA half-life and learning rate). The resume record in the log holds the new values.
    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("steps",)

    preset: str = stage_field("demo", "tiny, demo or paper-256: resolution, network sizes and training defaults")
    steps: int = stage_field(1, "total optimizer steps, counted from the start of the run (with --resume too)")
    batch_size: int = stage_field(1, "global batch size, split over processes")
    seed: int = stage_field(0, "seed of every random draw: initialization, data order, flips (and latents, noise)")

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
        """Command line > resumed run > preset. With a saved run only `RESUMABLE_FIELDS` may change: any other
        given value that differs from the run's is refused. `flags` names the option of each overridden field."""
        if saved is None:
            return cls.for_preset(preset or "demo", **overrides)
        cfg = cls.from_dict(saved)
        given = {"preset": preset, **overrides}
        for name, value in given.items():
            if value is None or name in cls.RESUMABLE_FIELDS or value == getattr(cfg, name):
                continue
            flag = flags.get(name) or next((f for f, names in cls.options().items() if name in names),
                                           "--" + name.replace("_", "-"))
            old = format_value(getattr(cfg, name))
            raise InputError(f"{flag} {format_value(value)} differs from the resumed run's {old}; the run keeps "
                             f"{name} (saved {old}). Leave {flag} out to resume, or start a new run without --resume.")
        return cfg.replace(**{k: overrides[k] for k in cls.RESUMABLE_FIELDS if overrides.get(k) is not None})

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
