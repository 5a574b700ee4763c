"""Sampling a generator in batches from z, W or W+ codes, or from integer seeds."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import torch

from bgedit_cli.errors import InputError
from bgedit_cli.nn.stylegan2 import Generator, NoiseMode


def parse_seeds(text: str) -> list[int]:
    """'0-7' -> [0..7]; '1,5,10-12' -> [1, 5, 10, 11, 12]."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InputError(f"--seeds {text!r}: expected numbers and ranges like 0-7 or 1,5,10-12.")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InputError(f"--seeds {text!r}: range {lo}-{hi} is empty.")
        seeds.extend(range(lo, hi + 1))
    if len(seeds) > 1_000_000:
        raise InputError(f"--seeds {text!r}: too many seeds ({len(seeds)}).")
    return seeds


def seeds_to_z(seeds: list[int], z_dim: int) -> np.ndarray:
    """One z per seed from `np.random.RandomState(seed).randn(z_dim)` (NVIDIA's generate.py convention)."""
    return np.stack([np.random.RandomState(s % 2**32).randn(z_dim) for s in seeds]).astype(np.float32)


def check_latents(g: Generator, *, z: np.ndarray | None = None, w: np.ndarray | None = None) -> None:
    cfg = g.cfg
    if z is not None and (z.ndim != 2 or z.shape[1] != cfg.z_dim):
        raise InputError(f"z must have shape [N, {cfg.z_dim}] for this generator, got {list(z.shape)}.")
    if w is not None:
        ok = (w.ndim == 2 and w.shape[1] == cfg.w_dim) or (w.ndim == 3 and w.shape[1:] == (cfg.num_ws, cfg.w_dim))
        if not ok:
            raise InputError(f"w must have shape [N, {cfg.w_dim}] (W) or [N, {cfg.num_ws}, {cfg.w_dim}] (W+) for "
                             f"this generator, got {list(w.shape)}.")
    n = (z if z is not None else w).shape[0]
    if n == 0:
        raise InputError("no latent codes given (N = 0).")


@torch.no_grad()
def generate(g: Generator, *, z: np.ndarray | None = None, w: np.ndarray | None = None,
             truncation_psi: float = 1.0, noise_mode: NoiseMode = "const", batch_size: int = 8,
             device: torch.device | str = "cpu", progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Images [N, C, R, R] (float32, CPU, unclamped) from z [N, z_dim] or w ([N, w_dim] or [N, num_ws, w_dim])."""
    if (z is None) == (w is None):
        raise InputError("give exactly one of z, w or seeds.")
    check_latents(g, z=z, w=w)
    src = torch.from_numpy(z if z is not None else w)
    outs = []
    for start in range(0, src.shape[0], batch_size):
        chunk = src[start : start + batch_size].to(device)
        if z is not None:
            img = g(chunk, truncation_psi=truncation_psi, noise_mode=noise_mode)
        else:
            img = g(ws=chunk, truncation_psi=truncation_psi, noise_mode=noise_mode)
        outs.append(img.float().cpu())
        if progress is not None:
            progress(chunk.shape[0])
    return torch.cat(outs)
