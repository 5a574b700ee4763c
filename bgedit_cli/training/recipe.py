"""Recipes: a bundle's whole training written down once, run by `bgedit train all --recipe FILE`.

A recipe is a TOML file: the data step, then the stages in order, each with the options of its
`bgedit train <stage>` command (without the leading dashes), so that it reads like the command lines it runs:

    description = "..."

    [data]                                # `bgedit data synth` options; without it, --data must exist
    num = 40000
    resolution = 64

    [[stage]]
    name = "segmenter"                    # unique; also the command, unless `train` names it
    preset = "demo"                       # every other key is an option of `bgedit train <train>`
    steps = 4600

    [[stage]]
    name = "inversion-hypernets"
    train = "inversion"
    bundle = "runs/inversion-hypernets"   # a bundle of its own inside BUNDLE (links to BUNDLE's other networks)
    init-from = "inversion.safetensors"   # paths are relative to BUNDLE
    replaces = "inversion.safetensors"    # once the stage is finished, its file replaces this one of BUNDLE

    [[stage]]
    name = "generator-slower"
    continues = "generator"               # the same run, resumed: a long run's later leg
    lr = 0.001                            # only what `--resume` may change (the length, and e.g. the
    steps = 140000                        # generator's learning rate and EMA half-life)

`plan_recipe` resolves every stage's config (preset + options, checked) and command line without training
(`--dry-run`); `run_recipe` runs the plan through the stage trainers, resumable stage by stage: a stage whose
latest run reached its steps with the recipe's settings is skipped, one with a saved state continues it with
`--resume`, one without starts; re-running the command continues where it stopped. A stage that `continues`
an earlier one is a later leg of that stage's run: it inherits the earlier stage's table and always resumes its
run, to more steps, with the settings `--resume` may change set anew (`RESUMABLE_FIELDS`).
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import shutil
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable

from bgedit_cli.bundle import BUNDLE_FILES, latest_run_dir
from bgedit_cli.data.synth import synthesize
from bgedit_cli.errors import BgeditError, InputError
from bgedit_cli.fileio import atomic_output
from bgedit_cli.training import clip, generator, inversion, segmenter, text
from bgedit_cli.training.configs import (ClipTrainConfig, GeneratorTrainConfig, InversionTrainConfig,
                                         SegmenterTrainConfig, StageConfig, TextTrainConfig, format_value,
                                         shell_word)
from bgedit_cli.training.runner import StageOptions
from bgedit_cli.training.state import load_state

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

# The stage commands: config, options and training function of `bgedit train <name>`.
TRAINERS: dict[str, tuple[type[StageConfig], type[StageOptions], Callable[..., dict[str, Any]]]] = {
    "segmenter": (SegmenterTrainConfig, segmenter.SegmenterTrainOptions, segmenter.train_segmenter),
    "generator": (GeneratorTrainConfig, generator.GeneratorTrainOptions, generator.train_generator),
    "inversion": (InversionTrainConfig, inversion.InversionTrainOptions, inversion.train_inversion),
    "clip": (ClipTrainConfig, clip.ClipTrainOptions, clip.train_clip),
    "text": (TextTrainConfig, text.TextTrainOptions, text.train_text),
}
STAGE_KEYS = ("name", "train", "bundle", "replaces", "continues")  # a stage table's own keys; the rest are options
LEG_KEYS = ("steps", "time-limit")  # what a continuing stage may set besides the config's RESUMABLE_FIELDS
TOP_KEYS = ("description", "data", "stage")
# Options that `train all` sets itself; an option named differently from its field.
SET_BY_RUNNER = ("data", "bundle", "preset", "overrides", "resume", "force", "progress")
OPTION_FIELDS = {"time-limit": "time_limit_min"}
DATA_FIXED = ("out", "force", "progress")  # `synthesize` arguments that are not recipe settings
DATA_STEP = "data"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe file as read: its `[data]` table (or None) and its stage tables, in order."""

    path: Path
    description: str
    data: dict[str, Any] | None
    stages: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class PlannedData:
    """The data step: `synthesize(out, **kwargs)`, i.e. `bgedit data synth --out DIR ...`."""

    out: Path
    kwargs: dict[str, Any]
    flags: list[tuple[str, Any]]

    name = DATA_STEP

    def command(self) -> str:
        return " ".join([f"bgedit data synth --out {shell_word(str(self.out))}",
                         *(f"{flag} {shell_word(format_value(v))}" for flag, v in self.flags)])


@dataclasses.dataclass(frozen=True)
class PlannedStage:
    """One stage, resolved: its config, the trainer options the recipe gives beyond the config (`options`:
    field -> value, `flags`: how the command line writes them), where it writes and what it replaces."""

    name: str
    train: str
    config: StageConfig
    given: dict[str, Any]          # the recipe's config values (None elsewhere = the preset's), as the CLI gives them
    options: dict[str, Any]
    flags: list[tuple[str, Any]]
    data: Path
    bundle: Path
    main_bundle: Path
    replaces: Path | None
    after: PlannedStage | None = None          # the stage this one continues (the run's earlier leg)
    later: tuple[tuple[str, StageConfig], ...] = ()  # (name, config) of the legs that continue this stage's run

    @property
    def run_name(self) -> str:
        """The name of its run folders (`runs/<run_name>-<time>`) and bundle file (`BUNDLE_FILES`)."""
        if isinstance(self.config, InversionTrainConfig):
            return inversion.VARIANT_STAGES[self.config.variant]
        return self.train

    @property
    def output(self) -> Path:
        return self.bundle / BUNDLE_FILES[self.run_name]

    def command(self, *, resume: bool = False, force: bool = False) -> str:
        """The `bgedit train ...` command line equivalent to running this stage."""
        words = [self.config.command(self.data, self.bundle)]
        words += [f"{flag} {shell_word(format_value(v))}" for flag, v in self.flags]
        words += ["--resume"] * (resume or self.after is not None) + ["--force"] * force
        return " ".join(words)

    def trainer_options(self, *, resume: bool, force: bool, progress: bool) -> StageOptions:
        """The stage trainer's options: what `bgedit train <train>` with this command line builds."""
        cfg_cls, opts_cls, _ = TRAINERS[self.train]
        fields = {f.name for f in dataclasses.fields(opts_cls)}
        own = {k: v for k, v in self.given.items() if k in fields and k != "preset"}  # inversion's variant, lambdas
        overrides = {k: v for k, v in self.given.items() if k not in fields and k != "preset"}
        return opts_cls(data=self.data, bundle=self.bundle, preset=self.config.preset, overrides=overrides,
                        resume=resume, force=force, progress=progress, **own, **self.options)


# ----------------------------------------------------------------------------------------------------------
# Reading and planning.


def load_recipe(path: Path) -> Recipe:
    """Read and check a recipe file's structure (the stages' options are checked by `plan_recipe`)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--recipe {path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--recipe {path}: cannot read it ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc}).") from None
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}; a recipe has {', '.join(TOP_KEYS)}.")
    stages, data = doc.get("stage", []), doc.get("data")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise InputError(f"{path}: no stages; list them as [[stage]] tables.")
    if data is not None and not isinstance(data, dict):
        raise InputError(f"{path}: `data` must be a table ([data]) of `bgedit data synth` options.")
    names = []
    for i, table in enumerate(stages, 1):
        name = table.get("name")
        if not isinstance(name, str) or not name or name == DATA_STEP or name in names:
            raise InputError(f"{path}: stage {i} needs a unique `name` other than {DATA_STEP!r} "
                             f"(got {name!r}).")
        names.append(name)
    return Recipe(path, str(doc.get("description", "")), data, stages)


def plan_recipe(recipe: Recipe, data: Path, bundle: Path, *, only: list[str] | None = None,
                time_limit_min: float | None = None, device: str = "auto") -> list[PlannedData | PlannedStage]:
    """The steps to run, in order (those of `only` if given): every stage's config resolved and checked."""
    data, bundle = Path(data).expanduser().resolve(), Path(bundle).expanduser().resolve()
    known = ([DATA_STEP] if recipe.data is not None else []) + [s["name"] for s in recipe.stages]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise InputError(f"--only {','.join(unknown)}: not in {recipe.path}; its steps: {', '.join(known)}.")
    steps: list[PlannedData | PlannedStage] = []
    if recipe.data is not None and (only is None or DATA_STEP in only):
        steps.append(_plan_data(recipe, data))
    planned: dict[str, PlannedStage] = {}
    tables: dict[str, dict[str, Any]] = {}  # each stage's table as planned (a leg's with what it inherits)
    for table in recipe.stages:
        after = table.get("continues")
        if after is not None:
            table = _leg_table(recipe.path, table, tables)
        tables[table["name"]] = table
        stage = _plan_stage(recipe.path, table, data, bundle, time_limit_min, device)
        if after is not None:
            stage = dataclasses.replace(stage, after=planned[after])
            if stage.config.steps <= stage.after.config.steps:
                raise InputError(f"{recipe.path}: stage {stage.name}: steps {stage.config.steps} must be more than "
                                 f"the {stage.after.config.steps} of stage {after}, which it continues.")
        planned[stage.name] = stage
    for name, stage in planned.items():  # each leg learns the legs that continue its run after it
        later = tuple((s.name, s.config) for s in planned.values() if name in [b.name for b in _legs_before(s)])
        if only is None or name in only:
            steps.append(dataclasses.replace(stage, later=later))
    return steps


def _legs_before(stage: PlannedStage) -> list[PlannedStage]:
    """The stages whose run `stage` continues, nearest first."""
    out, at = [], stage.after
    while at is not None:
        out.append(at)
        at = at.after
    return out


def _leg_table(path: Path, table: dict[str, Any], earlier: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A continuing stage's table: the earlier stage's (as planned), with this leg's length and resumable
    settings."""
    name, after = table["name"], table["continues"]
    where = f"{path}: stage {name}"
    if not isinstance(after, str) or after not in earlier:
        raise InputError(f"{where}: continues = {after!r}: expected the name of an earlier stage "
                         f"({', '.join(earlier) or 'none'}).")
    base = earlier[after]
    train = base.get("train", after)
    cfg_cls = TRAINERS[train][0]
    flags = cfg_cls.options()
    allowed = [*LEG_KEYS, *(f[2:] for f, names in flags.items() if set(names) <= set(cfg_cls.RESUMABLE_FIELDS))]
    for key in table:
        if key not in ("name", "continues") and key not in allowed:
            raise InputError(f"{where}: {key}: a stage that continues another may set only "
                             f"{', '.join(dict.fromkeys(allowed))} (what `bgedit train {train} --resume` may "
                             "change); the rest comes from the stage it continues.")
    inherited = {k: v for k, v in base.items() if k not in ("name", "init-from")} | {"train": train}
    return {**inherited, **{k: v for k, v in table.items() if k != "continues"}}


def _plan_data(recipe: Recipe, out: Path) -> PlannedData:
    hints = typing.get_type_hints(synthesize)
    kwargs, flags = {}, []
    for key, value in recipe.data.items():
        name = key.replace("-", "_")
        if name not in hints or name in DATA_FIXED or name == "return":
            known = ", ".join(k.replace("_", "-") for k in hints if k not in (*DATA_FIXED, "return"))
            raise InputError(f"{recipe.path}: [data] {key}: not a `bgedit data synth` option ({known}).")
        kwargs[name] = _coerce(hints[name], value, f"{recipe.path}: [data] {key}")
        flags.append(("--" + name.replace("_", "-"), kwargs[name]))
    return PlannedData(out, kwargs, flags)


def _plan_stage(path: Path, table: dict[str, Any], data: Path, bundle: Path, time_limit_min: float | None,
                device: str) -> PlannedStage:
    name = table["name"]
    where = f"{path}: stage {name}"
    train = table.get("train", name)
    if train not in TRAINERS:
        raise InputError(f"{where}: train = {train!r}: expected one of {', '.join(TRAINERS)}.")
    given, options, flags = _read_options(train, {k: v for k, v in table.items() if k not in STAGE_KEYS}, bundle,
                                          where)
    if time_limit_min is not None:  # `train all --time-limit` applies to every stage
        options["time_limit_min"] = time_limit_min
        flags = [f for f in flags if f[0] != "--time-limit"] + [("--time-limit", time_limit_min)]
    if device != "auto" and "device" not in options:
        options["device"] = device
        flags.append(("--device", device))
    try:
        config = TRAINERS[train][0].for_preset(given.get("preset") or "demo",
                                               **{k: v for k, v in given.items() if k != "preset"})
    except BgeditError as exc:
        raise InputError(f"{where}: {exc}") from None
    own, replaces = table.get("bundle"), table.get("replaces")
    if not all(isinstance(v, (str, type(None))) for v in (own, replaces)):
        raise InputError(f"{where}: `bundle` and `replaces` are paths (strings) relative to the bundle.")
    if replaces is not None and own is None:
        raise InputError(f"{where}: `replaces` needs `bundle` (the stage writes into a bundle of its own).")
    stage = PlannedStage(name, train, config, given, options, flags, data,
                         (bundle / own).resolve() if own else bundle, bundle,
                         (bundle / replaces).resolve() if replaces else None)
    if stage.replaces is not None and stage.replaces.name != stage.output.name:
        raise InputError(f"{where}: replaces = {replaces!r}, but the stage writes {stage.output.name}.")
    return stage


def _read_options(train: str, table: dict[str, Any], bundle: Path, where: str
                  ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, Any]]]:
    """A stage table's options -> (config values as the command line gives them, trainer options beyond the
    config, (flag, value) of those for the command line). A key is an option's flag without its dashes."""
    cfg_cls, opts_cls, _ = TRAINERS[train]
    cfg_hints, opt_hints = typing.get_type_hints(cfg_cls), typing.get_type_hints(opts_cls)
    flags = cfg_cls.options()
    templates = {flag: names[0] for flag, names in flags.items() if "{}" in flag}  # --{}-lambda: a dict field
    run_fields = [f for f in opt_hints if f not in SET_BY_RUNNER and f not in cfg_hints]
    given: dict[str, Any] = {}
    options: dict[str, Any] = {}
    option_flags: list[tuple[str, Any]] = []
    for key, value in table.items():
        flag, here = "--" + key, f"{where}: {key}"
        template = next((t for t in templates if _matches(t, flag)), None)
        field = OPTION_FIELDS.get(key, key.replace("-", "_"))
        if flag in flags and flag not in templates:
            hint = bool if flag.startswith("--no-") else cfg_hints[flags[flag][0]]
            value = _coerce(hint, value, here)
            given.update({n: not value if flag.startswith("--no-") else value for n in flags[flag]})
        elif template is not None:
            head, tail = template.split("{}")
            part = flag[len(head):len(flag) - len(tail)].replace("-", "_")
            given.setdefault(templates[template], {})[part] = _coerce(float, value, here)
        elif field in run_fields:
            value = _coerce(opt_hints[field], value, here)
            options[field] = (bundle / value.expanduser()).resolve() if isinstance(value, Path) else value
            option_flags.append((flag, options[field]))
        else:
            known = sorted({f[2:] for f in flags if f not in templates}
                           | {f.replace("_", "-") for f in run_fields if f not in OPTION_FIELDS.values()}
                           | {k for k, f in OPTION_FIELDS.items() if f in run_fields})
            raise InputError(f"{here}: not an option of `bgedit train {train}` (options: {', '.join(known)}).")
    return given, options, option_flags


def _matches(template: str, flag: str) -> bool:
    head, tail = template.split("{}")
    return flag.startswith(head) and flag.endswith(tail) and len(flag) > len(head) + len(tail)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """A TOML value as the field's type: numbers, strings, booleans, lists for tuples, strings for paths."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # optional: TOML has no null
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list) or not value:
            example = '["a", "b"]' if item is str else "[1, 2]"
            raise InputError(f"{where}: expected a list, e.g. {example}.")
        return tuple(_coerce(item, v, where) for v in value)
    ok = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str), Path: isinstance(value, str)}.get(hint, True)
    if not ok:
        what = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                Path: "a path (string)"}[hint]
        raise InputError(f"{where}: expected {what}, got {value!r}.")
    return float(value) if hint is float else Path(value) if hint is Path else value


# ----------------------------------------------------------------------------------------------------------
# Running.


def run_recipe(steps: list[PlannedData | PlannedStage], *, force: bool = False, progress: bool = True,
               report: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run the planned steps in order; stop at the first stage a time limit stops. `report` gets one line per
    event (the command of each step, skips, copies). Returns {"finished": all done, "steps": [...]}."""
    results: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, PlannedData):
            results.append(_run_data(step, force, report))
            continue
        result = _run_stage(step, force, progress, report)
        results.append(result)
        if result["stopped_by_time"]:
            report(f"[{step.name}] stopped by the time limit at step {result['steps']}/{result['total_steps']}: "
                   "run the command again to continue.")
            return {"finished": False, "steps": results}
        if step.replaces is not None:
            _replace(step, report)
    return {"finished": True, "steps": results}


def _run_data(step: PlannedData, force: bool, report: Callable[[str], None]) -> dict[str, Any]:
    result = {"name": step.name, "command": step.command()}
    if (step.out / "metadata.jsonl").is_file():  # written last: the folder holds a whole dataset
        report(f"[data] {step.out} holds a dataset; skipped.")
        return {**result, "action": "skipped"}
    report(f"[data] $ {step.command()}" + " --force" * force)
    summary = synthesize(step.out, **step.kwargs, force=force)
    return {**result, "action": "made", "seconds": summary["seconds"]}


def _run_stage(step: PlannedStage, force: bool, progress: bool, report: Callable[[str], None]) -> dict[str, Any]:
    if step.bundle != step.main_bundle:
        _link_networks(step)
    state = _latest_state(step, force)
    base = {"name": step.name, "model": str(step.output), "total_steps": step.config.steps}
    if state is not None and state["step"] >= step.config.steps and step.output.is_file():
        report(f"[{step.name}] finished ({state['step']} steps, {state['run']}); skipped.")
        return {**base, "command": step.command(), "action": "skipped", "steps": state["step"],
                "stopped_by_time": False}
    resume = state is not None
    command = step.command(resume=resume, force=force and not resume)
    report(f"[{step.name}] $ {command}")
    _, _, train = TRAINERS[step.train]
    summary = train(step.trainer_options(resume=resume, force=force and not resume, progress=progress))
    scores = summary.get("val") or summary.get("swd") or {}
    numbers = [(k, v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    report(f"[{step.name}] step {summary['steps']}/{summary['total_steps']} in {summary['wall_seconds'] / 60:.1f} "
           "min" + "".join(f", {k} {v:.4g}" for k, v in numbers[:4]))
    return {**base, "command": command, "action": "resumed" if resume else "trained", "steps": summary["steps"],
            "minutes": round(summary["wall_seconds"] / 60, 2), "stopped_by_time": summary["stopped_by_time"],
            "scores": scores}


def _latest_state(step: PlannedStage, force: bool) -> dict[str, Any] | None:
    """The stage's latest saved run ({"step", "run"}) if it was made with the recipe's settings (its length
    aside, which --resume may raise); None when there is none, or with --force when its settings differ. In a
    run of several legs (`continues`) the settings may also be those of the leg before (not started yet) or, once
    this leg is done, those of a later leg."""
    run_dir = latest_run_dir(step.bundle, step.run_name)
    first = _legs_before(step)[-1] if step.after is not None else step
    if run_dir is None:
        if step.after is not None:
            raise InputError(f"stage {step.name} continues the run of stage {first.name}, and {step.bundle} has "
                             f"none: run stage {first.name} first.")
        return None
    state = load_state(run_dir / "state.safetensors")
    saved = type(step.config).from_dict(state["settings"])
    at = int(state["step"])

    def made_by(config: StageConfig) -> bool:  # the run's settings are this config's (its length at most)
        return saved.replace(steps=config.steps) == config and saved.steps <= config.steps

    if step.after is not None and at < step.after.config.steps and made_by(step.after.config):
        raise InputError(f"stage {step.name} continues stage {step.after.name}, whose run {run_dir} is at step "
                         f"{at} of {step.after.config.steps}: run stage {step.after.name} first.")
    fits = made_by(step.config) or (at >= step.config.steps and any(made_by(c) for _, c in step.later)) or (
        step.after is not None and at >= step.after.config.steps and made_by(step.after.config))
    if not fits:
        if force and step.after is None:
            return None
        # Compare with the leg the run was in: the first whose length covers the run's.
        legs = [(s.name, s.config) for s in reversed(_legs_before(step))] + [(step.name, step.config), *step.later]
        name, config = next(((n, c) for n, c in legs if c.steps >= saved.steps), legs[-1])
        diff = ", ".join(f"{f.name} {format_value(getattr(saved, f.name))} (recipe: "
                         f"{format_value(getattr(config, f.name))})" for f in dataclasses.fields(saved)
                         if getattr(saved, f.name) != getattr(config, f.name))
        again = f"stage {first.name}" if len(legs) > 1 else "the stage"
        raise InputError(f"stage {name}: the run {run_dir} has other settings: {diff}. Give --force to train "
                         f"{again} again from the start, or change the recipe back.")
    return {"step": at, "run": str(run_dir)}


def _link_networks(step: PlannedStage) -> None:
    """A stage's own bundle reads the main bundle's other networks (the generator...) through links."""
    step.bundle.mkdir(parents=True, exist_ok=True)
    for file in BUNDLE_FILES.values():
        src, link = step.main_bundle / file, step.bundle / file
        if file == step.output.name or not src.is_file() or os.path.lexists(link):
            continue
        try:
            link.symlink_to(os.path.relpath(src, link.parent))
        except OSError:  # no symbolic links here (some Windows set-ups): a copy
            with atomic_output(link) as tmp:
                shutil.copyfile(src, tmp)


def _replace(step: PlannedStage, report: Callable[[str], None]) -> None:
    """The finished stage's file replaces the main bundle's (atomically; nothing to do when they are equal)."""
    if step.replaces.is_file() and filecmp.cmp(step.output, step.replaces, shallow=False):
        return
    with atomic_output(step.replaces) as tmp:
        shutil.copyfile(step.output, tmp)
    report(f"[{step.name}] {step.output} replaces {step.replaces}.")


def plan_summary(steps: list[PlannedData | PlannedStage]) -> list[dict[str, str]]:
    """The plan as `--dry-run` prints it: each step's name and command line."""
    return [{"name": s.name, "command": s.command()} for s in steps]

