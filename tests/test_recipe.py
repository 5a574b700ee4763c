"""Recipes and `bgedit train all`: the demo recipe reproduces the model card's commands and the shipped files'
settings; stage commands are generated from the config fields and parse back to the same config; a tiny recipe
trains end to end, resumes stage by stage, and refuses what it cannot do with one clear error."""

from __future__ import annotations

import json
import re
import shlex
import typing
from pathlib import Path

import pytest

from conftest import REPO, assert_clean_error

from bgedit_cli.checkpoint import read_header
from bgedit_cli.training.configs import StageConfig
from bgedit_cli.training.recipe import TRAINERS, Recipe, load_recipe, plan_recipe

DEMO = REPO / "recipes" / "demo.toml"
CARD = REPO / "models" / "demo" / "MODEL_CARD.md"
# Model card rows (the "Stages" table) -> recipe stages; the shipped file each stage made.
CARD_ROWS = {"segmenter": "segmenter", "generator": "generator", "inversion (proposed)": "inversion",
             "inversion (proposed), hypernetworks longer": "inversion-hypernets",
             "inversion (baseline)": "inversion-baseline", "clip": "clip", "text": "text"}
SHIPPED = {"segmenter": "segmenter", "generator": "generator", "inversion-hypernets": "inversion",
           "inversion-baseline": "inversion-baseline", "clip": "clip", "text": "text"}  # stage -> file stem
LEG_FLAGS = ("--time-limit", "--resume")  # how one leg of a run was cut, not a setting of the run
SWITCHES = ("--no-text-encoder", "--resume", "--force")


def table_from_args(train: str, args: list[str]) -> dict[str, typing.Any]:
    """`--flag value ...` of `bgedit train TRAIN` -> a recipe stage table (values typed as TOML gives them)."""
    cfg_cls = TRAINERS[train][0]
    hints, flags = typing.get_type_hints(cfg_cls), cfg_cls.options()
    table: dict[str, typing.Any] = {"name": train, "train": train}
    i = 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("--"), (flag, args)
        if flag in SWITCHES:
            table[flag[2:]], i = True, i + 1
            continue
        text, i = args[i + 1], i + 2
        hint = hints[flags[flag][0]] if flag in flags else None
        if hint is not None and "tuple" in str(hint):
            item = int if "int" in str(hint) else str
            table[flag[2:]] = [item(v) for v in text.split(",")]
        elif re.fullmatch(r"-?\d+", text):
            table[flag[2:]] = int(text)
        elif re.fullmatch(r"-?[\d.]+(e-?\d+)?", text):
            table[flag[2:]] = float(text)
        else:
            table[flag[2:]] = text
    return table


def plan_one(table: dict, data: Path, bundle: Path):
    return plan_recipe(Recipe(Path("test.toml"), "", None, [table]), data, bundle)[0]


def card_commands() -> dict[str, list[str]]:
    """Each card row's command (after `bgedit train STAGE`), as argv, with its final length (the last
    `--steps N` the row names) and without the flags of single legs."""
    text = CARD.read_text(encoding="utf-8")
    section = text[text.index("## Stages"):text.index("## Results")]
    out = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if cells[0] not in CARD_ROWS:
            continue
        spans = re.findall(r"`([^`]+)`", cells[1])
        args = shlex.split(spans[0])
        assert args[0] == "train", spans[0]
        steps = [m.group(1) for s in spans[1:] if (m := re.fullmatch(r"(?:--resume )?--steps (\d+)", s))]
        kept, i = [], 2
        while i < len(args):
            if args[i] in LEG_FLAGS:
                i += 1 if args[i] in SWITCHES else 2
                continue
            kept += [args[i]] if args[i] in SWITCHES else args[i:i + 2]
            i += 1 if args[i] in SWITCHES else 2
        if steps:
            kept[kept.index("--steps") + 1] = steps[-1]
        out[CARD_ROWS[cells[0]]] = [args[1], *kept]
    assert sorted(out) == sorted(CARD_ROWS.values()), out
    return out


@pytest.fixture(scope="module")
def demo_plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-plan")
    data, bundle = root / "data", root / "bundle"
    return data, bundle, {s.name: s for s in plan_recipe(load_recipe(DEMO), data, bundle)}


def test_demo_recipe_reproduces_the_model_card(cli, demo_plan):
    data, bundle, plan = demo_plan
    result = cli(["train", "all", "--recipe", DEMO, "--data", data, "--model", bundle, "--dry-run", "--json"])
    assert result.exit_code == 0, result.stderr
    printed = {s["name"]: s["command"] for s in json.loads(result.stdout)["steps"]}
    assert list(printed) == ["data", "segmenter", "generator", "inversion", "inversion-hypernets",
                             "inversion-baseline", "clip", "text"]

    # The data step: the card's `bgedit data synth` command, option for option.
    card_data = re.search(r"`bgedit data synth --out DATA ([^`]+)`", CARD.read_text(encoding="utf-8")).group(1)
    ours = shlex.split(printed["data"])
    assert ours[:5] == ["bgedit", "data", "synth", "--out", str(data.resolve())]
    assert ours[5:] == shlex.split(card_data)

    # Each stage: the card's command and the printed one resolve to the same settings, and every option the
    # card names appears in the printed command with the same value.
    for name, (train, *card_args) in card_commands().items():
        words = shlex.split(printed[name])
        assert words[:3] == ["bgedit", "train", train] and words[3:5] == ["--data", str(data.resolve())], words
        model = Path(words[6])
        card_args = [a.replace("FIRST", str(bundle.resolve())) for a in card_args]
        card = plan_one({**table_from_args(train, card_args), "name": name}, data, model)
        again = plan_one({**table_from_args(train, words[7:]), "name": name}, data, model)
        assert card.config == plan[name].config == again.config, name
        assert card.options == plan[name].options == again.options, name
        for flag, value in zip(card_args[::2], card_args[1::2]):
            got = words[words.index(flag) + 1]
            assert got == value or float(got) == float(value), (name, flag, got, value)
    assert plan["inversion-hypernets"].bundle == bundle.resolve() / "runs" / "inversion-hypernets"
    assert plan["inversion-hypernets"].replaces == bundle.resolve() / "inversion.safetensors"


def test_demo_recipe_matches_the_shipped_files(demo_plan):
    """The settings stored in each shipped file's provenance are the recipe's, field for field (the generator's
    run was started with a longer --steps and stopped by hand: see the card), and the generator network the
    recipe builds has the shipped generator's shape."""
    from bgedit_cli.nn.stylegan2 import GeneratorConfig
    from bgedit_cli.training.gan import network_config

    _, _, plan = demo_plan
    for name, stem in SHIPPED.items():
        meta, _ = read_header(REPO / "models" / "demo" / f"{stem}.safetensors")
        prov, cfg = json.loads(meta["bgedit.provenance"]), plan[name].config
        saved = type(cfg).from_dict(prov["settings"])
        if name == "generator":
            assert prov["steps"] <= cfg.steps and saved.steps >= cfg.steps
            saved = saved.replace(steps=cfg.steps)
            shipped = GeneratorConfig.from_dict(json.loads(meta["bgedit.config"]))
            assert network_config(cfg) == shipped, "pin the shipped widths in recipes/demo.toml (channels = [...])"
        else:
            assert prov["steps"] == cfg.steps, name
        assert saved == cfg, (name, saved, cfg)


@pytest.mark.parametrize("train", sorted(TRAINERS))
def test_commands_are_generated_from_the_fields(cli, train, tmp_path):
    """Every flag a config declares is an option of its command, and each preset's command parses back to the
    same config (so a new field appears in the command without anyone writing it)."""
    import typer

    from bgedit_cli.cli.app import app

    cfg_cls: type[StageConfig] = TRAINERS[train][0]
    command = typer.main.get_command(app).commands["train"].commands[train]
    options = {opt for p in command.params for opt in p.opts}
    for flag in cfg_cls.options():
        if "{}" in flag:
            assert {flag.format(k.replace("_", "-")) for k in cfg_cls.PRESETS["demo"][
                "lambdas"]} <= options, flag
        else:
            assert flag in options, flag
    variants = [{"variant": v} for v in ("proposed", "baseline")] if train == "inversion" else [{}]
    for preset in cfg_cls.PRESETS:
        for extra in variants:
            cfg = cfg_cls.for_preset(preset, **extra)
            words = shlex.split(cfg.command(tmp_path / "my data", tmp_path / "bundle"))
            assert words[:7] == ["bgedit", "train", train, "--data", str(tmp_path / "my data"), "--model",
                                 str(tmp_path / "bundle")]
            assert plan_one(table_from_args(train, words[7:]), tmp_path, tmp_path).config == cfg, (preset, extra)


TINY_STAGES = {  # every stage at the tiny preset, 2 steps of 4 images, and an own-bundle stage that replaces a file
    "segmenter": {},
    "generator": {},
    "inversion": {"schedule": "phased", "seg-layers": 2, "eval-images": 4},
    "inversion-longer": {"train": "inversion", "bundle": "runs/inversion-longer", "init-from": "inversion.safetensors",
                         "replaces": "inversion.safetensors", "schedule": "phased", "encoder-fraction": 0,
                         "seg-layers": 2, "seed": 1, "eval-images": 4},
    "clip": {},
    "text": {"batch-size": 2, "num-latents": 4, "prompts": ["day", "snow"], "layout-lambda": 0.1},
}


def write_tiny_recipe(path: Path, **segmenter) -> Path:
    """The tiny recipe (values written as JSON, which TOML reads the same); `segmenter`: its other options."""
    def table(values: dict) -> str:
        return "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())

    data = {"num": 16, "resolution": 16, "val-fraction": 0.25, "mixing-pairs": 0, "workers": 1}
    stages = [{"name": name, "preset": "tiny", "steps": 2, "batch-size": 4, **values,
               **(segmenter if name == "segmenter" else {})} for name, values in TINY_STAGES.items()]
    path.write_text("[data]\n" + table(data) + "".join(f"\n\n[[stage]]\n{table(s)}" for s in stages) + "\n",
                    encoding="utf-8")
    return path


def train_all(cli, recipe: Path, root: Path, *extra):
    result = cli(["train", "all", "--recipe", recipe, "--data", root / "data", "--model", root / "bundle",
                  "--device", "cpu", "--json", *extra])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout), result.stderr


def test_tiny_recipe_end_to_end_and_again(cli, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "tiny.toml")
    summary, log = train_all(cli, recipe, tmp_path)
    assert summary["finished"] and [s["action"] for s in summary["steps"]] == ["made"] + ["trained"] * 6
    bundle = tmp_path / "bundle"
    for step in summary["steps"][1:]:
        if step["name"] == "inversion":  # its file was replaced by inversion-longer's (below)
            continue
        model = Path(step["model"])
        prov = json.loads(read_header(model)[0]["bgedit.provenance"])
        assert prov["steps"] == 2 and step["command"].startswith(prov["command"]), (step, prov["command"])
        assert f"[{step['name']}] $ {step['command']}" in log  # each stage's command line, printed as it runs
    longer = bundle / "runs" / "inversion-longer"
    assert (longer / "generator.safetensors").resolve() == (bundle / "generator.safetensors").resolve()
    assert (longer / "inversion.safetensors").read_bytes() == (bundle / "inversion.safetensors").read_bytes()
    assert json.loads(read_header(bundle / "inversion.safetensors")[0]["bgedit.provenance"])["init_from"] == str(
        bundle.resolve() / "inversion.safetensors")
    files = {p: p.stat().st_mtime_ns for p in bundle.glob("*.safetensors")}

    summary, log = train_all(cli, recipe, tmp_path)  # everything done: nothing trains, nothing changes
    assert [s["action"] for s in summary["steps"]] == ["skipped"] * 7 and "finished (2 steps" in log
    assert {p: p.stat().st_mtime_ns for p in bundle.glob("*.safetensors")} == files


def test_stage_by_stage_resume_and_changed_settings(cli, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "tiny.toml")
    summary, log = train_all(cli, recipe, tmp_path, "--only", "data,segmenter", "--time-limit", "0")
    assert not summary["finished"] and summary["steps"][1]["steps"] == 0 and "run the command again" in log
    summary, _ = train_all(cli, recipe, tmp_path, "--only", "segmenter")
    assert summary["steps"][0]["action"] == "resumed" and summary["steps"][0]["steps"] == 2
    assert "--resume" in summary["steps"][0]["command"]

    # Longer in the recipe: the finished run continues to the new length.
    write_tiny_recipe(recipe, steps=3)
    summary, _ = train_all(cli, recipe, tmp_path, "--only", "segmenter")
    assert summary["steps"][0]["action"] == "resumed" and summary["steps"][0]["steps"] == 3

    # Another setting: refused with one clear error, unless --force starts the stage again.
    write_tiny_recipe(recipe, steps=3, lr=0.01)
    args = ["train", "all", "--recipe", recipe, "--data", tmp_path / "data", "--model", tmp_path / "bundle",
            "--only", "segmenter", "--device", "cpu"]
    assert_clean_error(cli(args), "stage segmenter", "lr 0.003 (recipe: 0.01)", "--force")
    summary, _ = train_all(cli, recipe, tmp_path, "--only", "segmenter", "--force")
    assert summary["steps"][0]["action"] == "trained" and "--force" in summary["steps"][0]["command"]


LEGS = """
[data]
num = 16
resolution = 16
val-fraction = 0.25
mixing-pairs = 0
workers = 1

[[stage]]
name = "generator"
preset = "tiny"
steps = 2
batch-size = 4

[[stage]]  # the same run, resumed with a lower learning rate and a longer EMA
name = "generator-slower"
continues = "generator"
lr = 0.001
ema-kimg = 0.2
steps = 3

[[stage]]
name = "generator-longer"
continues = "generator-slower"
steps = 4
"""


def test_a_run_in_legs(cli, tmp_path):
    """`continues`: later legs resume the earlier stage's run with new resumable settings, in the same run."""
    recipe = tmp_path / "legs.toml"
    recipe.write_text(LEGS, encoding="utf-8")
    plan = {s.name: s for s in plan_recipe(load_recipe(recipe), tmp_path / "data", tmp_path / "bundle")[1:]}
    assert plan["generator-slower"].config == plan["generator"].config.replace(steps=3, g_lr=0.001, d_lr=0.001,
                                                                               ema_kimg=0.2)
    assert plan["generator-longer"].config == plan["generator-slower"].config.replace(steps=4)
    assert plan["generator"].later == (("generator-slower", plan["generator-slower"].config),
                                       ("generator-longer", plan["generator-longer"].config))
    assert plan["generator-longer"].command().endswith("--resume")

    # A later leg first: refused, nothing written.
    args = ["train", "all", "--recipe", recipe, "--data", tmp_path / "data", "--model", tmp_path / "bundle",
            "--device", "cpu", "--only", "generator-slower"]
    assert_clean_error(cli(args), "stage generator-slower continues the run of stage generator", "run stage "
                       "generator first")

    summary, _ = train_all(cli, recipe, tmp_path)
    assert [(s["action"], s.get("steps")) for s in summary["steps"]] == [
        ("made", None), ("trained", 2), ("resumed", 3), ("resumed", 4)]
    runs = list((tmp_path / "bundle" / "runs").iterdir())
    assert len(runs) == 1  # one run, three legs
    records = [json.loads(line) for line in (runs[0] / "log.jsonl").read_text().splitlines()]
    resumes = [r for r in records if r.get("event") == "resume"]
    assert [("--lr 0.001" in r["command"], "--ema-kimg 0.2" in r["command"]) for r in resumes] == [(True, True)] * 2
    prov = json.loads(read_header(tmp_path / "bundle" / "generator.safetensors")[0]["bgedit.provenance"])
    assert prov["steps"] == 4 and prov["settings"]["g_lr"] == 0.001 and prov["settings"]["ema_kimg"] == 0.2

    summary, log = train_all(cli, recipe, tmp_path)  # all legs done
    assert [s["action"] for s in summary["steps"][1:]] == ["skipped"] * 3 and "finished (4 steps" in log

    # A leg's setting changed after it ran: one clear error naming the leg to start again from.
    recipe.write_text(LEGS.replace("lr = 0.001", "lr = 0.002"), encoding="utf-8")
    args[-1] = "generator,generator-slower,generator-longer"
    assert_clean_error(cli(args), "stage generator-longer: the run", "g_lr 0.001 (recipe: 0.002)",
                       "--force to train stage generator again")
    summary, _ = train_all(cli, recipe, tmp_path, "--only", args[-1], "--force")  # the first leg again, then on
    assert [(s["action"], s["steps"]) for s in summary["steps"]] == [("trained", 2), ("resumed", 3), ("resumed", 4)]


def test_generator_long_recipe_matches_the_committed_file(tmp_path):
    """recipes/generator-long.toml replays the long run of models/next/generator.safetensors: its last leg has
    the file's settings (the run's own --steps aside: it was cut by time limits) and ends at the file's step,
    and its earlier legs differ from it only in what the run changed between legs."""
    plan = {s.name: s for s in plan_recipe(load_recipe(REPO / "recipes" / "generator-long.toml"), tmp_path / "d",
                                           tmp_path / "b")[1:]}
    meta, _ = read_header(REPO / "models" / "next" / "generator.safetensors")
    prov = json.loads(meta["bgedit.provenance"])
    last = plan["generator-slower"].config
    assert type(last).from_dict(prov["settings"]).replace(steps=last.steps) == last
    assert round(prov["kimg"] * 1000 / last.batch_size) == last.steps and prov["precision"] == "bf16"
    assert plan["generator-ema"].config == last.replace(steps=117500, g_lr=0.0025, d_lr=0.0025)
    assert plan["generator-long"].config == last.replace(steps=85057, g_lr=0.0025, d_lr=0.0025, ema_kimg=2.0)
    assert "--init-from" in plan["generator-long"].command() and "--init-from" not in plan["generator-ema"].command()
    assert plan["generator-slower"].bundle == plan["generator-long"].bundle == tmp_path.resolve() / "b" / "runs" / \
        "generator-long"


@pytest.mark.parametrize("text, message", [
    ("[[stage]]\nname = 'segmenter'\nstepz = 3\n", "stepz: not an option of `bgedit train segmenter`"),
    ("[[stage]]\nname = 'segmenter'\nsteps = 'many'\n", "steps: expected an integer, got 'many'"),
    ("[[stage]]\nname = 'segmenter'\nlr = -1\n", "--lr must be positive"),
    ("[[stage]]\nname = 'foo'\n", "train = 'foo': expected one of"),
    ("[[stage]]\nname = 'text'\nprompts = 'day'\n", "prompts: expected a list"),
    ("[[stage]]\nname = 'clip'\nreplaces = 'clip.safetensors'\n", "`replaces` needs `bundle`"),
    ("[[stage]]\nname = 'clip'\n[[stage]]\nname = 'clip'\n", "needs a unique `name`"),
    ("[data]\nnumber = 3\n[[stage]]\nname = 'clip'\n", "[data] number: not a `bgedit data synth` option"),
    ("[[stage]]\nname = 'b'\ncontinues = 'a'\n", "continues = 'a': expected the name of an earlier stage"),
    ("[[stage]]\nname = 'generator'\n[[stage]]\nname = 'g2'\ncontinues = 'generator'\nbatch-size = 8\n",
     "batch-size: a stage that continues another may set only steps, time-limit"),
    ("[[stage]]\nname = 'generator'\nsteps = 9\n[[stage]]\nname = 'g2'\ncontinues = 'generator'\nsteps = 9\n",
     "steps 9 must be more than the 9 of stage generator"),
    ("stages = 1\n", "unknown key(s) stages"),
    ("[[stage]\n", "not valid TOML"),
])
def test_bad_recipes_get_one_clear_error(cli, tmp_path, text, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text, encoding="utf-8")
    result = cli(["train", "all", "--recipe", recipe, "--data", tmp_path / "d", "--model", tmp_path / "b",
                  "--dry-run"])
    assert_clean_error(result, message)
    assert not (tmp_path / "b").exists()


def test_bad_command_lines_get_one_clear_error(cli, tmp_path):
    base = ["train", "all", "--data", tmp_path / "d", "--model", tmp_path / "b", "--dry-run"]
    assert_clean_error(cli([*base, "--recipe", tmp_path / "none.toml"]), "none.toml: no such file")
    assert_clean_error(cli([*base, "--recipe", DEMO, "--only", "segmenter,gan"]), "--only gan", "inversion-hypernets")
