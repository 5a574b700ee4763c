"""StyleGAN2 training pieces: G, D, G_ema and their optimizers, one training step, warm starts.

The recipe is the reference one (NVlabs stylegan2-ada-pytorch `training/loss.py` + `training_loop.py`,
rosinality `train.py`):

- non-saturating logistic loss; lazy R1 on reals every `r1_interval` D steps, weighted `gamma/2 * interval`;
  optional path-length regularization every `pl_interval` G steps (`pl_weight`, decay 0.01, half batch);
- style mixing (probability 0.9, one random crossover index per batch); noise inputs random while training;
- Adam(beta1 0, beta2 0.99) with lazy-regularization corrections `lr * c`, `beta ** c`, `c = k / (k + 1)`;
- `w_avg` tracked as `lerp(batch mean w, w_avg, 0.995)` (averaged over ranks) and kept in the EMA generator;
- EMA generator with a half-life of `ema_kimg` thousand images, ramped up as `min(ema_kimg, nimg * rampup)`;
  buffers are copied;
- optional DiffAugment (color, translation, cutout) on real and fake images before D, with p = 1 (`diffaug`)
  or an ADA-style p driven by E[sign D(real)] toward 0.6 (`ada`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from bgedit_cli.checkpoint import file_sha256, load_network
from bgedit_cli.errors import ConfigError, InputError
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from bgedit_cli.runtime import autocast
from bgedit_cli.training.augment import AdaptiveP, diff_augment
from bgedit_cli.training.common import Dist, all_reduce_mean, sum_over_ranks
from bgedit_cli.training.configs import GeneratorTrainConfig


# ----------------------------------------------------------------------------------------------------------
# The network and where it starts.


def network_config(cfg: GeneratorTrainConfig) -> GeneratorConfig:
    """The preset's generator, with `--channels` widths where given."""
    gcfg = GENERATOR_PRESETS[cfg.preset]
    if cfg.channels is None:
        return gcfg
    try:
        return gcfg.replace(channels=tuple(cfg.channels))
    except ConfigError as exc:
        raise InputError(f"--channels {','.join(map(str, cfg.channels))}: {exc}") from None


def warm_start(trainer: "StyleGAN2Trainer", path: Path) -> str:
    """Load G and G_ema (weights and w_avg) from a generator file; returns its sha256. The file's network must
    be this run's, or a narrower one of the same depth and w_dim, which is widened without changing what it draws
    (`widen_into`). D keeps its fresh initialization."""
    start = load_network(path, "generator")
    if start.cfg != trainer.gcfg:
        small, big = start.cfg, trainer.gcfg
        same_but_widths = small.replace(channels=big.channels) == big
        if not same_but_widths or any(a > b for a, b in zip(small.channels, big.channels)):
            raise InputError(f"--init-from {path}: its network ({_describe(small)}) differs from this run's "
                             f"({_describe(big)}); pass the same --preset and --channels as the file's run, or "
                             "wider --channels.")
        widen_into(trainer.G, start)
        trainer.G_ema.load_state_dict(trainer.G.state_dict())
    else:
        trainer.G.load_state_dict(start.state_dict())
        trainer.G_ema.load_state_dict(start.state_dict())
    return file_sha256(path)


@torch.no_grad()
def widen_into(big: nn.Module, small: nn.Module) -> None:
    """Copy a trained generator into a wider one of the same depth so that the wider one draws the same images
    (net2net-style widening). Old channels keep their weights; a new channel's weights and style affine keep
    `big`'s fresh initialization, and every weight from a new input channel into an old output is zero, so old
    features see nothing new. Demodulated convs do not depend on the overall weight scale, so their gain
    1/sqrt(fan_in) may change; the ToRGB layers (no demodulation) are rescaled by sqrt(new fan_in / old fan_in)."""
    mine, theirs = big.state_dict(), small.state_dict()
    for name, t in theirs.items():
        dst = mine[name]
        if dst.shape == t.shape:
            dst.copy_(t)
            continue
        old = tuple(slice(0, n) for n in t.shape)
        if name.endswith(".weight") and dst.ndim == 4:  # conv / ToRGB weight [out, in, k, k]
            dst[:t.shape[0], t.shape[1]:] = 0  # new inputs into old outputs
            scale = math.sqrt(dst.shape[1] / t.shape[1]) if ".torgbs." in name else 1.0
            dst[old] = t * scale
        else:  # biases, style affines (rows = input channels), const: the old part
            dst[old] = t
def _describe(gcfg: GeneratorConfig) -> str:
    return f"{gcfg.img_resolution} px, w_dim {gcfg.w_dim}, widths {','.join(map(str, gcfg.channels))}"


# ----------------------------------------------------------------------------------------------------------
# Pieces of the step.


class GeneratorPass(nn.Module):
    """The module DDP wraps for G: z (+ mixing latents) -> (img, ws, w). Mapping and synthesis both run here,
    so every G parameter takes part in each reduced backward."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, z_mix: torch.Tensor, cutoff: int) -> tuple[torch.Tensor, ...]:
        G = self.G
        w = G.mapping(z)
        ws = G.broadcast(w)
        if cutoff < G.num_ws:
            ws = torch.cat([ws[:, :cutoff], G.broadcast(G.mapping(z_mix))[:, cutoff:]], dim=1)
        img = G.synthesize(ws, noise_mode="random")
        return img, ws, w


def mixing_cutoff(num_ws: int, prob: float) -> int:
    """Style mixing: with probability `prob` a crossover index in 1..num_ws-1, else num_ws (no mixing)."""
    cutoff = int(torch.randint(1, num_ws, ()).item())
    return cutoff if float(torch.rand(())) < prob else num_ws


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema params <- lerp(G, G_ema, beta); buffers (w_avg, noise_const) copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def ema_beta(cfg: GeneratorTrainConfig, nimg: int) -> float:
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup is not None:
        ema_nimg = min(ema_nimg, nimg * cfg.ema_rampup)
    return 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))


def lazy_ratio(interval: int | None) -> float:
    """The lazy-regularization correction c = k / (k + 1) of the learning rate and betas (k = None: 1)."""
    return interval / (interval + 1) if interval else 1.0


def lazy_adam(params, lr: float, interval: int | None) -> torch.optim.Adam:
    """Adam(0, 0.99) with the lazy-regularization correction c (`lazy_ratio`)."""
    c = lazy_ratio(interval)
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0**c, 0.99**c), eps=1e-8)


def state_hash(*modules: nn.Module) -> str:
    """sha256 over every tensor of the modules' state dicts (names included)."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# One training step (networks, optimizers and the four phases), shared by the loop and the benchmarks.


class StyleGAN2Trainer:
    """G, D, G_ema, optimizers and regularization state; `step(real, step)` runs D main, lazy R1, G main,
    lazy path length, then the EMA. Build on every rank after seeding identically."""

    def __init__(self, gcfg, cfg: GeneratorTrainConfig, device: torch.device, precision: str = "fp32",
                 d=None) -> None:
        self.gcfg, self.cfg, self.device, self.precision = gcfg, cfg, device, precision
        self.d = d or Dist()
        self.G = Generator(gcfg).to(device).train()
        self.D = Discriminator(DiscriminatorConfig.matching(gcfg)).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = lazy_adam(self.G.parameters(), *self.lr_and_interval("G"))
        self.opt_D = lazy_adam(self.D.parameters(), *self.lr_and_interval("D"))
        self.scalers = {k: torch.amp.GradScaler("cuda", enabled=precision == "fp16") for k in ("G", "D")}
        self.pl_mean = torch.zeros([], device=device)
        self.ada = AdaptiveP(target=cfg.ada_target, speed_kimg=cfg.ada_kimg, interval=cfg.ada_interval,
                             p=1.0 if cfg.augment == "diffaug" else 0.0)
        self.gen_pass = GeneratorPass(self.G)
        self.G_train: nn.Module = self.gen_pass
        self.D_train: nn.Module = self.D
        if self.d.enabled:
            # 1x1 conv weight grads come back with other strides than DDP's buckets: a copy, not an error.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

            ids = [device.index] if device.type == "cuda" else None
            self.G_train = DDP(self.gen_pass, device_ids=ids, broadcast_buffers=False)
            self.D_train = DDP(self.D, device_ids=ids, broadcast_buffers=False)
        self.G.requires_grad_(False)  # each phase switches on the network it trains
        self.D.requires_grad_(False)

    def lr_and_interval(self, net: str) -> tuple[float, int | None]:
        """The learning rate of G or D and its lazy-regularization interval (None when that regularizer is off)."""
        cfg = self.cfg
        if net == "G":
            return cfg.g_lr, cfg.pl_interval if cfg.pl_weight > 0 else None
        return cfg.d_lr, cfg.r1_interval if cfg.r1_gamma > 0 else None

    # State.

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "scalers": {k: s.state_dict() for k, s in self.scalers.items() if s.is_enabled()},
                "pl_mean": self.pl_mean.detach().cpu(), "ada": self.ada.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        for name, opt in (("G", self.opt_G), ("D", self.opt_D)):
            opt.load_state_dict(state[f"opt_{name}"])
            lr, interval = self.lr_and_interval(name)  # the config's, not the saved one: `--resume --lr` lowers it
            for group in opt.param_groups:
                group["lr"] = lr * lazy_ratio(interval)
        for name, scaler in self.scalers.items():
            if state.get("scalers", {}).get(name):
                scaler.load_state_dict(state["scalers"][name])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.ada.load_state_dict(state["ada"])

    # Helpers.

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.augment == "none":
            return x
        return diff_augment(x, self.cfg.augment_policy, self.ada.p)

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        z = torch.randn(n, self.gcfg.z_dim, device=self.device)
        z_mix = torch.randn(n, self.gcfg.z_dim, device=self.device)
        return z, z_mix, mixing_cutoff(self.gcfg.num_ws, self.cfg.style_mixing_prob)

    # The step.

    def step(self, real: torch.Tensor, step: int) -> dict[str, float]:
        """One iteration on this rank's `real: [n, C, R, R]`; `step` counts from 0. Returns scalars (this rank)."""
        cfg, d = self.cfg, self.d
        G, D, G_train, D_train, scalers = self.G, self.D, self.G_train, self.D_train, self.scalers
        n = real.shape[0]
        scalars: dict[str, float] = {}

        # D: logistic loss on fakes (no_sync: reduced together with the reals' backward) and on reals.
        D.requires_grad_(True)
        z, z_mix, cutoff = self._latents(n)
        with torch.no_grad(), self._autocast():
            fake = self.gen_pass(z, z_mix, cutoff)[0]
        self.opt_D.zero_grad(set_to_none=True)
        with (D_train.no_sync() if d.enabled else nullcontext()):
            with self._autocast():
                fake_logits = D_train(self._augment(fake.float()))
            loss_fake = F.softplus(fake_logits.float()).mean()
            scalers["D"].scale(loss_fake).backward()
        with self._autocast():
            real_logits = D_train(self._augment(real))
        loss_real = F.softplus(-real_logits.float()).mean()
        scalers["D"].scale(loss_real).backward()
        scalers["D"].step(self.opt_D)
        scalers["D"].update()
        self.ada.accumulate(real_logits)
        scalars["loss/D"] = float(loss_fake.detach() + loss_real.detach())
        scalars["D/real"] = float(real_logits.detach().float().mean())
        scalars["D/fake"] = float(fake_logits.detach().float().mean())

        # D regularization: lazy R1 on (augmented) reals, fp32.
        if cfg.r1_gamma > 0 and step % cfg.r1_interval == 0:
            real_tmp = real.detach().requires_grad_(True)
            logits = D_train(self._augment(real_tmp))
            (grad,) = torch.autograd.grad(logits.sum(), real_tmp, create_graph=True)
            penalty = grad.square().sum(dim=[1, 2, 3])
            loss_r1 = penalty.mean() * (cfg.r1_gamma / 2) * cfg.r1_interval
            self.opt_D.zero_grad(set_to_none=True)
            (logits * 0 + loss_r1).mean().backward()  # `logits * 0`: every D parameter joins the reduction
            self.opt_D.step()
            scalars["reg/r1"] = float(penalty.detach().mean())
        D.requires_grad_(False)

        # G: non-saturating loss through the unwrapped D (D's weights are not trained here).
        G.requires_grad_(True)
        z, z_mix, cutoff = self._latents(n)
        with self._autocast():
            img, _, w = G_train(z, z_mix, cutoff)
            gen_logits = D(self._augment(img.float()))
        loss_G = F.softplus(-gen_logits.float()).mean()
        self.opt_G.zero_grad(set_to_none=True)
        scalers["G"].scale(loss_G).backward()
        scalers["G"].step(self.opt_G)
        scalers["G"].update()
        scalars["loss/G"] = float(loss_G.detach())
        with torch.no_grad():  # w_avg <- lerp(batch mean w, w_avg, beta), the same on every rank
            w_mean = all_reduce_mean(w.detach().float().mean(dim=0), d)
            G.mapping.w_avg.copy_(w_mean.lerp(G.mapping.w_avg, cfg.w_avg_beta))

        # G regularization: lazy path-length penalty, fp32.
        if cfg.pl_weight > 0 and step % cfg.pl_interval == 0:
            z, z_mix, cutoff = self._latents(max(n // cfg.pl_batch_shrink, 1))
            img, ws, _ = G_train(z, z_mix, cutoff)
            pl_noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (pl_grad,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
            lengths = pl_grad.square().sum(dim=2).mean(dim=1).sqrt()
            pl_mean = self.pl_mean.lerp(all_reduce_mean(lengths.detach().mean(), d), cfg.pl_decay)
            penalty = (lengths - pl_mean).square()
            loss_pl = penalty.mean() * cfg.pl_weight * cfg.pl_interval
            self.opt_G.zero_grad(set_to_none=True)
            (img[:, 0, 0, 0] * 0 + loss_pl).mean().backward()  # every G parameter joins the reduction
            self.opt_G.step()
            self.pl_mean = pl_mean.detach()
            scalars["reg/pl"] = float(penalty.detach().mean())
            scalars["reg/pl_mean"] = float(self.pl_mean)
        G.requires_grad_(False)

        # EMA (images seen after this step) and augmentation strength.
        update_ema(self.G_ema, G, ema_beta(cfg, (step + 1) * cfg.batch_size))
        if cfg.augment == "ada":
            self.ada.adjust(step, reduce=sum_over_ranks(d))
            scalars["aug/p"] = self.ada.p
            if self.ada.rt == self.ada.rt:
                scalars["aug/rt"] = self.ada.rt
        return scalars
