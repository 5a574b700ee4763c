"""`bgedit bundle install SRC` and `bgedit bundle show [NAME|PATH]`: the installed model bundles.

`install` makes `$BGEDIT_HOME/models/<name>` (`default` unless `--name`) a symlink to a bundle folder, or with
`--copy` a copy of its network files and model card; every command without `--model` then uses it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bgedit_cli.cli.common import JsonOpt, QuietOpt, cli_command, err_console, print_json

bundle_app = typer.Typer(
    help="Model bundles: install one as the default (or under a name), show what one holds.",
    epilog="Example: bgedit bundle install models/demo && bgedit bundle show",
    no_args_is_help=True,
)

CARD = "MODEL_CARD.md"


def _is_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name \
        and not name.startswith(".")


def check_bundle(src: Path) -> list[dict[str, Any]]:
    """SRC must be a folder with a generator; every `.safetensors` in it must have a readable bgedit header of
    the kind its name says. Returns one entry per file (name, kind, bytes)."""
    from bgedit_cli.bundle import BUNDLE_FILES
    from bgedit_cli.checkpoint import read_header
    from bgedit_cli.errors import InputError

    if not src.exists():
        raise InputError(f"{src}: no such folder; give a model bundle folder (e.g. models/demo).")
    if not src.is_dir():
        raise InputError(f"{src}: not a folder; a model bundle is a folder of <kind>.safetensors files.")
    if not (src / BUNDLE_FILES["generator"]).is_file():
        raise InputError(f"{src}: no generator.safetensors, so this is not a usable model bundle. Train one with "
                         "`bgedit train generator` (the demo bundle: `make demo-train`) or import one with "
                         "`bgedit convert`.")
    files = []
    for path in sorted(src.glob("*.safetensors")):
        stem = path.name[: -len(".safetensors")]
        kind = stem.split("-")[0] if stem in BUNDLE_FILES else None  # inversion-baseline is an inversion network
        meta, _ = read_header(path, kind)
        files.append({"name": stem, "file": path.name, "kind": meta["bgedit.kind"], "bytes": path.stat().st_size})
    return files


def _same_link(target: Path, src: Path) -> bool:
    return target.is_symlink() and Path(os.path.realpath(target)) == Path(os.path.realpath(src))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _put_in_place(tmp: Path, target: Path) -> None:
    """Rename `tmp` (a symlink or a folder) to `target`, replacing whatever is there."""
    if target.is_dir() and not target.is_symlink():  # rename() cannot replace a folder: move it aside first
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, aside / target.name)
        os.replace(tmp, target)
        shutil.rmtree(aside)
    else:
        os.replace(tmp, target)  # atomic over a file, a link or nothing


@cli_command
def install(
    src: Annotated[Path, typer.Argument(help="model bundle folder (at least generator.safetensors)")],
    name: Annotated[str, typer.Option("--name", help="install as $BGEDIT_HOME/models/NAME; `default` is what "
                                      "commands use without --model")] = "default",
    copy: Annotated[bool, typer.Option("--copy", help="copy the .safetensors files and MODEL_CARD.md instead of "
                                       "linking to SRC")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace an existing bundle of that name")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Install a model bundle: make $BGEDIT_HOME/models/NAME a symlink to SRC (or a copy with --copy).

    Checks SRC first: a folder with generator.safetensors, every .safetensors in it with a readable bgedit header.
    An existing bundle of that name is replaced only with --force (a link to SRC already is a no-op).

    Example: bgedit bundle install models/demo
    """
    from bgedit_cli.bundle import bgedit_home
    from bgedit_cli.errors import InputError, OutputExistsError

    if not _is_name(name):
        raise InputError(f"--name {name!r}: give a plain name such as default or demo (no '/', not starting "
                         "with '.').")
    src = Path(os.path.abspath(src.expanduser()))
    files = check_bundle(src)
    models = bgedit_home() / "models"
    target = models / name
    result = {"name": name, "path": str(target), "source": str(src), "mode": "copy" if copy else "link",
              "files": files, "changed": True}

    exists = target.exists() or target.is_symlink()  # a dangling link exists too
    if exists and not copy and _same_link(target, src):
        result["changed"] = False
        _report(result, json_out, quiet, f"{target} already links to {src}; nothing to do.")
        return
    if exists and not target.is_symlink() and (Path(os.path.realpath(target)) == src
                                                or Path(os.path.realpath(target)) in src.parents):
        raise InputError(f"{src} is the installed bundle {target} (or inside it); install from another folder.")
    if exists and not force:
        what = (f"a link to {os.readlink(target)}" + ("" if target.exists() else ", which no longer exists")
                if target.is_symlink() else "a copied bundle" if target.is_dir() else "a file")
        raise OutputExistsError(f"{target} already exists ({what}); pass --force to replace it with {src}, or "
                                "--name to install beside it.")

    models.mkdir(parents=True, exist_ok=True)
    if copy:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=models))
        try:
            for f in files:
                shutil.copy2(src / f["file"], tmp / f["file"])
            if (src / CARD).is_file():
                shutil.copy2(src / CARD, tmp / CARD)
            tmp.chmod(0o755)
            _put_in_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        tmp = models / f".{name}.tmp-{os.getpid()}"
        _remove(tmp)
        os.symlink(src, tmp, target_is_directory=True)
        try:
            _put_in_place(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
    kinds = ", ".join(f["name"] for f in files)
    how = f"a copy of {src}" if copy else f"a link to {src}"
    _report(result, json_out, quiet, f"Installed {target} as {how} ({len(files)} networks: {kinds})"
            + (". Commands without --model now use it." if name == "default" else
               f"; use it with --model {target}."))


def _report(result: dict[str, Any], json_out: bool, quiet: bool, line: str) -> None:
    if json_out:
        print_json(result)
    elif not quiet:
        err_console.print(line)


@cli_command
def show(
    bundle: Annotated[Optional[str], typer.Argument(
        help="an installed bundle's name or a bundle folder", show_default="default")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List a bundle's networks: present or missing, kind, size and a short sha256 of each file.

    Example: bgedit bundle show models/demo --json | jq -r '.files[] | select(.present | not) | .name'
    """
    from bgedit_cli.bundle import bgedit_home, default_bundle
    from bgedit_cli.checkpoint import file_digest
    from bgedit_cli.cli.doctor import bundle_report
    from bgedit_cli.errors import InputError

    if bundle is None:
        path = default_bundle()
    elif _is_name(bundle) and (bgedit_home() / "models" / bundle).exists():
        path = bgedit_home() / "models" / bundle
    else:
        path = Path(bundle).expanduser()
    if not path.is_dir():
        hint = ("install one with `bgedit bundle install DIR` (the demo's: `bgedit bundle install models/demo`)"
                if bundle is None or _is_name(bundle) else "give a bundle folder or an installed bundle's name")
        raise InputError(f"{path}: no model bundle there; {hint}.")

    report = bundle_report(path)
    report["link"] = os.readlink(path) if path.is_symlink() else None
    report["model_card"] = str(path / CARD) if (path / CARD).is_file() else None
    for f in report["files"]:
        f["sha256"] = file_digest(Path(f["path"]), "sha256") if f["present"] else None
    if json_out:
        print_json(report)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    title = f"Bundle {path}" + (f" -> {report['link']}" if report["link"] else "")
    table = Table(title=title, title_justify="left")
    for col in ("network", "status", "kind", "size", "sha256"):
        table.add_column(col, overflow="fold", justify="right" if col == "size" else "left")
    for f in report["files"]:
        status = ("[red]unreadable[/] " + f["error"]) if f["error"] else "[green]present[/]" if f["present"] \
            else "[yellow]missing[/]"
        size = f"{f['bytes'] / 2**20:.1f} MiB" if f["bytes"] is not None else ""
        table.add_row(f["name"], status, f["kind"] or "", size, (f["sha256"] or "")[:12])
    console.print(table)
    if report["model_card"]:
        console.print(f"Model card: {report['model_card']}")


bundle_app.command("install")(install)
bundle_app.command("show")(show)
