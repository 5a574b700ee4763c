"""Pieces shared by the importers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from bgedit_cli.errors import CheckpointError
from bgedit_cli.nn.stylegan2 import GeneratorConfig


@dataclasses.dataclass
class ConvertedGenerator:
    """A foreign generator in our names. `state_dict` may lack `mapping.w_avg` (then it is computed)."""

    config: GeneratorConfig
    state_dict: dict[str, torch.Tensor]
    source_format: str
    which: str
    notes: dict[str, str]


def require(src: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key not in src:
        raise CheckpointError(f"{path}: missing tensor '{key}'; this is not a complete StyleGAN2 generator.")
    return src[key]


def infer_mapping(src: dict[str, torch.Tensor], pattern: str, start: int, path: Path) -> tuple[int, int, int]:
    """Count mapping layers named `pattern.format(i)` from `start`; return (layers, z_dim, w_dim)."""
    i = start
    while pattern.format(i) in src:
        i += 1
    num = i - start
    if num == 0:
        raise CheckpointError(f"{path}: no mapping network ('{pattern.format(start)}') found.")
    z_dim = src[pattern.format(start)].shape[1]
    w_dim = src[pattern.format(start + num - 1)].shape[0]
    return num, z_dim, w_dim
