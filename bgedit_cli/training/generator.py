"""StyleGAN2 training (`bgedit train generator`): one CPU, one GPU, or many processes under torchrun.

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

Distributed: `--batch-size` is global. Every rank builds the same networks from the same seed, draws its
own latents (seeded by (seed, rank)) and takes its share of every global batch. G and D are wrapped in
DistributedDataParallel, each phase is one forward and one backward (the fake pass of the D step runs under
`no_sync`, so the real pass reduces both), R1 and path-length penalties add `0 * output` so every parameter
takes part in the reduction. The EMA and `w_avg` are updated identically on every rank; rank 0 writes files.
At every snapshot the ranks compare a hash of their weights and stop with an error if they differ.

Resume: the state holds G, D, G_ema, both optimizers (and fp16 grad scalers), every rank's RNG states, step,
data epoch and position, pl_mean and the ADA state. The data order is a function of (seed, epoch), snapshots
draw no global random numbers, so N steps straight and N/2 + N/2 resumed give the same weights on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.errors import ConfigError, InputError
from bgedit_cli.training.augment import AUGMENT_MODES, DEFAULT_POLICY

STAGE = "generator"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Debug hook for tests: every rank writes DIR/rank<r>.json with hashes of its weights at the end.
RANK_HASH_ENV = "BGEDIT_DEBUG_RANK_HASH_DIR"


# ----------------------------------------------------------------------------------------------------------
# Settings.


@dataclasses.dataclass(frozen=True)
class GeneratorTrainConfig(Config):
    """Training hyperparameters; `for_preset(name, **overrides)` fills the preset's defaults."""

    preset: str = "demo"
    steps: int = 10_000
    batch_size: int = 32
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    r1_gamma: float = 0.05
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: Optional[float] = 0.05
    w_avg_beta: float = 0.995
    augment: str = "none"
    augment_policy: str = DEFAULT_POLICY
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0
    seed: int = 0
    swd_images: int = 1024
    swd_patches: int = 8
    grid_cols: int = 8
    grid_rows: int = 4

    def __post_init__(self) -> None:
        if self.preset not in TRAIN_PRESETS:
            raise ConfigError(f"preset {self.preset!r}: expected one of {', '.join(TRAIN_PRESETS)}.")
        if self.augment not in AUGMENT_MODES:
            raise ConfigError(f"augment {self.augment!r}: expected one of {', '.join(AUGMENT_MODES)}.")
        if min(self.steps, self.batch_size, self.r1_interval, self.pl_interval, self.swd_images) < 1:
            raise ConfigError("steps, batch_size, intervals and swd_images must be positive.")
        if min(self.g_lr, self.d_lr, self.r1_gamma, self.pl_weight, self.ema_kimg) < 0:
            raise ConfigError("learning rates, gamma, pl_weight and ema_kimg must not be negative.")

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> "GeneratorTrainConfig":
        if preset not in TRAIN_PRESETS:
            raise InputError(f"--preset {preset}: expected one of {', '.join(TRAIN_PRESETS)}.")
        values = {**TRAIN_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    @property
    def kimg(self) -> float:
        return self.steps * self.batch_size / 1000


# Per-preset defaults (network sizes are GENERATOR_PRESETS in nn/stylegan2.py). gamma follows the ADA paper's
# heuristic 0.0002 * R^2 / batch where it is not the paper's value; `demo` was tuned by measured runs on 2 CPU
# cores (docs/training-generator.md): batch 4 beat 8 and 16 at equal wall time, and 16000 steps (64 kimg) is
# about 60 minutes there. Its gamma stays at the batch-8 heuristic's 0.1, the value those runs used.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(steps=200, batch_size=8, g_lr=0.002, d_lr=0.002, r1_gamma=0.01, pl_weight=2.0, ema_kimg=0.1,
                 swd_images=64, swd_patches=16, grid_cols=4, grid_rows=2),
    "demo": dict(steps=16000, batch_size=4, g_lr=0.0025, d_lr=0.0025, r1_gamma=0.1, pl_weight=0.0, ema_kimg=2.0,
                 swd_images=512, swd_patches=16),
    "paper-256": dict(steps=200_000, batch_size=32, g_lr=0.002, d_lr=0.002, r1_gamma=10.0, pl_weight=2.0,
                      ema_kimg=10.0, swd_images=2048, swd_patches=4),
}


@dataclasses.dataclass
class GeneratorTrainOptions:
    """What the CLI passes: the run (paths, device, bookkeeping) plus hyperparameter overrides (None = preset)."""

    data: Path
    bundle: Path
    preset: Optional[str] = None
    steps: Optional[int] = None
    kimg: Optional[float] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    r1_gamma: Optional[float] = None
    pl_weight: Optional[float] = None
    augment: Optional[str] = None
    seed: Optional[int] = None
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    workers: Optional[int] = None
    snapshot_every: Optional[int] = None
    time_limit_min: Optional[float] = None
    force: bool = False
    progress: bool = True


def resolve_settings(opts: GeneratorTrainOptions, saved: dict[str, Any] | None) -> GeneratorTrainConfig:
    """The run's config: the preset's defaults plus options; on resume the saved config, where only the length
    (--steps/--kimg) may change."""
    if opts.steps is not None and opts.kimg is not None:
        raise InputError("give --steps or --kimg, not both.")
    if saved is None:
        preset = opts.preset or "demo"
        base = GeneratorTrainConfig.for_preset(preset, batch_size=opts.batch_size, g_lr=opts.lr, d_lr=opts.lr,
                                               r1_gamma=opts.r1_gamma, pl_weight=opts.pl_weight,
                                               augment=opts.augment, seed=opts.seed)
    else:
        base = GeneratorTrainConfig.from_dict(saved)
        asked = {"preset": opts.preset, "batch_size": opts.batch_size, "g_lr": opts.lr, "r1_gamma": opts.r1_gamma,
                 "pl_weight": opts.pl_weight, "augment": opts.augment, "seed": opts.seed}
        changed = [k for k, v in asked.items() if v is not None and v != getattr(base, k)]
        if changed:
            raise InputError(f"--resume continues the saved run; these settings differ from it: "
                             f"{', '.join(f'{k} (saved {getattr(base, k)})' for k in changed)}. Drop them, or start "
                             "a new run without --resume.")
    if opts.kimg is not None:
        base = base.replace(steps=max(1, math.ceil(opts.kimg * 1000 / base.batch_size)))
    elif opts.steps is not None:
        base = base.replace(steps=opts.steps)
    return base


def train_command(cfg: GeneratorTrainConfig, opts: GeneratorTrainOptions, world_size: int = 1) -> str:
    """The command line that reproduces this run's settings (paths resolved)."""
    launch = f"torchrun --nproc_per_node {world_size} -m bgedit_cli" if world_size > 1 else "bgedit"
    limit = f" --time-limit {opts.time_limit_min:g}" if opts.time_limit_min is not None else ""
    return (f"{launch} train generator --data {Path(opts.data).resolve()} --model {Path(opts.bundle).resolve()} "
            f"--preset {cfg.preset} --steps {cfg.steps} --batch-size {cfg.batch_size} --lr {cfg.g_lr} "
            f"--r1-gamma {cfg.r1_gamma} --pl-weight {cfg.pl_weight} --augment {cfg.augment} --seed {cfg.seed}"
            f"{limit}")


def resolve_precision(name: str, device: torch.device) -> str:
    if name not in PRECISIONS:
        raise InputError(f"--precision {name}: expected one of {', '.join(PRECISIONS)}.")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name != "fp32" and device.type != "cuda":
        raise InputError(f"--precision {name} is for CUDA (on this CPU bf16 is ~200x slower than fp32); use "
                         "--precision fp32 or leave it at auto.")
    return name


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


def lazy_adam(params, lr: float, interval: int | None) -> torch.optim.Adam:
    """Adam(0, 0.99) with the lazy-regularization correction c = k / (k + 1) (k = None: no regularization)."""
    c = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0**c, 0.99**c), eps=1e-8)


def state_hash(*modules: nn.Module) -> str:
    """sha256 over every tensor of the modules' state dicts (names included)."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def image_grid(img: torch.Tensor, cols: int) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> one uint8 HWC grid with `cols` columns."""
    from bgedit_cli.io import to_uint8

    pixels = to_uint8(img)
    n, h, w, c = pixels.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = pixels[i]
    return grid


@torch.no_grad()
def generate_images(G: nn.Module, z: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """G(z) with constant noise, in batches, as float32 CPU tensors (no global RNG use)."""
    out = []
    for start in range(0, z.shape[0], batch_size):
        out.append(G(z[start:start + batch_size].to(device), noise_mode="const").float().cpu())
    return torch.cat(out)


def load_real_images(dataset, num: int, seed: int = 123) -> torch.Tensor:
    """A fixed set of `num` training images (a seeded choice, unflipped) for SWD and the reals grid."""
    order = np.random.default_rng(seed).permutation(len(dataset))[:num]
    flip = dataset.flip
    dataset.flip = False
    try:
        return torch.stack([dataset[int(i)]["img"] for i in order])
    finally:
        dataset.flip = flip


def fid_status() -> str:
    from bgedit_cli.bundle import weights_dir

    path = weights_dir() / "weights-inception-2015-12-05-6726825d.pth"
    if not path.is_file():
        return f"skipped: Inception weights not found in {weights_dir()}"
    return "skipped: not computed during training; run `bgedit evaluate --metrics fid` on the final generator"


# ----------------------------------------------------------------------------------------------------------
# One training step (networks, optimizers and the four phases), shared by the loop and the benchmarks.


class StyleGAN2Trainer:
    """G, D, G_ema, optimizers and regularization state; `step(real, step)` runs D main, lazy R1, G main,
    lazy path length, then the EMA. Build on every rank after seeding identically."""

    def __init__(self, gcfg, cfg: GeneratorTrainConfig, device: torch.device, precision: str = "fp32",
                 d=None) -> None:
        from bgedit_cli.nn.stylegan2 import Discriminator, DiscriminatorConfig, Generator
        from bgedit_cli.training.augment import AdaptiveP
        from bgedit_cli.training.common import Dist

        self.gcfg, self.cfg, self.device, self.precision = gcfg, cfg, device, precision
        self.d = d or Dist()
        self.G = Generator(gcfg).to(device).train()
        self.D = Discriminator(DiscriminatorConfig.matching(gcfg)).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = lazy_adam(self.G.parameters(), cfg.g_lr, cfg.pl_interval if cfg.pl_weight > 0 else None)
        self.opt_D = lazy_adam(self.D.parameters(), cfg.d_lr, cfg.r1_interval if cfg.r1_gamma > 0 else None)
        self.scalers = {k: torch.amp.GradScaler("cuda", enabled=precision == "fp16") for k in ("G", "D")}
        self.pl_mean = torch.zeros([], device=device)
        self.ada = AdaptiveP(target=cfg.ada_target, speed_kimg=cfg.ada_kimg, interval=cfg.ada_interval,
                             p=1.0 if cfg.augment == "diffaug" else 0.0)
        self.gen_pass = GeneratorPass(self.G)
        self.G_train: nn.Module = self.gen_pass
        self.D_train: nn.Module = self.D
        if self.d.enabled:
            import warnings

            from torch.nn.parallel import DistributedDataParallel as DDP

            # 1x1 conv weight grads come back with other strides than DDP's buckets: a copy, not an error.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

            ids = [device.index] if device.type == "cuda" else None
            self.G_train = DDP(self.gen_pass, device_ids=ids, broadcast_buffers=False)
            self.D_train = DDP(self.D, device_ids=ids, broadcast_buffers=False)
        self.G.requires_grad_(False)  # each phase switches on the network it trains
        self.D.requires_grad_(False)

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
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        for name, scaler in self.scalers.items():
            if state.get("scalers", {}).get(name):
                scaler.load_state_dict(state["scalers"][name])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.ada.load_state_dict(state["ada"])

    # Helpers.

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        from bgedit_cli.training.augment import diff_augment

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
        from bgedit_cli.training.common import all_reduce_mean

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
            self.ada.adjust(step, reduce=_sum_over_ranks(d))
            scalars["aug/p"] = self.ada.p
            if self.ada.rt == self.ada.rt:
                scalars["aug/rt"] = self.ada.rt
        return scalars


# ----------------------------------------------------------------------------------------------------------
# The loop.


def train_generator(opts: GeneratorTrainOptions) -> dict[str, Any]:
    """Run (or resume) a StyleGAN2 training; returns a summary (paths, settings, throughput, last SWD)."""
    from bgedit_cli.bundle import bundle_file
    from bgedit_cli.checkpoint import check_writable
    from bgedit_cli.data.ade20k import ADE20KDataset
    from bgedit_cli.io import save_png
    from bgedit_cli.metrics.swd import SWDReference, SWDSettings
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS
    from bgedit_cli.training.common import (RunLog, StopRequest, TrainProgress, TrainingInterrupted,
                                            all_gather_objects, any_rank, init_distributed, resumable_batches,
                                            run_dir_for, save_snapshot, split_batch, train_device)
    from bgedit_cli.training.state import (gather_rng_states, load_state, rank_seed, restore_rng_states, save_state,
                                           seed_everything)

    # Devices and processes (torchrun sets WORLD_SIZE > 1 for DDP).
    bundle = Path(opts.bundle).expanduser()
    d = init_distributed(train_device(opts.device))
    device = train_device(opts.device, d)
    precision = resolve_precision(opts.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # Settings, and the state of the run to resume.
    state = None
    run_dir: Path | None = None
    if opts.resume:
        run_dir, _ = run_dir_for(bundle, STAGE, True, d)
        state = load_state(run_dir / "state.safetensors")
    cfg = resolve_settings(opts, state["settings"] if state else None)
    gcfg = GENERATOR_PRESETS[cfg.preset]
    local_batch = split_batch(cfg.batch_size, d)
    snapshot_every = opts.snapshot_every if opts.snapshot_every is not None else max(1, cfg.steps // 10)
    workers = opts.workers if opts.workers is not None else (min(4, os.cpu_count() or 1) if device.type == "cuda"
                                                              else 0)

    # Load data.
    dataset = ADE20KDataset(opts.data, "training", resolution=gcfg.img_resolution, flip=True, require_seg=False,
                            seed=cfg.seed)
    if len(dataset) < cfg.batch_size:
        raise InputError(f"{opts.data}: {len(dataset)} training image(s), fewer than one batch of "
                         f"{cfg.batch_size}; lower --batch-size or add data.")

    # Output paths.
    out_path = bundle_file(bundle, STAGE, must_exist=False)
    if not opts.resume:
        if d.is_main and not opts.force:
            check_writable(out_path, False)  # refuse before training, not after
        run_dir, _ = run_dir_for(bundle, STAGE, False, d)
    assert run_dir is not None
    log = RunLog(run_dir / "log.jsonl" if d.is_main else None,
                 start_time=time.time() - (state["wall_seconds"] if state else 0.0))

    # Build networks (same seed on every rank: identical initial weights), then per-rank random streams.
    seed_everything(cfg.seed)
    trainer = StyleGAN2Trainer(gcfg, cfg, device, precision, d)
    seed_everything(rank_seed(cfg.seed, d.rank))  # each rank its own latents, noise and augmentations

    # Resume.
    step, epoch, position, last_swd = 0, 0, 0, {}
    if state is not None:
        trainer.load_state_dict(state)
        step, epoch, position = state["step"], state["data"]["epoch"], state["data"]["position"]
        last_swd = state.get("swd") or {}
        restore_rng_states(state["rng"], d, fallback_seed=cfg.seed + step)
    log.write(event="resume" if state else "start", step=step, run=str(run_dir), settings=cfg.to_dict(),
              generator=gcfg.to_dict(), world_size=d.world_size, device=str(device), precision=precision,
              workers=workers, threads=torch.get_num_threads(), train_images=len(dataset),
              snapshot_every=snapshot_every, time_limit_min=opts.time_limit_min)

    # Fixed latents for sample grids, fixed reals for SWD (explicit generators: no global RNG draws).
    grid_z = torch.randn(cfg.grid_cols * cfg.grid_rows, gcfg.z_dim, generator=torch.Generator().manual_seed(0))
    if d.is_main:
        reals = load_real_images(dataset, min(cfg.swd_images, len(dataset)))
        swd_ref = SWDReference(reals, SWDSettings(patches_per_image=cfg.swd_patches))
        swd_z = torch.randn(reals.shape[0], gcfg.z_dim, generator=torch.Generator().manual_seed(1))
        if state is None:
            save_png(run_dir / "samples" / "reals.png", image_grid(reals[:grid_z.shape[0]], cfg.grid_cols),
                     force=True)

    def provenance() -> dict[str, Any]:
        return {"command": train_command(cfg, opts, d.world_size), "data": str(Path(opts.data).resolve()),
                "steps": step, "kimg": round(step * cfg.batch_size / 1000, 3), "preset": cfg.preset,
                "settings": cfg.to_dict(), "run": str(run_dir), "swd": last_swd, "fid": fid_status(),
                "wall_minutes": round((time.time() - log.t0) / 60, 2), "world_size": d.world_size,
                "precision": precision}

    def save_resumable() -> None:
        rngs = gather_rng_states(d)
        if d.is_main:
            save_state(run_dir / "state.safetensors", {
                **trainer.state_dict(), "rng": rngs, "step": step, "data": {"epoch": epoch, "position": position},
                "swd": last_swd, "settings": cfg.to_dict(), "wall_seconds": time.time() - log.t0})

    def check_ranks_in_sync() -> None:
        if d.enabled:
            hashes = all_gather_objects(state_hash(trainer.G, trainer.D, trainer.G_ema), d)
            if len(set(hashes)) != 1:
                raise RuntimeError(f"DDP ranks hold different weights at step {step}: {hashes}")

    def snapshot() -> None:
        nonlocal last_swd
        check_ranks_in_sync()
        if d.is_main:
            t = time.time()
            G_ema = trainer.G_ema
            last_swd = swd_ref(generate_images(G_ema, swd_z, local_batch * 4, device))
            grid = generate_images(G_ema, grid_z, local_batch * 4, device)
            save_png(run_dir / "samples" / f"fakes-{step:06d}.png", image_grid(grid, cfg.grid_cols), force=True)
            save_snapshot(G_ema, STAGE, out_path, run_dir, STAGE, step, provenance())
            log.write(step=step, event="snapshot", kimg=round(step * cfg.batch_size / 1000, 3),
                      minutes=round((time.time() - log.t0) / 60, 3), snapshot_seconds=round(time.time() - t, 2),
                      fid=fid_status(), swd_settings={"images": swd_ref.num_images, **swd_ref.settings.to_dict()},
                      **last_swd)
        save_resumable()

    # Train.
    batches = resumable_batches(dataset, cfg.batch_size, seed=cfg.seed, epoch=epoch, position=position,
                                workers=workers, d=d, pin_memory=device.type == "cuda")
    t_start = time.time()
    t_rate, n_rate = time.time(), 0
    stopped_by_time = False
    with StopRequest() as stop, TrainProgress(cfg.steps, step, description="generator",
                                              enabled=opts.progress and d.is_main) as bar:
        while step < cfg.steps:
            if stop.check(d):
                save_resumable()
                raise TrainingInterrupted(
                    f"interrupted at step {step}/{cfg.steps}; the state is saved in {run_dir}. Continue with "
                    f"`bgedit train generator --data {opts.data} --model {bundle} --resume`.")
            if opts.time_limit_min is not None and any_rank(time.time() - t_start > opts.time_limit_min * 60, d):
                stopped_by_time = True
                break
            epoch, position, batch = next(batches)
            real = batch["img"].to(device, non_blocking=True)
            scalars = trainer.step(real, step)
            step += 1

            # Log (rank 0's losses; throughput over the last >= 30 s).
            n_rate += cfg.batch_size
            if d.is_main:
                now = time.time()
                if now - t_rate >= 30 or step == cfg.steps:
                    scalars["images_per_s"] = round(n_rate / max(now - t_rate, 1e-9), 3)
                    t_rate, n_rate = now, 0
                log.write(step=step, epoch=epoch, **scalars)
            bar.update(1, cfg.batch_size, D=scalars["loss/D"], G=scalars["loss/G"])

            # Snapshot.
            if step % snapshot_every == 0 and step < cfg.steps:
                snapshot()

    # Snapshot the end (also after the time limit).
    snapshot()
    wall = time.time() - log.t0
    if d.is_main:
        log.write(step=step, event="done", minutes=round(wall / 60, 3), stopped_by_time=stopped_by_time)
    _dump_rank_hash(trainer, step, d)
    return {"is_main": d.is_main, "model": str(out_path), "run": str(run_dir), "steps": step,
            "total_steps": cfg.steps, "kimg": round(step * cfg.batch_size / 1000, 3), "preset": cfg.preset,
            "batch_size": cfg.batch_size, "world_size": d.world_size, "device": str(device), "precision": precision,
            "wall_seconds": round(wall, 2), "train_seconds": round(time.time() - t_start, 2),
            "stopped_by_time": stopped_by_time, "swd": last_swd, "fid": fid_status()}


def _sum_over_ranks(d):
    if not d.enabled:
        return None
    import torch.distributed as dist

    def reduce(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    return reduce


def _dump_rank_hash(trainer: StyleGAN2Trainer, step: int, d) -> None:
    folder = os.environ.get(RANK_HASH_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"rank": d.rank, "world_size": d.world_size, "step": step, "G": state_hash(trainer.G),
              "D": state_hash(trainer.D), "G_ema": state_hash(trainer.G_ema)}
    (Path(folder) / f"rank{d.rank}.json").write_text(json.dumps(record))
