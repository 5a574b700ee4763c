"""The auxiliary pretrained weight files: one registry entry each, and how they are found and read.

Each file is the one its publisher distributes, never a converted copy. An entry (`WeightSpec`) holds the name
`bgedit doctor` and `bgedit weights fetch NAME` use, the file names accepted, the publisher's URL, the published
hash with its algorithm and where it is published, the purpose, the option that gives another file, and whether
the torch hub cache is searched too:

    name       file (under $BGEDIT_HOME/weights/)          published hash
    clip       clip/ViT-B-32.pt                            sha256 (full), the path segment of OpenAI's URL
    alexnet    alexnet-owt-7be5be79.pth                    sha256 prefix 7be5be79 in torchvision's file name
    inception  weights-inception-2015-12-05-6726825d.pth   sha256 prefix 6726825d in torch-fidelity's file name
    moco       moco_v2_800ep_pretrain.pth.tar (or .pt)     md5 prefix a04e12f8, facebookresearch/moco's README

Nothing here downloads (`bgedit weights fetch` does, see `bgedit_cli.download`): a missing file is a
`MissingWeightsError(spec, purpose=...)` whose message names the file, the fetch command, the URL and where to
put it. Torch files are read with `torch.load(weights_only=True)` (no pickled code runs).

torch is imported inside the functions that need it: the registry itself is read by `bgedit weights fetch`,
which hashes files and never loads a network.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Any

from bgedit_cli.bundle import weights_dir
from bgedit_cli.errors import BgeditError, CheckpointError, InputError, one_line


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """One auxiliary weight file (module docstring).

    `names` are paths relative to a search folder; `names[0]` is where `weights fetch` puts the file.
    `published_hash` is a full hex digest or a prefix of one (`hash_algo`: sha256 or md5); a file matches when its
    digest starts with it. `hash_published` says where that digest is published.
    """

    key: str
    names: tuple[str, ...]
    source: str  # the publisher's download URL
    hash_algo: str
    published_hash: str
    hash_published: str
    purpose: str
    option: str
    torch_hub: bool = False  # also look in torch.hub.get_dir()/checkpoints/ (where torchvision/torch-fidelity keep it)

    @property
    def file_name(self) -> str:
        """The file name on the publisher's server (and on a mirror)."""
        return self.source.rstrip("/").rsplit("/", 1)[-1]

    @property
    def hash_label(self) -> str:
        return f"{self.hash_algo}:{self.published_hash}"


CLIP_VIT_B32 = WeightSpec(
    key="clip",
    names=("clip/ViT-B-32.pt",),
    source="https://openaipublic.azureedge.net/clip/models/"
           "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    hash_algo="sha256",
    published_hash="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    hash_published="the full SHA-256 is the path segment of OpenAI's URL (clip/clip.py `_MODELS`; `clip.load` "
                   "checks it)",
    purpose="OpenAI CLIP ViT-B/32 (text editing and FD_CLIP with the real CLIP)",
    option="--clip",
)
ALEXNET = WeightSpec(
    key="alexnet",
    names=("alexnet-owt-7be5be79.pth",),
    source="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    hash_algo="sha256",
    published_hash="7be5be79",
    hash_published="SHA-256 prefix in torchvision's file name (torch.hub's convention, checked by "
                   "`load_state_dict_from_url(check_hash=True)`)",
    purpose="the LPIPS backbone (torchvision's ImageNet AlexNet): the LPIPS metric and the LPIPS loss",
    option="--alexnet",
    torch_hub=True,
)
INCEPTION = WeightSpec(
    key="inception",
    names=("weights-inception-2015-12-05-6726825d.pth",),
    source="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
           "weights-inception-2015-12-05-6726825d.pth",
    hash_algo="sha256",
    published_hash="6726825d",
    hash_published="SHA-256 prefix in torch-fidelity's file name (torch.hub's naming convention; torch-fidelity "
                   "itself downloads without checking it)",
    purpose="FID and KID (torch-fidelity's port of TensorFlow's 2015-12-05 Inception-v3)",
    option="--inception",
    torch_hub=True,
)
MOCO = WeightSpec(
    key="moco",
    names=("moco_v2_800ep_pretrain.pth.tar", "moco_v2_800ep_pretrain.pt"),  # the release; HyperStyle's rename
    source="https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
    hash_algo="md5",
    published_hash="a04e12f8",
    hash_published="MD5 prefix in the model table of github.com/facebookresearch/moco's README",
    purpose="the MoCo v2 similarity loss (facebookresearch/moco's ResNet-50, 800 epochs)",
    option="--moco",
)

# name -> spec, in the order `bgedit doctor` lists them. `weights fetch` and `doctor` look specs up here.
REGISTRY: dict[str, WeightSpec] = {s.key: s for s in (CLIP_VIT_B32, ALEXNET, INCEPTION, MOCO)}


def get_spec(name: str) -> WeightSpec:
    """The registry entry `name` (as `bgedit doctor` lists it); an unknown name is an InputError."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown weight file {name!r}; known: {', '.join(REGISTRY)}.") from None


# ----------------------------------------------------------------------------------------------------------
# Finding files.


class MissingWeightsError(CheckpointError):
    """An auxiliary pretrained weight file is not on this machine. The message is built from the spec: the file,
    what needs it (`purpose`, default the spec's), how to fetch it, where to put it; `given` is a path passed
    with the spec's option that does not exist."""

    def __init__(self, spec: WeightSpec, purpose: str | None = None, *, given: Path | None = None) -> None:
        self.spec, self.purpose, self.given = spec, purpose or spec.purpose, given
        fetch = f"`bgedit weights fetch {spec.key}`"
        if given is not None:
            message = (f"{spec.option} {given}: no such file ({spec.names[0]}, needed for {self.purpose}; get it "
                       f"with {fetch} or from {spec.source}).")
        else:
            dirs = search_dirs(spec)
            message = (f"{spec.names[0]} not found; it is needed for {self.purpose}. Get it with {fetch}, or "
                       f"download {spec.source} and put it in {dirs[0] / Path(spec.names[0]).parent}/ (searched: "
                       f"{', '.join(str(d) for d in dirs)}), or pass {spec.option} FILE.")
        super().__init__(message)


class MissingPackageFileError(MissingWeightsError):
    """Weights that ship inside a pip package (the LPIPS linear layers) are missing: the message says which
    package to (re)install."""

    def __init__(self, message: str) -> None:
        CheckpointError.__init__(self, message)


def search_dirs(spec: WeightSpec) -> list[Path]:
    """The folders searched for `spec`, in order: `$BGEDIT_HOME/weights/`, then the torch hub cache if the spec's
    library keeps its download there."""
    dirs = [weights_dir()]
    if spec.torch_hub:
        import torch  # only for the hub folder; the registry is read without torch (module docstring)

        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_weights(spec: WeightSpec, override: str | Path | None = None, *, purpose: str | None = None) -> Path:
    """The file for `spec`: `override` when given (must exist), else the first name found in `search_dirs`.
    A missing file is a MissingWeightsError naming `purpose` (default: the spec's)."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise MissingWeightsError(spec, purpose, given=path)
        return path
    for folder in search_dirs(spec):
        for name in spec.names:
            if (folder / name).is_file():
                return folder / name
    raise MissingWeightsError(spec, purpose)


def matches_published_hash(spec: WeightSpec, digest: str) -> bool:
    """Whether a file's hex digest (of `spec.hash_algo`) is the published one (full digest or its prefix)."""
    return digest.lower().startswith(spec.published_hash.lower())


# ----------------------------------------------------------------------------------------------------------
# Verification records and status.


def _record_path(path: Path) -> Path:
    return path.parent / f".{path.name}.verified.json"


def record_digest(path: Path, algo: str, digest: str) -> None:
    """Remember that `path` (at its current size and mtime) hashed to `digest`: `bgedit weights fetch` writes this
    after its check, so `bgedit doctor` can show the file as verified without reading it again."""
    st = path.stat()
    record = {"algo": algo, "digest": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = _record_path(path).with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, _record_path(path))
    except OSError:  # a read-only folder (e.g. a shared hub cache): doctor then just hashes again with --verify
        tmp.unlink(missing_ok=True)


def recorded_digest(path: Path, algo: str) -> str | None:
    """The digest `record_digest` stored for `path`, if the file has not changed since (size and mtime)."""
    try:
        record = json.loads(_record_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("algo") != algo or record.get("size") != st.st_size \
            or record.get("mtime_ns") != st.st_mtime_ns or not isinstance(record.get("digest"), str):
        return None
    return record["digest"]


def weights_status(verify: bool = False) -> list[dict[str, Any]]:
    """Each registered file (what `bgedit doctor` lists): found (path) or missing, with its expected place, source
    and published hash. `hash_ok` is the published-hash check: computed now with `verify` (reads each file), else
    the one `bgedit weights fetch` recorded for this very file, else None; `verified` says which."""
    from bgedit_cli.checkpoint import file_digest

    rows = []
    for spec in REGISTRY.values():
        try:
            found: Path | None = find_weights(spec)
        except MissingWeightsError:
            found = None
        dirs = search_dirs(spec)
        row = {"key": spec.key, "file": spec.names[0], "purpose": spec.purpose, "found": str(found) if found else None,
               "expected": str(dirs[0] / spec.names[0]), "searched": [str(d) for d in dirs], "source": spec.source,
               "option": spec.option, "published_hash": spec.hash_label, "hash_published": spec.hash_published,
               "hash_ok": None, "verified": None}
        if found is not None:
            digest = file_digest(found, spec.hash_algo) if verify else recorded_digest(found, spec.hash_algo)
            if digest is not None:
                row["hash_ok"] = matches_published_hash(spec, digest)
                row["verified"] = "now" if verify else "at fetch"
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------
# Fetching (`bgedit weights fetch`).


def fetch_weights(spec: WeightSpec, *, folder: Path | None = None, mirror: str | None = None,
                  from_file: Path | None = None, force: bool = False, progress=None) -> dict[str, Any]:
    """Put the publisher's file for `spec` at `folder/names[0]` (default `$BGEDIT_HOME/weights/`), verified against
    the published hash: downloaded from the publisher's URL or `mirror` (a base URL serving the same file names),
    or copied from `from_file`. A file already in place (or, without `folder`, anywhere `find_weights` looks) that
    matches the hash is kept (status "present"); one that does not match is replaced only with `force`.
    Returns {name, file, path, status: downloaded|installed|present, hash, url}."""
    from bgedit_cli.download import DownloadError, Expected, fetch_url, file_digest, install_file, mirror_url

    dest = Path(folder).expanduser() / spec.names[0] if folder is not None else weights_dir() / spec.names[0]
    expected = Expected(spec.hash_algo, spec.published_hash)
    row = {"name": spec.key, "file": spec.names[0], "path": str(dest), "status": None, "url": None,
           "hash": None, "published_hash": spec.hash_label}

    # Already there?
    if not force:
        candidates = [dest] if folder is not None else [d / n for d in search_dirs(spec) for n in spec.names]
        for path in (p for p in candidates if p.is_file()):
            digest = recorded_digest(path, spec.hash_algo) or file_digest(path, spec.hash_algo, progress)
            if expected.matches(digest):
                record_digest(path, spec.hash_algo, digest)
                return {**row, "path": str(path), "status": "present", "hash": f"{spec.hash_algo}:{digest}"}
            if path == dest:
                raise DownloadError(f"{dest} exists but is not the published file ({spec.hash_algo}:{digest}, "
                                    f"published {spec.hash_label}); pass --force to replace it.")

    # Download or install.
    if from_file is not None:
        digest = install_file(Path(from_file), dest, expected, progress=progress)
        row.update(status="installed", url=str(Path(from_file).expanduser()))
    else:
        url = mirror_url(mirror, spec.file_name) if mirror else spec.source
        manual = f"download {spec.source} by hand and run `bgedit weights fetch {spec.key} --from FILE`"
        digest = fetch_url(url, dest, expected, manual_hint=manual, progress=progress)
        row.update(status="downloaded", url=url)
    record_digest(dest, spec.hash_algo, digest)
    return {**row, "hash": f"{spec.hash_algo}:{digest}"}


@dataclasses.dataclass
class FetchReport:
    """What `fetch_many` did: the rows of the files in place (`fetch_weights`'s) and the failures as
    {name, error} with the error on one line."""

    done: list[dict[str, Any]]
    failed: list[dict[str, str]]


def fetch_many(names: list[str], *, folder: Path | None = None, mirror: str | None = None,
               from_file: Path | None = None, force: bool = False, progress=None, on_done=None) -> FetchReport:
    """`fetch_weights` for each registry name in turn (`bgedit weights fetch`): every name is looked up first (an
    unknown one is an InputError before anything is fetched); a file that fails is recorded and the next one
    fetched. `progress(name)` gives that file's `download.Progress`; `on_done(row)` is called as each file is in
    place."""
    specs = [get_spec(n) for n in names]
    report = FetchReport(done=[], failed=[])
    for spec in specs:
        try:
            row = fetch_weights(spec, folder=folder, mirror=mirror, from_file=from_file, force=force,
                                progress=progress(spec.key) if progress is not None else None)
        except BgeditError as exc:
            report.failed.append({"name": spec.key, "error": one_line(exc)})
            continue
        report.done.append(row)
        if on_done is not None:
            on_done(row)
    return report


# ----------------------------------------------------------------------------------------------------------
# Reading files.


def load_torch_file(path: Path, what: str) -> Any:
    """`torch.load(path, weights_only=True)` on CPU; any failure is a CheckpointError naming the file."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        detail = one_line(exc)[:200]
        raise CheckpointError(f"{path}: not a readable {what} file ({detail}). Re-download it.") from None


def lpips_linear_layers_file(net: str = "alex", version: str = "0.1") -> Path:
    """The LPIPS linear-layer weights shipped inside the `lpips` package."""
    try:
        import lpips  # here, not at the top: it imports torchvision (~2 s); only to find its folder
    except ImportError:
        raise MissingPackageFileError("the `lpips` package is not installed (its linear layers are needed for "
                                      "LPIPS); pip install 'lpips>=0.1.4'.") from None
    path = Path(lpips.__file__).resolve().parent / "weights" / f"v{version}" / f"{net}.pth"
    if not path.is_file():
        raise MissingPackageFileError(f"{path}: the LPIPS linear layers are missing from the `lpips` package; "
                                      "reinstall it (pip install --force-reinstall 'lpips>=0.1.4').")
    return path
