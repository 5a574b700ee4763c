"""`bgedit convert SRC DST`: a foreign StyleGAN2 generator (rosinality .pt, NVIDIA .pkl) saved as our file, with
where it came from in its provenance (source file, sha256, format, which copy, the importer's notes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bgedit_cli.checkpoint import file_sha256, save_network
from bgedit_cli.convert import build_generator, convert_file
from bgedit_cli.errors import InputError
from bgedit_cli.fileio import check_writable
from bgedit_cli.nn.stylegan2 import GeneratorConfig

WHICH = ("g_ema", "g")


@dataclasses.dataclass(frozen=True)
class Converted:
    path: Path
    sha256: str
    format: str  # rosinality or nvidia-pkl
    which: str
    config: GeneratorConfig
    notes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "format": self.format, "which": self.which,
                "config": self.config.to_dict(), "notes": self.notes}


def convert_generator(src: Path, dst: Path, *, which: str = "g_ema", force: bool = False) -> Converted:
    """Import the `which` generator (g_ema: the EMA weights, or g) of SRC into DST (checked before reading SRC)."""
    if which not in WHICH:
        raise InputError(f"--which {which}: expected g_ema or g.")
    check_writable(dst, force)
    conv = convert_file(src, which)
    g = build_generator(conv)
    provenance = {
        "command": "convert",
        "source": {"file": Path(src).name, "sha256": file_sha256(src), "format": conv.source_format,
                   "which": conv.which},
        "notes": conv.notes,
    }
    digest = save_network(dst, g, kind="generator", provenance=provenance, force=force)
    return Converted(path=Path(dst), sha256=digest, format=conv.source_format, which=conv.which, config=g.cfg,
                     notes=dict(conv.notes))
