"""Importers for foreign StyleGAN2 checkpoints; the format is sniffed from the file's first bytes."""

from __future__ import annotations

from pathlib import Path

from bgedit_cli.checkpoint import load_state_strict
from bgedit_cli.convert.common import ConvertedGenerator
from bgedit_cli.convert.nvidia import convert_nvidia
from bgedit_cli.convert.rosinality import convert_rosinality
from bgedit_cli.errors import CheckpointError
from bgedit_cli.nn.stylegan2 import Generator

# Legacy (pre-zip) torch.save files begin with a pickled magic number.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def sniff_format(path: Path) -> str:
    """'rosinality' for torch.save files (zip or legacy), 'nvidia-pkl' for other pickles."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file.")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        return "rosinality"
    if head[:1] == b"\x80" and len(head) >= 2:
        return "rosinality" if _TORCH_LEGACY_MAGIC in head else "nvidia-pkl"
    if head.startswith(b"\x00\x00") or head[8:9] == b"{":
        raise CheckpointError(f"{path}: looks like a .safetensors file; bgedit reads those directly (bgedit info).")
    raise CheckpointError(f"{path}: not a StyleGAN2 checkpoint bgedit can import "
                          "(expected a rosinality .pt or an NVIDIA stylegan2-ada-pytorch .pkl).")


def convert_file(path: Path, which: str = "g_ema") -> ConvertedGenerator:
    fmt = sniff_format(path)
    if fmt == "rosinality":
        return convert_rosinality(Path(path), which)
    return convert_nvidia(Path(path), which)


def build_generator(conv: ConvertedGenerator):
    """Instantiate our Generator with the converted tensors (computing w_avg where the file had none)."""
    g = Generator(conv.config)
    tensors = dict(conv.state_dict)
    compute_avg = "mapping.w_avg" not in tensors
    if compute_avg:
        tensors["mapping.w_avg"] = g.mapping.w_avg.clone()
    load_state_strict(g, tensors, f"{conv.source_format} {conv.which}")
    if compute_avg:
        g.update_w_avg(num_samples=10_000, seed=0)
    return g.eval().requires_grad_(False)
