"""What `bgedit bundle install|show`, `bgedit doctor` and `bgedit info` do with bundles and their files.

    report = inspect(locate("default"), hashes=True)   # BundleReport: each network present, missing or unreadable
    facts = doctor_report(verify=False)                 # bgedit doctor: weight files, default bundle, machine
    done = install(Path("models/demo"), "default")      # Installed: $BGEDIT_HOME/models/default -> models/demo
    info = describe_file(Path("models/demo/text.safetensors"))   # FileInfo: one weight or latent file's header

Paths and names of a bundle are `bgedit_cli.bundle` (no torch there); this module reads the files' headers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bgedit_cli import __version__
from bgedit_cli.bundle import BUNDLE_FILES, bgedit_home, default_bundle
from bgedit_cli.checkpoint import file_digest, read_header
from bgedit_cli.errors import CheckpointError, InputError, OutputExistsError, one_line
from bgedit_cli.runtime import system_report
from bgedit_cli.weights import weights_status

CARD = "MODEL_CARD.md"


# ----------------------------------------------------------------------------------------------------------
# What a bundle holds.


@dataclasses.dataclass(frozen=True)
class NetworkFile:
    """One `<name>.safetensors` of a bundle: present or not, and what its header says (or why it is unreadable)."""

    name: str
    path: Path
    present: bool
    kind: str | None = None
    format_version: int | None = None
    bytes: int | None = None
    error: str | None = None
    sha256: str | None = None  # inspect(..., hashes=True)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path), "file": self.path.name}


@dataclasses.dataclass(frozen=True)
class BundleReport:
    """`inspect(bundle)`: every standard network file and any other `.safetensors` in the folder."""

    path: Path
    exists: bool
    files: list[NetworkFile]
    link: str | None = None  # where the folder points, if it is a symlink
    model_card: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "exists": self.exists, "files": [f.to_dict() for f in self.files],
                "link": self.link, "model_card": None if self.model_card is None else str(self.model_card)}


def inspect(bundle: Path, *, hashes: bool = False) -> BundleReport:
    """The bundle's network files: present or not, with the kind and format their headers state; an unreadable
    file is reported (`error`), not raised. `hashes`: also the sha256 of each present file (reads them whole)."""
    bundle = Path(bundle)
    names = dict(BUNDLE_FILES)
    if bundle.is_dir():  # files beyond the standard set, e.g. a discriminator
        names.update({p.stem: p.name for p in sorted(bundle.glob("*.safetensors")) if p.name not in names.values()})
    files = []
    for name, file_name in names.items():
        path = bundle / file_name
        if not path.is_file():
            files.append(NetworkFile(name, path, present=False))
            continue
        kind = version = error = None
        try:
            meta, _ = read_header(path)
            kind, version = meta["bgedit.kind"], int(meta["bgedit.format_version"])
        except CheckpointError as exc:
            error = one_line(exc)
        files.append(NetworkFile(name, path, present=True, kind=kind, format_version=version,
                                 bytes=path.stat().st_size, error=error,
                                 sha256=file_digest(path, "sha256") if hashes else None))
    card = bundle / CARD
    return BundleReport(path=bundle, exists=bundle.is_dir(), files=files,
                        link=os.readlink(bundle) if bundle.is_symlink() else None,
                        model_card=card if card.is_file() else None)


def doctor_report(*, verify: bool = False) -> dict[str, Any]:
    """What `bgedit doctor` shows: the version, `$BGEDIT_HOME`, each auxiliary weight file (`verify`: hashed now),
    the default bundle and the machine (`runtime.system_report`)."""
    return {"bgedit": __version__, "home": str(bgedit_home()), "weights": weights_status(verify),
            "bundle": inspect(default_bundle()).to_dict(), "system": system_report()}


def is_bundle_name(name: str) -> bool:
    """A plain name for `$BGEDIT_HOME/models/<name>` (no '/', not '.', '..' or hidden)."""
    return bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name \
        and not name.startswith(".")


def locate(bundle: str | None) -> Path:
    """The folder of the default bundle (None), an installed bundle's name, or a bundle path; not a folder is an
    InputError saying how to get one."""
    if bundle is None:
        path = default_bundle()
    elif is_bundle_name(bundle) and (bgedit_home() / "models" / bundle).exists():
        path = bgedit_home() / "models" / bundle
    else:
        path = Path(bundle).expanduser()
    if not path.is_dir():
        hint = ("install one with `bgedit bundle install DIR` (the demo's: `bgedit bundle install models/demo`)"
                if bundle is None or is_bundle_name(bundle) else "give a bundle folder or an installed bundle's name")
        raise InputError(f"{path}: no model bundle there; {hint}.")
    return path


def check_bundle(src: Path) -> list[NetworkFile]:
    """SRC must be a folder with a generator; every `.safetensors` in it must have a readable bgedit header of
    the kind its name says (InputError / CheckpointError otherwise). Returns its network files, by name."""
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
        files.append(NetworkFile(stem, path, present=True, kind=meta["bgedit.kind"],
                                 format_version=int(meta["bgedit.format_version"]), bytes=path.stat().st_size))
    return files


# ----------------------------------------------------------------------------------------------------------
# Installing a bundle.


@dataclasses.dataclass(frozen=True)
class Installed:
    """`install(...)`: `path` ($BGEDIT_HOME/models/<name>) now links to (or holds a copy of) `source`."""

    name: str
    path: Path
    source: Path
    mode: str  # "link" or "copy"
    files: list[NetworkFile]
    changed: bool  # False: the same link was there already

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "source": str(self.source), "mode": self.mode,
                "files": [f.to_dict() for f in self.files], "changed": self.changed}


def install(src: Path, name: str = "default", *, copy: bool = False, force: bool = False) -> Installed:
    """Make `$BGEDIT_HOME/models/<name>` a symlink to SRC (its absolute path), or with `copy` a copy of its
    network files and model card (written into a temporary folder, then renamed into place). SRC is checked
    first (`check_bundle`); an existing `<name>` is replaced only with `force`; the same link again is a no-op."""
    if not is_bundle_name(name):
        raise InputError(f"--name {name!r}: give a plain name such as default or demo (no '/', not starting "
                         "with '.').")
    src = Path(os.path.abspath(Path(src).expanduser()))
    files = check_bundle(src)
    models = bgedit_home() / "models"
    target = models / name
    result = Installed(name=name, path=target, source=src, mode="copy" if copy else "link", files=files,
                       changed=True)

    exists = target.exists() or target.is_symlink()  # a dangling link exists too
    if exists and not copy and _same_link(target, src):
        return dataclasses.replace(result, changed=False)
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
                shutil.copy2(f.path, tmp / f.path.name)
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
    return result


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


# ----------------------------------------------------------------------------------------------------------
# One file.

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """`describe_file(path)`: what a bgedit weight or latent file's header says, without loading its tensors."""

    path: Path
    kind: str
    format_version: int
    config: dict[str, Any]
    provenance: dict[str, Any]
    num_tensors: int
    tensor_bytes: int
    file_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def describe_file(path: Path) -> FileInfo:
    path = Path(path)
    meta, entries = read_header(path)
    num_bytes = 0
    for dtype, shape in entries.values():
        n = 1
        for s in shape:
            n *= s
        num_bytes += n * _DTYPE_BYTES.get(dtype, 4)
    return FileInfo(path=path, kind=meta["bgedit.kind"], format_version=int(meta["bgedit.format_version"]),
                    config=json.loads(meta.get("bgedit.config", "{}")),
                    provenance=json.loads(meta.get("bgedit.provenance", "{}")), num_tensors=len(entries),
                    tensor_bytes=num_bytes, file_bytes=path.stat().st_size)
