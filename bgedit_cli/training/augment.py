"""Differentiable augmentation for GAN training on small data: DiffAugment (Zhao et al. 2020) + an ADA-style p.

`diff_augment(x, policy, p)` applies the DiffAugment ops of `policy` ("color", "translation", "cutout") to a
batch `x: [N, C, H, W]` in [-1, 1]. It is differentiable in `x`, so the same call augments real images and
generated ones (the generator learns through it). The ops follow the official DiffAugment-pytorch code:

- color: brightness `x + (u - 0.5)`, saturation `(x - mean_c) * 2u + mean_c`, contrast
  `(x - mean_chw) * (u + 0.5) + mean_chw` (each with its own u ~ U[0, 1) per sample);
- translation: shift by up to 1/8 of the size in x and y (integer pixels, zero fill);
- cutout: zero a square of half the size at a random centre.

With `p < 1` every op hits each sample with probability p (the ADA idea of a tunable augmentation strength,
here over DiffAugment's ops rather than ADA's 18-transform pipeline). `AdaptiveP` drives p from the sign of
D(real) toward a target (ADA's r_t heuristic). All randomness comes from torch's global RNG, so a training
state that saves the RNG resumes the exact augmentation sequence.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from bgedit_cli.training.configs import DEFAULT_POLICY


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, size=[n, 1, 1], device=x.device)
    tx = torch.randint(-sw, sw + 1, size=[n, 1, 1], device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    # Indices into the 1-pixel zero-padded image; anything shifted past the border reads the zero pad.
    gy = torch.clamp(gy + ty + 1, 0, h + 1)
    gx = torch.clamp(gx + tx + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])
    return x_pad.permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)  # (N, C, H, W)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), size=[n, 1, 1], device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), size=[n, 1, 1], device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gy = torch.clamp(gy + oy - ch // 2, min=0, max=h - 1)
    gx = torch.clamp(gx + ox - cw // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1)


AUGMENT_FNS: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}


def parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in AUGMENT_FNS]
    if unknown:
        raise ValueError(f"unknown DiffAugment op(s) {unknown}; known: {', '.join(AUGMENT_FNS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str = DEFAULT_POLICY, p: float = 1.0) -> torch.Tensor:
    """Augment `x: [N, C, H, W]`; each op of `policy` hits each sample with probability `p` (1: always, as in
    DiffAugment). Returns a new tensor; gradients flow to `x`."""
    if p <= 0:
        return x
    for name in parse_policy(policy):
        for fn in AUGMENT_FNS[name]:
            if p >= 1:
                x = fn(x)
            else:
                hit = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
                x = torch.where(hit, fn(x), x)
    return x


class AdaptiveP:
    """ADA's controller: every `interval` steps, `p += sign(r_t - target) * images / (speed_kimg * 1000)`, where
    `r_t = E[sign(D(real))]` over those steps; p stays in [0, 1]. Feed it with `accumulate(real_logits)`."""

    def __init__(self, target: float = 0.6, speed_kimg: float = 100.0, interval: int = 4, p: float = 0.0) -> None:
        self.target, self.speed_kimg, self.interval = target, speed_kimg, interval
        self.p = p
        self.sign_sum = 0.0
        self.count = 0
        self.rt = float("nan")

    def accumulate(self, real_logits: torch.Tensor) -> None:
        self.sign_sum += float(real_logits.detach().float().sign().sum())
        self.count += real_logits.numel()

    def adjust(self, step: int, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Call once per step (after it); adjusts p every `interval` steps. `reduce` sums over ranks under DDP."""
        if (step + 1) % self.interval or self.count == 0:
            return
        stats = torch.tensor([self.sign_sum, float(self.count)], dtype=torch.float64)
        if reduce is not None:
            stats = reduce(stats)
        self.rt = float(stats[0] / stats[1])
        delta = (1.0 if self.rt > self.target else -1.0) * float(stats[1]) / (self.speed_kimg * 1000)
        self.p = min(max(self.p + delta, 0.0), 1.0)
        self.sign_sum, self.count = 0.0, 0

    def state_dict(self) -> dict[str, float | None]:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count,
                "rt": None if self.rt != self.rt else self.rt}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.p, self.sign_sum, self.count = float(state["p"]), float(state["sign_sum"]), int(state["count"])
        self.rt = float(state["rt"]) if state.get("rt") is not None else float("nan")
