"""What `--precision auto` measures on a CPU, per command family (`runtime.Workload`, decided and cached by
`runtime.resolve_precision`):

- `inversion_workload(G, net)`: one HyperStyle refinement step (both hypernetworks and the generator with
  per-sample weights) on a random image -- the part every `invert`, `mix-*`, `text-edit` and bundle `evaluate`
  spends its time in;
- `generator_workload(G)`: one generator forward from a random z (`bgedit generate`).

Both run at batch 1: bf16's gain grows with the batch (more work per cast and per layer), so a decision for
batch 1 also holds for larger batches. The key holds the networks' configs (hashed), not their weights.
"""

from __future__ import annotations

import functools
import hashlib
import json

import torch

from bgedit_cli.data.ade20k_classes import NUM_CLASSES
from bgedit_cli.latent import sum_deltas
from bgedit_cli.nn.inversion import InversionNet
from bgedit_cli.nn.stylegan2 import Generator
from bgedit_cli.runtime import Workload


def _digest(*configs: dict) -> str:
    return hashlib.sha256(json.dumps(configs, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _inputs(generator: Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random image [1, 3, R, R], a random one-hot map [1, 151, R, R] and a W+ code [1, num_ws, w_dim]."""
    r, device = generator.cfg.img_resolution, generator.w_avg.device
    gen = torch.Generator().manual_seed(0)
    img = (torch.rand(1, 3, r, r, generator=gen) * 2 - 1).to(device)
    ids = torch.randint(0, NUM_CLASSES, (1, 1, r, r), generator=gen)
    seg = torch.zeros(1, NUM_CLASSES, r, r).scatter_(1, ids, 1.0).to(device)
    z = torch.randn(1, generator.cfg.z_dim, generator=gen).to(device)
    with torch.no_grad():
        return img, seg, generator.broadcast(generator.mapping(z))


def inversion_workload(generator: Generator, net: InversionNet) -> Workload:
    """One refinement step of `invert` at batch 1 (module doc). Its inputs are made on the first run."""
    cfg = {k: v for k, v in net.cfg.to_dict().items() if k != "generator_sha256"}
    key = (f"invert, mix, text-edit | {net.cfg.preset or 'custom'} {net.variant} {generator.cfg.img_resolution}px "
           f"{_digest(generator.cfg.to_dict(), cfg)} | batch 1")

    @functools.cache
    def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _inputs(generator)

    def run() -> None:  # as pipelines.invert.refine_step, with the input image standing in for y_t
        img, seg, ws = inputs()
        hypers = [(net.hyper_img, img)] + ([(net.hyper_seg, seg)] if net.uses_seg else [])
        deltas = [hyper(img, hyper.condition(x)) for hyper, x in hypers]
        generator.synthesize(ws, weight_deltas=sum_deltas(deltas[0], deltas[1] if len(deltas) > 1 else None))

    return Workload(key, run, (generator, net))


def generator_workload(generator: Generator) -> Workload:
    """One generator forward at batch 1 (module doc). Its input is made on the first run."""
    key = f"generate | {generator.cfg.img_resolution}px {_digest(generator.cfg.to_dict())} | batch 1"

    @functools.cache
    def z() -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(1, generator.cfg.z_dim, generator=gen).to(generator.w_avg.device)

    def run() -> None:
        generator(z())

    return Workload(key, run, (generator,))
