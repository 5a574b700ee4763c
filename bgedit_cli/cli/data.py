"""`bgedit data synth --out DIR`: synthetic landscape scenes in the ADE20K SceneParsing layout;
`bgedit data fetch ade20k --out DIR`: the real ADE20K, downloaded, verified and unpacked;
`bgedit data check DIR`: any ADE20K-layout folder checked file by file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bgedit_cli.cli.common import (ForceOpt, JsonOpt, QuietOpt, TransferProgress, cli_command, err_console,
                                   make_progress, print_json)
from bgedit_cli.cli.weights import MirrorOpt

data_app = typer.Typer(help="Datasets in the ADE20K layout: synthetic scenes, the real ADE20K, checks.",
                       no_args_is_help=True,
                       epilog="Example: bgedit data synth --out scenes/ --num 2000 --resolution 64")


@cli_command
def synth(
    out: Annotated[Path, typer.Option("--out", help="output folder (ADE20K layout: images/, annotations/, ...)")],
    num: Annotated[int, typer.Option("--num", min=1, help="number of scenes")] = 1000,
    resolution: Annotated[int, typer.Option("--resolution", min=16, max=4096, help="image side in pixels")] = 256,
    seed: Annotated[int, typer.Option("--seed", min=0, help="scene i depends only on (seed, i)")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="share of scenes in validation/ (1: all of them, a held-out set)")] = 0.1,
    mixing_pairs: Annotated[int, typer.Option(
        "--mixing-pairs", min=0, help="first M validation scenes get mixing/ and textedit/ ground truth")] = 8,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="processes (default: min(2, CPU count)); output does not depend on it")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render procedural landscapes with their seg maps, captions, factors and style/content-mixing ground truth.

    Example: bgedit data synth --out scenes/ --num 2000 --resolution 64 --seed 0
    """
    from bgedit_cli.data.synth import synthesize

    # The bar starts on the first report, which comes after the worker processes are forked.
    bar, task = make_progress(quiet), None

    def report(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("rendering", total=total)
        bar.update(task, completed=done)

    try:
        summary = synthesize(out, num=num, resolution=resolution, seed=seed, val_fraction=val_fraction,
                             mixing_pairs=mixing_pairs, workers=workers, force=force, progress=report)
    finally:
        bar.stop()
    if json_out:
        print_json(summary)
    elif not quiet:
        err_console.print(f"Wrote {summary['training']} training and {summary['validation']} validation scenes "
                          f"({summary['mixing_images'] + summary['textedit_images']} mixing/text-edit images) "
                          f"to {out} in {summary['seconds']:.1f} s ({summary['scenes_per_s']:.0f} scenes/s).")


@cli_command
def fetch(
    name: Annotated[str, typer.Argument(help="the dataset: ade20k (ADEChallengeData2016.zip, about 923 MB)")],
    out: Annotated[Path, typer.Option("--out", help="folder to unpack into (gets ADEChallengeData2016/)")],
    mirror: MirrorOpt = None,
    from_zip: Annotated[Optional[Path], typer.Option("--from", help="use this zip (downloaded elsewhere) after "
                                                                     "checking it")] = None,
    keep_zip: Annotated[bool, typer.Option("--keep-zip", help="keep the downloaded zip in --out")] = False,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download ADE20K SceneParsing, verify it, unpack it (refusing entries that escape --out) and check the layout.

    A partial download is resumed on the next run. Prints the folder to pass as --data.

    Example: bgedit data fetch ade20k --out ~/data
    """
    from bgedit_cli.data.fetch import fetch_dataset

    with TransferProgress(quiet or json_out) as bar:
        summary = fetch_dataset(name, out, mirror=mirror, from_zip=from_zip, force=force, keep_zip=keep_zip,
                                progress=bar.callback(name))
    if json_out:
        print_json(summary)
    elif not quiet:
        counts = ", ".join(f"{r['images']} {s}" for s, r in summary["check"]["splits"].items())
        err_console.print(f"{summary['data']}: {counts} images, each with its annotation ({summary['hash']} "
                          f"verified). Next, pass --data {summary['data']}, e.g.\n  bgedit train generator --data "
                          f"{summary['data']} --model bundle/ --preset paper-256", soft_wrap=True)


@cli_command
def check(
    folder: Annotated[Path, typer.Argument(help="an ADE20K-layout folder (or the folder holding "
                                                "ADEChallengeData2016/)")],
    expect: Annotated[Optional[str], typer.Option(
        "--expect", help="also compare the image counts with a release: ade20k (20,210 / 2,000)")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check every image and map: images without maps, maps without images, unreadable files, size mismatches,
    unknown class ids. Exit 1 when anything is wrong.

    Example: bgedit data check scenes/
    """
    from bgedit_cli.data.check import check_dataset
    from bgedit_cli.data.fetch import get_dataset
    from bgedit_cli.errors import InputError

    expected = get_dataset(expect).counts if expect else None
    with TransferProgress(quiet or json_out) as bar:
        report = check_dataset(folder, expected=expected, progress=bar.callback(folder.name))
    result = report.to_dict()
    if json_out:
        print_json(result)
    elif not quiet:
        print_check(result)
    if result["problems"]:
        raise InputError(f"{result['root']}: {'; '.join(result['problems'])}.")


def print_check(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['root']}: " + ("ok" if result["ok"] else "problems found"), title_justify="left")
    for col in ("split", "images", "maps", "images without maps", "maps without images", "unreadable",
                "size mismatch", "unknown class ids"):
        table.add_column(col, overflow="fold")
    for split, r in result["splits"].items():
        listed = lambda key: f"{r['num_' + key]} {' '.join(r[key])}".strip()  # noqa: E731
        unknown = " ".join(f"{k} (in {v})" for k, v in r["unknown_ids"].items())
        table.add_row(split, str(r["images"]), str(r["maps"]), listed("images_without_maps"),
                      listed("maps_without_images"), listed("unreadable"), listed("size_mismatch"),
                      f"{r['num_maps_with_unknown_ids']} {unknown}".strip())
    Console(highlight=False, soft_wrap=False).print(table)


data_app.command("synth")(synth)
data_app.command("fetch")(fetch)
data_app.command("check")(check)
