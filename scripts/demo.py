"""The offline demo (`make demo`): the shipped demo bundle (models/demo) on held-out synthetic scenes.

    python scripts/demo.py [--bundle DIR] [--update-docs]      # `make demo`, `make demo FORCE=1`

1. Installs the bundle as the default one (`bgedit bundle install`), unless a default bundle already exists:
   then every command gets `--model BUNDLE` instead (DEMO_FORCE_INSTALL=1 / `make demo FORCE=1` replaces it).
2. Renders 24 held-out scenes (seed 777; the bundle was trained on seed 0) with `bgedit data synth`.
3. Samples the generator, inverts scenes (and a real photo from $DEMO_PHOTO or ../shared/fixtures, if any),
   mixes style and content, edits the layout from a new map, restyles from text, and evaluates the bundle.
4. Prints each step's time and, at the end, a summary: step times, the evaluation's numbers, the report's path.

Each step echoes its `bgedit` command line, to copy into a shell. The line is parsed by the command-line
interface's own parser (so it is a valid command, and its defaults are the command's), and the values are given
to the function the command calls (bgedit_cli.pipelines), in this one process: the networks are loaded once for
all steps. The evaluation runs as `python -m bgedit_cli evaluate ... --json` in a subprocess (its result is the
command's JSON). Everything is written under out/demo/; `--update-docs` also puts the pictures README.md shows
into docs/demo/. About a minute on 2 CPU cores (the evaluation takes most of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import typer.main

from bgedit_cli.bundle import BUNDLE_FILES, default_bundle
from bgedit_cli.cli.app import app
from bgedit_cli.cli.common import print_failure
from bgedit_cli.data.synth import synthesize
from bgedit_cli.errors import BgeditError, InputError
from bgedit_cli.pipelines.batch import Source
from bgedit_cli.pipelines.bundles import install
from bgedit_cli.pipelines.generate import generate_files
from bgedit_cli.pipelines.invert import invert_files
from bgedit_cli.pipelines.mix import mix_content_files, mix_style_files
from bgedit_cli.pipelines.models import load_generator, load_models, load_text_model
from bgedit_cli.pipelines.text_edit import edit_files

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
OUT = REPO / "out" / "demo"
DOCS = REPO / "docs" / "demo"
# Networks the demo's commands need; the baseline inversion network is optional (evaluate compares it if present).
NEEDED = ("generator", "segmenter", "inversion", "clip", "text")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".webp")


class DemoError(Exception):
    """Stops the demo with one message (no traceback)."""


def parse_command_line(argv: list[str]) -> dict[str, Any]:
    """The option values `bgedit ARGV` runs with: parsed by the CLI's own parser, with its defaults."""
    cmd, args, ctx, name = typer.main.get_command(app), list(argv), None, "bgedit"
    while True:
        ctx = cmd.make_context(name, args, parent=ctx)
        if not hasattr(cmd, "resolve_command"):  # a command, not a group
            return ctx.params
        rest = [*ctx._protected_args, *ctx.args]
        name, cmd, _ = cmd.resolve_command(ctx, rest)
        args = rest[1:]


class Demo:
    def __init__(self, console) -> None:
        self.console = console
        self.steps: list[tuple[str, float, str]] = []
        self.model: list[str] = []  # ["--model", BUNDLE] when the bundle is not the default one
        self._cache: dict[tuple, Any] = {}  # networks, by the options that load them

    def run(self, title: str, args: list[object], action: Callable[[dict[str, Any]], str | None], *,
            may_fail: bool = False) -> None:
        """Echo `$ bgedit ARGS`, run `action(options of that command line)`, print its message and time; stop the
        demo if it fails (a BgeditError: one `Error:` line, as the command prints)."""
        argv = [str(a) for a in args]
        self.console.print(f"\n[bold]{title}[/]", highlight=False)
        self.console.print("$ bgedit " + " ".join(shlex.quote(_short(a)) for a in argv), markup=False,
                           highlight=False)
        t = time.perf_counter()
        try:
            message = action(parse_command_line(argv))
            status = "ok"
        except BgeditError as exc:
            print("Error: " + " ".join(str(exc).split()), file=sys.stderr)
            message, status = None, "failed"
        seconds = time.perf_counter() - t
        if message:
            self.console.print(message, markup=False, highlight=False)
        self.steps.append((title, seconds, status))
        self.console.print(f"  [dim]{seconds:.1f} s[/]", highlight=False)
        if status != "ok" and not may_fail:
            raise DemoError(f"step '{title}' failed; see the Error line above.")

    def models(self, opts: dict[str, Any]):
        """The bundle's networks for a command line's --model/--device/--precision, loaded once for all steps."""
        key = ("models", opts["model"], opts["device"], opts["precision"])
        if key not in self._cache:
            self._cache[key] = load_models(opts["model"], None, opts["device"], precision=opts["precision"])
        return self._cache[key]

    def text_model(self, opts: dict[str, Any]):
        """The text model and its CLIP for a text-edit command line, loaded once."""
        key = ("text", opts["model"], opts["device"], opts["precision"], opts["text"], opts["clip"])
        if key not in self._cache:
            self._cache[key] = load_text_model(self.models(opts), text=opts["text"], clip=opts["clip"])
        return self._cache[key]


def _short(arg: str) -> str:
    """Paths inside the repository are echoed relative to it (the demo runs from the repository root)."""
    try:
        return str(Path(arg).relative_to(REPO)) if Path(arg).is_absolute() else arg
    except ValueError:
        return arg


# ----------------------------------------------------------------------------------------------------------
# Steps.


def check_bundle(bundle: Path) -> None:
    if not bundle.is_dir():
        raise DemoError(f"no model bundle at {bundle}. Train the demo bundle with `make demo-train` or give "
                        "--bundle DIR.")
    missing = [BUNDLE_FILES[name] for name in NEEDED if not (bundle / BUNDLE_FILES[name]).is_file()]
    if missing:
        raise DemoError(f"the bundle {_short(str(bundle))} is not complete: {', '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} missing. Train the missing stages with "
                        "`make demo-train` (hours on a CPU; run it again to continue) or give --bundle DIR of a "
                        f"complete bundle (see {_short(str(bundle / 'MODEL_CARD.md'))}).")


def install_default(demo: Demo, bundle: Path, force: bool) -> None:
    """Install the bundle as the default one, or use --model when another default exists."""
    default = default_bundle()
    exists = default.exists() or default.is_symlink()
    same = default.is_symlink() and Path(os.path.realpath(default)) == Path(os.path.realpath(bundle))
    if exists and not same and not force:
        what = f"a link to {os.readlink(default)}" if default.is_symlink() else "a folder"
        demo.console.print(f"\nA default bundle already exists at {default} ({what}), so this demo passes "
                           f"--model {_short(str(bundle))} to every command. `make demo FORCE=1` (or "
                           "DEMO_FORCE_INSTALL=1) installs the demo bundle as the default instead.",
                           highlight=False, markup=False)
        demo.model = ["--model", bundle]
        return
    demo.run("Install the bundle as the default one", ["bundle", "install", bundle, *(["--force"] if force else [])],
             install_step)


def pick_scenes(data: Path) -> dict[str, str]:
    """A and B with different looks (for the mixes), C with other water than A (its map is A's new layout)."""
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == "validation"]
    a = next((r for r in rows if r["style"]["name"] == "day"), rows[0])  # a text edit shows best on a day scene
    others = [r for r in rows if r is not a]
    looks = [r for r in others if r["style"]["name"] != a["style"]["name"]] or others
    b = next((r for r in looks if r["style"]["name"] in ("sunset", "night", "snow")), looks[0])
    others = [r for r in others if r is not b]
    c = next((r for r in others if r["content"]["water"] != a["content"]["water"]), others[0])
    d = next(r for r in others if r is not c)
    return {"A": a["file"], "B": b["file"], "C": c["file"], "D": d["file"]}


def find_photo() -> Path | None:
    env = os.environ.get("DEMO_PHOTO")
    if env:
        return Path(os.path.abspath(Path(env).expanduser()))
    if FIXTURES.is_dir():
        photos = sorted(p for p in FIXTURES.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if photos:
            return photos[0]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "models" / "demo",
                        help="the model bundle to demonstrate (default: models/demo)")
    parser.add_argument("--update-docs", action="store_true", help="also copy the pictures into docs/demo/")
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(highlight=False)
    demo = Demo(console)
    bundle = Path(os.path.abspath(args.bundle.expanduser()))
    photo = find_photo()
    force = os.environ.get("DEMO_FORCE_INSTALL", "") not in ("", "0")
    os.chdir(REPO)  # the echoed commands name paths relative to the repository root
    start = time.perf_counter()
    try:
        check_bundle(bundle)
        run_steps(demo, bundle, force, photo)
        if args.update_docs:
            update_docs(console)
    except DemoError as exc:
        console.print(f"[red]Demo stopped:[/] {exc}", highlight=False)
        return 1
    summary(demo, time.perf_counter() - start)
    return 0


def run_steps(demo: Demo, bundle: Path, force: bool, photo: Path | None) -> None:
    install_default(demo, bundle, force)
    m = demo.model
    data = OUT / "scenes"
    demo.run("Render 24 held-out scenes", ["data", "synth", "--out", data, "--num", 24, "--resolution", 64,
                                            "--seed", 777, "--val-fraction", 1, "--mixing-pairs", 8, "--force"],
             synth_step)
    demo.run("Sample the generator (seeds 0-15)", ["generate", *m[1:], "--seeds", "0-15", "--out",
                                                   OUT / "generate", "--force"], generate_step)

    s = pick_scenes(data)
    img = {k: data / "images" / "validation" / f"{v}.png" for k, v in s.items()}
    inv = OUT / "invert"
    demo.run("Invert four scenes (segmenter predicts their maps)",
             ["invert", *(img[k] for k in "ABCD"), *m, "--out", inv, "--save-seg", "--force"],
             lambda o: invert_step(demo, o))
    if photo is not None:
        demo.run(f"Invert a photo ({photo.name})", ["invert", photo, *m, "--out", OUT / "photo", "--save-seg",
                                                    "--force"], lambda o: invert_step(demo, o), may_fail=True)
    lat = {k: inv / f"{v}.latent.safetensors" for k, v in s.items()}
    demo.run("Mix style: A's layout in B's look", ["mix-style", lat["A"], lat["B"], *m, "--out",
                                                   OUT / "mix-style.png", "--force"], lambda o: mix_step(demo, o))
    demo.run("Mix content: A's look on B's layout", ["mix-content", img["A"], img["B"], "--seg",
                                                     inv / f"{s['B']}.seg.png", *m, "--out", OUT / "mix-content.png",
                                                     "--force"], lambda o: mix_step(demo, o))
    new_map = data / "annotations" / "validation" / f"{s['C']}.png"
    demo.run("Layout edit: A redrawn on a new map", ["mix-content", lat["A"], "--seg", new_map, *m, "--out",
                                                     OUT / "layout-edit.png", "--force"], lambda o: mix_step(demo, o))
    for prompt in ("snowy night", "ocean"):
        demo.run(f'Text edit: "{prompt}"', ["text-edit", lat["A"], prompt, *m, "--out-dir", OUT / "text-edit",
                                            "--force"], lambda o: text_edit_step(demo, o))
    demo.console.print("\n[dim]The evaluation takes about half a minute: reconstructions, mixing and text edits "
                       "against the scenes' ground truth.[/]", highlight=False)
    evaluate = ["evaluate", "--data", data, "--split", "validation", "--limit", 24, *m, "--report", OUT / "report",
                "--force", "--json"]
    demo.run("Evaluate the bundle on the held-out scenes", evaluate, lambda o: evaluate_step(evaluate))


# Each step: the options of its command line -> what the command does, through the function it calls.


def install_step(o: dict[str, Any]) -> str:
    done = install(o["src"], o["name"], copy=o["copy"], force=o["force"])
    return f"{done.path} {'now links' if done.changed else 'already linked'} to {_short(str(done.source))}."


def synth_step(o: dict[str, Any]) -> str:
    summary = synthesize(o["out"], num=o["num"], resolution=o["resolution"], seed=o["seed"],
                         val_fraction=o["val_fraction"], mixing_pairs=o["mixing_pairs"], workers=o["workers"],
                         force=o["force"])
    return f"Wrote {summary['training']} training and {summary['validation']} validation scenes."


def generate_step(o: dict[str, Any]) -> str:
    gen = load_generator(o["ckpt"], o["device"], o["precision"])
    done = generate_files(gen, o["out"], z_file=o["z_file"], w_file=o["w_file"], seeds=o["seeds"],
                          truncation=o["truncation"], noise=o["noise"], raw=o["raw"], batch_size=o["batch_size"],
                          seed=o["seed"], force=o["force"])
    return f"Wrote {len(done.images)} image(s)."


def invert_step(demo: Demo, o: dict[str, Any]) -> str:
    segs = list(o["seg"]) or [None] * len(o["images"])
    report = invert_files(demo.models(o), [Source(p, q) for p, q in zip(o["images"], segs)], o["out"],
                          steps=o["steps"], batch_size=o["batch_size"], save_seg=o["save_seg"], force=o["force"],
                          on_failure=print_failure)
    if report.failed:
        raise InputError(f"{len(report.failed)} of {len(o['images'])} image(s) failed.")
    return f"Inverted {len(report.done)} image(s)."


def mix_step(demo: Demo, o: dict[str, Any]) -> str:
    models = demo.models(o)
    if "style" in o:
        mix_style_files(models, o["content"], o["style"], o["out"], layers=o["layers"], take_delta_img=o["delta_img"],
                        content_seg=o["content_seg"], style_seg=o["style_seg"], steps=o["steps"],
                        save_latent=o["save_latent"], force=o["force"])
    else:
        mix_content_files(models, o["a"], o["b"], o["out"], seg=o["seg"], a_seg=o["a_seg"],
                          swap_deltas=o["swap_deltas"], steps=o["steps"], save_latent=o["save_latent"],
                          force=o["force"])
    return f"Wrote {_short(str(o['out']))}."


def text_edit_step(demo: Demo, o: dict[str, Any]) -> str:
    models, text = demo.models(o), demo.text_model(o)
    match = text.gate(o["prompt"], force=o["force_prompt"])
    report = edit_files(models, text, match, [Source(p) for p in o["sources"]], out=o["out"], out_dir=o["out_dir"],
                        alpha=o["alpha"], strength=o["strength"], seed=o["seed"], samples=o["samples"],
                        steps=o["steps"], batch_size=o["batch_size"], force=o["force"], on_failure=print_failure)
    if report.failed:
        raise InputError(f"{len(report.failed)} of {len(o['sources'])} source(s) failed.")
    return f'Edited {len(report.done)} source(s) (nearest trained prompt: "{match.ranking[0][0]}", ' \
           f"cosine {match.nearest:.2f})."


def evaluate_step(args: list[object]) -> str:
    """`bgedit ARGS` (evaluate --json) in a subprocess; its JSON on stdout goes to out/demo/evaluate.json."""
    proc = subprocess.run([sys.executable, "-m", "bgedit_cli", *map(str, args)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BgeditError(f"bgedit evaluate exited with status {proc.returncode}.")
    (OUT / "evaluate.json").write_text(proc.stdout)
    return f"Report: {_short(str(OUT / 'report' / 'index.html'))}"


# ----------------------------------------------------------------------------------------------------------
# Pictures for README.md (docs/demo/*.png) and the summary.


def update_docs(console) -> None:
    """Compose the demo's outputs into the pictures README.md shows: docs/demo/{generate,invert,mixing,
    text-edit}.png (64 px cells drawn at 2x)."""
    import numpy as np
    from PIL import Image

    from bgedit_cli.io import colorize_seg, load_seg

    def load(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"))

    def grid(rows: list[list[np.ndarray]], scale: int = 2, gap: int = 2) -> Image.Image:
        h, w = rows[0][0].shape[:2]
        cols = max(len(r) for r in rows)
        canvas = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = cell
        pic = Image.fromarray(canvas)
        return pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)

    data, inv = OUT / "scenes", OUT / "invert"
    scenes = pick_scenes(data)
    img = {k: load(data / "images" / "validation" / f"{v}.png") for k, v in scenes.items()}
    seg = {k: colorize_seg(load_seg(inv / f"{v}.seg.png")) for k, v in scenes.items()}
    rec = {k: load(inv / f"{v}.png") for k, v in scenes.items()}
    samples = [load(p) for p in sorted((OUT / "generate").glob("*.png"))[:16]]
    new_map = colorize_seg(load_seg(data / "annotations" / "validation" / f"{scenes['C']}.png"))
    text = [load(OUT / "text-edit" / f"{scenes['A']}.{slug}.png") for slug in ("snowy-night", "ocean")]
    DOCS.mkdir(parents=True, exist_ok=True)
    pictures = {
        "generate.png": grid([samples[i:i + 8] for i in range(0, len(samples), 8)]),
        "invert.png": grid([[img[k] for k in "ABCD"], [seg[k] for k in "ABCD"], [rec[k] for k in "ABCD"]]),
        "mixing.png": grid([[img["A"], img["B"], load(OUT / "mix-style.png"), load(OUT / "mix-content.png"),
                             new_map, load(OUT / "layout-edit.png")]]),
        "text-edit.png": grid([[img["A"], rec["A"], *text]]),
    }
    for name, pic in pictures.items():
        pic.save(DOCS / name)
    console.print(f"\nUpdated the pictures in {_short(str(DOCS))}/: {', '.join(sorted(pictures))}.", highlight=False)


def summary(demo: Demo, total: float) -> None:
    """One screen: step times, the reconstruction scores, the editing scores against ground truth."""
    from rich.table import Table

    console = demo.console
    table = Table(title=f"Demo steps: {total:.0f} s in all", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("status")
    for title, seconds, status in demo.steps:
        table.add_row(title, f"{seconds:.1f}", status)
    console.print()
    console.print(table, markup=False)

    result = json.loads((OUT / "evaluate.json").read_text())
    metrics = {row: result["metrics"][row] for row in result.get("rows", []) if row in result.get("metrics", {})}
    scores = {row: {n: (m.get(n) or {}) for n in METRIC_LABELS} for row, m in metrics.items()}
    names = [n for n in METRIC_LABELS if any(s[n].get("value") is not None for s in scores.values())]
    table = Table(title=f"Reconstruction of {result.get('settings', {}).get('limit') or 24} held-out scenes",
                  title_justify="left")
    table.add_column("variant")
    for n in names:
        table.add_column(METRIC_LABELS[n], justify="right")
    for row, s in scores.items():
        table.add_row(row, *(f"{s[n]['value']:{METRIC_FORMATS[n]}}" for n in names))
    console.print(table)
    missing: dict[str, list[str]] = {}  # weight file -> metrics it would give
    for s in scores.values():
        for n, score in s.items():
            if score.get("value") is None and score.get("unavailable_reason"):
                missing.setdefault(score["unavailable_reason"].split(" not found")[0], []).append(n)
    for file, which in missing.items():
        console.print(f"  {', '.join(METRIC_LABELS[n].split()[0] for n in dict.fromkeys(which))}: not computed "
                      f"({file} missing; see `bgedit doctor`)", markup=False)
    console.print(editing_table(result))
    console.print(f"Outputs: {_short(str(OUT))}/   Report with figures: {_short(str(OUT / 'report' / 'index.html'))}",
                  markup=False)


METRIC_LABELS = {"l2": "L2 ↓", "lpips": "LPIPS ↓", "psnr": "PSNR ↑", "ms_ssim": "MS-SSIM ↑", "fid": "FID ↓",
                 "kid": "KID ↓", "fd_clip": "FD_CLIP ↓", "swd": "SWD×10³ ↓"}
METRIC_FORMATS = {"l2": ".4f", "lpips": ".3f", "psnr": ".2f", "ms_ssim": ".3f", "fid": ".2f", "kid": ".4f",
                  "fd_clip": ".1f", "swd": ".1f"}
TRIVIAL = ("input_a", "input_b", "recon_a", "recon_b")


def editing_table(result: dict):
    """Mixing, layout and text scores of the commands' defaults next to the best answer that does no editing."""
    from rich.table import Table

    table = Table(title="Editing vs the scenes' ground truth", title_justify="left")
    for col, justify in (("task", "left"), ("proposed", "right"), ("baseline", "right"),
                         ("no-edit answer", "right")):
        table.add_column(col, justify=justify)
    mixing = result.get("mixing", {})

    def l2(section: dict, key: str) -> str:
        value = (section.get(key) or {}).get("l2")
        return "-" if value is None else f"{value:.4f}"

    for task, method in (("style", "mix_style(delta_img=a)"), ("content", "mix_content(swap_deltas=seg)")):
        proposed = mixing.get("proposed", {}).get(task, {})
        baseline = mixing.get("baseline", {}).get(task, {})
        trivial = [(v["l2"], k) for k, v in proposed.items() if k in TRIVIAL and v.get("l2") is not None]
        best = f"{min(trivial)[0]:.4f} ({min(trivial)[1]})" if trivial else "-"
        table.add_row(f"{task} mixing, L2 ↓", l2(proposed, method), l2(baseline, "w+ row swap"), best)
    layout = result.get("layout") or {}
    if "edit" in layout:
        table.add_row("layout edit, mIoU of the new map ↑", f"{layout['edit']['miou']:.3f}", "-",
                      f"{layout['a_reconstruction']['miou']:.3f} (recon_a)")
    for mode, scores in ((result.get("text") or {}).get("modes") or {}).items():
        closer = (scores.get("all") or {}).get("closer")
        if closer is not None:
            table.add_row(f"text edit nearer GT than recon ↑, {mode.split(' (')[0]}", f"{closer:.2f}", "-", "-")
    return table


if __name__ == "__main__":
    sys.exit(main())
