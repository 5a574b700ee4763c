"""Sampling a generator in batches from z, W or W+ codes, or from integer seeds; `generate_files`
(`bgedit generate`) writes the samples as numbered PNGs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bgedit_cli.errors import InputError
from bgedit_cli.fileio import check_writable
from bgedit_cli.io import load_npy, save_npy, save_png, to_uint8
from bgedit_cli.nn.stylegan2 import NOISE_MODES, Generator, NoiseMode
from bgedit_cli.pipelines.models import LoadedGenerator
from bgedit_cli.runtime import autocast


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


@dataclasses.dataclass(frozen=True)
class Generated:
    images: list[Path]  # OUT/000000.png, 000001.png, ...
    raw: Path | None  # the float32 NCHW output (.npy), if asked for
    resolution: int


def generate_files(gen: LoadedGenerator, out: Path, *, z_file: Path | None = None, w_file: Path | None = None,
                   seeds: str | None = None, truncation: float = 1.0, noise: str = "const", raw: Path | None = None,
                   batch_size: int = 8, seed: int = 0, force: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> Generated:
    """Sample `gen` from exactly one of a z file, a W/W+ file (.npy) or a seed list (`0-7`, `1,5,10-12`) into
    OUT/<i:06d>.png (and `raw`); outputs are checked before anything is computed. `seed` seeds random noise;
    `progress(done, total)` after each batch."""
    if sum(x is not None for x in (z_file, w_file, seeds)) != 1:
        raise InputError("give exactly one of --z, --w or --seeds.")
    if noise not in NOISE_MODES:
        raise InputError(f"--noise {noise}: expected one of {', '.join(NOISE_MODES)}.")
    g = gen.generator
    z = load_npy(z_file, what="z array") if z_file else None
    w = load_npy(w_file, what="w array") if w_file else None
    if seeds is not None:
        z = seeds_to_z(parse_seeds(seeds), g.cfg.z_dim)
    n = (z if z is not None else w).shape[0]
    paths = [Path(out) / f"{i:06d}.png" for i in range(n)]
    for p in paths + ([raw] if raw else []):
        check_writable(p, force)

    torch.manual_seed(seed)
    done = 0

    def advance(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, n)

    with autocast(gen.device, gen.precision):
        imgs = generate(g, z=z, w=w, truncation_psi=truncation, noise_mode=noise, batch_size=batch_size,
                        device=gen.device, progress=advance)
    if raw:
        save_npy(raw, imgs.numpy(), force=force)
    for p, pixels in zip(paths, to_uint8(imgs)):
        save_png(p, pixels, force=force)
    return Generated(images=paths, raw=raw, resolution=g.cfg.img_resolution)
