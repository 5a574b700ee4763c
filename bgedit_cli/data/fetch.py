"""`bgedit data fetch ade20k --out DIR`: download ADE20K SceneParsing (ADEChallengeData2016.zip, about 923 MB),
verify it, unpack it safely and check the layout.

Where the digest comes from: MIT publishes no hash for ADEChallengeData2016.zip (the challenge's development kit,
the CSAILVision/sceneparsing README, gives the layout and the counts but no digest). The SHA-1 below is the one GluonCV's dataset script checks before unpacking
(dmlc/gluon-cv, scripts/datasets/ade20k.py, `219e1696...`): published, but by a third party, and said so
wherever it is printed. On top of it the zip is verified as it is used: the download's size against the server's
`Content-Length`, every entry's CRC-32 while unpacking (zipfile raises on a mismatch), and then the layout
(`data.check`): 20,210 training and 2,000 validation images, each with its annotation, all readable, class ids
0..150.

Unpacking refuses, before writing anything, entries that would land outside DIR (absolute paths, `..`: zip-slip),
symbolic links and special files. Entries outside the zip's top folder are skipped. The files go to a temporary
folder inside DIR that is renamed to DIR/ADEChallengeData2016 only when every entry was read back intact.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from bgedit_cli.data.check import check_dataset
from bgedit_cli.download import (DownloadError, Expected, Progress, disk_full, ensure_space, fetch_url, file_digest,
                                 mirror_url)
from bgedit_cli.errors import InputError, OutputExistsError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset release: its zip (`source`), the zip's published digest (None if none is published anywhere) and
    where that digest is published, the top folder inside the zip, and the image count of each split."""

    key: str
    source: str
    top: str
    hash_algo: str | None
    published_hash: str | None
    hash_published: str
    counts: dict[str, int]

    @property
    def file_name(self) -> str:
        return self.source.rstrip("/").rsplit("/", 1)[-1]


ADE20K = DatasetSpec(
    key="ade20k",
    source="http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
    top="ADEChallengeData2016",
    hash_algo="sha1",
    published_hash="219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
    hash_published="MIT publishes no hash for this zip; this SHA-1 is the one GluonCV's ADE20K script checks "
                   "(dmlc/gluon-cv scripts/datasets/ade20k.py); the entries' CRC-32s and the layout are checked too",
    counts={"training": 20210, "validation": 2000},
)

DATASETS: dict[str, DatasetSpec] = {ADE20K.key: ADE20K}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}.") from None


# ----------------------------------------------------------------------------------------------------------
# Fetch.


def fetch_dataset(name: str, out: Path, *, mirror: str | None = None, from_zip: Path | None = None,
                  force: bool = False, keep_zip: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Download (or take `from_zip`), verify, unpack into `out/<top>` and check the layout; return a summary with
    `data`, the folder to pass as `--data`. The downloaded zip is removed after a clean check unless `keep_zip`."""
    spec = get_dataset(name)
    out = Path(out).expanduser()
    root = out / spec.top
    if root.exists() and not force:
        raise OutputExistsError(f"{root} already exists; `bgedit data check {root}` checks it, --force replaces it.")
    out.mkdir(parents=True, exist_ok=True)
    expected = Expected(spec.hash_algo, spec.published_hash) if spec.published_hash else None
    algo = spec.hash_algo or "sha256"
    manual = f"download {spec.source} by hand and run `bgedit data fetch {spec.key} --out {out} --from FILE`"

    # Download, or verify the given zip.
    downloaded = False
    if from_zip is not None:
        zip_path = Path(from_zip).expanduser()
        if not zip_path.is_file():
            raise InputError(f"--from {zip_path}: no such file.")
        digest = _verified_digest(zip_path, expected, algo, progress, "is it the right file, and complete?")
    else:
        zip_path = out / spec.file_name
        if zip_path.is_file() and not force:  # an earlier fetch that stopped after the download
            digest = _verified_digest(zip_path, expected, algo, progress, "remove it or pass --force to download "
                                                                          "it again")
        else:
            url = mirror_url(mirror, spec.file_name) if mirror else spec.source
            digest = fetch_url(url, zip_path, expected, manual_hint=manual, progress=progress)
            downloaded = True

    # Unpack, then check.
    unpack_zip(zip_path, out, spec.top, progress=progress)
    report = check_dataset(root, expected=spec.counts, progress=progress)
    problems = report.problems()
    if problems:
        raise InputError(f"{root}: unpacked, but {'; '.join(problems[:4])}. `bgedit data check {root}` lists the "
                         f"files; the zip is kept at {zip_path}.")
    if downloaded and not keep_zip:
        zip_path.unlink()
    return {"dataset": spec.key, "data": str(root), "zip": str(zip_path), "zip_kept": zip_path.exists(),
            "downloaded": downloaded, "hash": f"{algo}:{digest}", "hash_published": spec.hash_published,
            "check": report.to_dict()}


def _verified_digest(path: Path, expected: Expected | None, algo: str, progress: Progress | None, hint: str) -> str:
    digest = file_digest(path, algo, progress)
    if expected is not None and not expected.matches(digest):
        raise DownloadError(f"{path}: hash mismatch: expected {expected.label}, got {algo}:{digest}; {hint}.")
    return digest


# ----------------------------------------------------------------------------------------------------------
# Unpack.


def unpack_zip(zip_path: Path, out: Path, top: str, *, progress: Progress | None = None) -> Path:
    """Unpack the entries under `top/` of `zip_path` into `out/top` (module docstring: refused entries, CRC checks,
    temp folder then rename; an existing `out/top` is replaced only once the new one is complete)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{zip_path}: not a readable zip ({exc}); download it again.") from None
    with archive:
        infos = archive.infolist()
        for info in infos:
            _check_member(info, zip_path, out)
        members = [i for i in infos if PurePosixPath(i.filename).parts[0] == top]
        if not members:
            raise InputError(f"{zip_path}: no entries under {top}/; is it the right zip?")
        total = sum(i.file_size for i in members)
        ensure_space(out, total)
        tmp = Path(tempfile.mkdtemp(prefix=f".{top}.unpack-", dir=out))
        final, old = out / top, None
        try:
            done = 0
            for info in members:
                target = tmp.joinpath(*PurePosixPath(info.filename).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:  # zipfile checks the CRC at the end
                    shutil.copyfileobj(src, dst, 1 << 20)
                done += info.file_size
                if progress is not None:
                    progress("unpacking", done, total)
            if final.exists():
                old = out / f".{top}.replaced-{os.getpid()}"
                os.replace(final, old)
            os.replace(tmp / top, final)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InputError(f"{zip_path}: corrupt entry ({exc}); nothing was unpacked. Download it again.") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(tmp / top, total) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                if final.exists():
                    shutil.rmtree(old, ignore_errors=True)
                else:  # the new folder did not make it: put the old one back
                    os.replace(old, final)
    return final


def _check_member(info: zipfile.ZipInfo, zip_path: Path, out: Path) -> None:
    """Refuse an entry that would be written outside `out` (zip-slip), a link or a special file."""
    name = info.filename
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0]:
        raise InputError(f"{zip_path}: refused: entry {name!r} would be written outside {out} (zip-slip); nothing "
                         "was unpacked.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InputError(f"{zip_path}: refused: entry {name!r} is a symbolic link; nothing was unpacked.")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise InputError(f"{zip_path}: refused: entry {name!r} is not a regular file; nothing was unpacked.")
