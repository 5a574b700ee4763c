"""The only code that reads and writes weight files.

One network per `.safetensors` file. The header metadata (string -> string) holds:
- `bgedit.kind`: what network this is (`generator`, `discriminator`, `segmenter`, ...);
- `bgedit.format_version`: layout version of this convention (currently 1);
- `bgedit.config`: JSON config, enough to rebuild the network from the file alone;
- `bgedit.provenance`: JSON (command, data, steps, parent checkpoint hashes, ...).
Nothing is ever unpickled. Writes go to a temporary file in the same folder and are renamed into place
(`bgedit_cli.fileio.atomic_output`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bgedit_cli import __version__
from bgedit_cli.errors import BgeditError, CheckpointError
from bgedit_cli.fileio import atomic_output

FORMAT_VERSION = 1

# kind -> (module, config class, network class). Networks are imported only when a file of that kind is built.
NETWORKS: dict[str, tuple[str, str, str]] = {
    "generator": ("bgedit_cli.nn.stylegan2", "GeneratorConfig", "Generator"),
    "discriminator": ("bgedit_cli.nn.stylegan2", "DiscriminatorConfig", "Discriminator"),
    "segmenter": ("bgedit_cli.nn.segmenter", "SegmenterConfig", "Segmenter"),
    "inversion": ("bgedit_cli.nn.inversion", "InversionConfig", "InversionNet"),
    "clip": ("bgedit_cli.nn.clip_model", "ClipConfig", "ClipModel"),
    "text": ("bgedit_cli.nn.text_encoder", "TextEditorConfig", "TextEditor"),
}


@dataclasses.dataclass
class Checkpoint:
    """A loaded file: tensors plus the parsed header."""

    path: Path
    kind: str
    format_version: int
    config: dict[str, Any]
    provenance: dict[str, Any]
    tensors: dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------------------
# Raw files.


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file with any hashlib algorithm (publishers state sha256 or md5), read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], *, kind: str, config: dict[str, Any],
                    provenance: dict[str, Any] | None = None, force: bool = False) -> str:
    """Write tensors + header atomically; return the file's sha256."""
    meta = {
        "bgedit.kind": kind,
        "bgedit.format_version": str(FORMAT_VERSION),
        "bgedit.config": json.dumps(config, sort_keys=True),
        "bgedit.provenance": json.dumps({"bgedit_version": __version__, **(provenance or {})}, sort_keys=True),
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_output(path, force=force) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        _sort_metadata(tmp)
    return file_sha256(path)


def _sort_metadata(path: Path) -> None:
    """safetensors writes the metadata in hash order, which differs between processes; rewrite the header with
    its keys sorted (the same length), so that the same tensors and metadata always give the same bytes."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        header = json.loads(raw)  # dicts keep the file's order of the tensors
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= n and text != raw.rstrip(b" "):
            f.seek(8)
            f.write(text + b" " * (n - len(text)))


def read_header(path: Path, kind: str | None = None) -> tuple[dict[str, str], dict[str, tuple[str, list[int]]]]:
    """Parse only the header: (metadata, {name: (dtype, shape)}). Validates the file layout and the kind."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file.")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file.")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file is too short")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 << 20):
                raise ValueError("header length is larger than the file")
            header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        meta = header.pop("__metadata__", None) or {}
        entries = {}
        end = 0
        for name, info in header.items():
            begin, stop = info["data_offsets"]
            entries[name] = (info["dtype"], list(info["shape"]))
            end = max(end, stop)
        if 8 + n + end > size:
            raise ValueError(f"file is truncated ({size} bytes, tensors need {8 + n + end})")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a valid .safetensors file ({exc}). Re-download or re-create it (bgedit convert, bgedit train)."
        ) from None
    found = meta.get("bgedit.kind")
    if found is None:
        raise CheckpointError(f"{path}: a safetensors file without bgedit metadata; import foreign checkpoints "
                              "with `bgedit convert`.")
    if kind is not None and found != kind:
        raise CheckpointError(f"{path}: this is a '{found}' checkpoint, but a '{kind}' checkpoint is needed here.")
    try:
        version = int(meta.get("bgedit.format_version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported bgedit format version {meta.get('bgedit.format_version')!r} "
                              f"(this bgedit reads 1..{FORMAT_VERSION}); upgrade bgedit.")
    return meta, entries


def read_checkpoint(path: Path, kind: str | None = None) -> Checkpoint:
    """Load a whole file (tensors on CPU), checking layout and kind."""
    path = Path(path)
    meta, _ = read_header(path, kind)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for any damage
        raise CheckpointError(f"{path}: corrupt .safetensors file ({str(exc)[:160]}).") from None
    try:
        config = json.loads(meta.get("bgedit.config", "{}"))
        provenance = json.loads(meta.get("bgedit.provenance", "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the header's config or provenance is not valid JSON; the file is damaged.") from None
    return Checkpoint(path=path, kind=meta["bgedit.kind"], format_version=int(meta["bgedit.format_version"]),
                      config=config, provenance=provenance, tensors=tensors)


# ----------------------------------------------------------------------------------------------------------
# Networks.


def network_classes(kind: str) -> tuple[type, type]:
    if kind not in NETWORKS:
        raise CheckpointError(f"unknown network kind '{kind}'; known kinds: {', '.join(sorted(NETWORKS))}.")
    module, cfg_name, net_name = NETWORKS[kind]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, net_name)


def load_state_strict(net: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that reports missing/unexpected keys and shape mismatches as one clear error."""
    own = net.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    wrong = [f"{k} {list(tensors[k].shape)} (expected {list(own[k].shape)})"
             for k in own if k in tensors and tensors[k].shape != own[k].shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 4} more" if len(items) > 4 else ""
            problems.append(f"{label}: {', '.join(items[:4])}{more}")
    if problems:
        raise CheckpointError(f"{source}: tensors do not match the network ({'; '.join(problems)}). "
                              "The file is damaged or was written by another version.")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)


def load_network(path: Path, kind: str, device: str | torch.device = "cpu", **net_kwargs) -> nn.Module:
    """Rebuild a network of `kind` from its file alone; returns it in eval mode on `device`."""
    ckpt = read_checkpoint(path, kind)
    cfg_cls, net_cls = network_classes(kind)
    try:
        cfg = cfg_cls.from_dict(ckpt.config)
    except BgeditError as exc:
        raise CheckpointError(f"{path}: bad config in header: {exc}") from None
    net = net_cls(cfg, **net_kwargs)
    load_state_strict(net, ckpt.tensors, str(path))
    net.checkpoint_path = Path(path)
    net.provenance = ckpt.provenance
    return net.eval().requires_grad_(False).to(device)


def save_network(path: Path, net: nn.Module, *, kind: str, provenance: dict[str, Any] | None = None,
                 force: bool = False) -> str:
    """Save `net.state_dict()` with `net.cfg` as the header config; returns the file's sha256."""
    return save_checkpoint(path, net.state_dict(), kind=kind, config=net.cfg.to_dict(), provenance=provenance,
                           force=force)
