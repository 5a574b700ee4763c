"""StyleGAN2 training (`bgedit train generator`): one CPU, one GPU, or many processes under torchrun.

The networks, the step and the warm starts are in training/gan.py.

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

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.errors import InputError
from bgedit_cli.io import image_grid, save_png
from bgedit_cli.metrics.swd import SWDReference, SWDSettings
from bgedit_cli.distributed import all_gather_objects
from bgedit_cli.training.configs import GeneratorTrainConfig
from bgedit_cli.training.gan import StyleGAN2Trainer, network_config, state_hash, warm_start
from bgedit_cli.training.runner import DataStream, StageBase, StageOptions, StageRun
from bgedit_cli.training.state import rank_seed, seed_everything
from bgedit_cli.weights import INCEPTION, MissingWeightsError, find_weights, search_dirs

STAGE = "generator"
# Debug hook for tests: every rank writes DIR/rank<r>.json with hashes of its weights at the end.
RANK_HASH_ENV = "BGEDIT_DEBUG_RANK_HASH_DIR"


# ----------------------------------------------------------------------------------------------------------
# Settings.


@dataclasses.dataclass
class GeneratorTrainOptions(StageOptions):
    """The command line's options (see StageOptions); `kimg` sets the length in images instead of steps;
    `workers` None: 0 on CPU, 4 on CUDA; `init_from`: a generator file whose weights start G and G_ema (D starts
    fresh), for a run whose training state is lost. Evaluation (SWD, samples) runs with every snapshot."""

    kimg: float | None = None
    workers: int | None = None
    init_from: Path | None = None


# The options that set a config field under another name.
FLAGS = {"g_lr": "--lr", "d_lr": "--lr"}


def resolve_settings(opts: GeneratorTrainOptions, saved: dict[str, Any] | None) -> GeneratorTrainConfig:
    """The run's config: the preset's defaults plus options; on resume the saved config, where only the length
    (--steps/--kimg) may change."""
    if opts.overrides.get("steps") is not None and opts.kimg is not None:
        raise InputError("give --steps or --kimg, not both.")
    cfg = GeneratorTrainConfig.resolve(opts.preset, opts.overrides, FLAGS, saved)
    if opts.kimg is not None:
        cfg = cfg.replace(steps=max(1, math.ceil(opts.kimg * 1000 / cfg.batch_size)))
    return cfg


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
    try:
        find_weights(INCEPTION)
    except MissingWeightsError:
        return (f"skipped: Inception weights not found in {', '.join(str(d) for d in search_dirs(INCEPTION))} "
                f"(`bgedit weights fetch {INCEPTION.key}`)")
    return "skipped: not computed during training; run `bgedit evaluate --metrics fid` on the final generator"


# ----------------------------------------------------------------------------------------------------------
# The stage.


class GeneratorStage(StageBase):
    """The generator's part of a run (training/runner.py drives it): the trainer, fixed latents and reals for
    the sample grid and SWD. Evaluation (SWD, sample grid, a check that the ranks agree) runs at every snapshot."""

    name = kind = resume_args = STAGE
    PRECISIONS = ("auto", "fp32", "bf16", "fp16")

    def __init__(self, cfg: GeneratorTrainConfig, opts: GeneratorTrainOptions, run: StageRun) -> None:
        super().__init__(cfg, opts, run)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.gcfg = gcfg = network_config(cfg)
        self.local_batch = cfg.batch_size // self.d.world_size
        cuda = self.device.type == "cuda"
        self.workers = opts.workers if opts.workers is not None else (min(4, os.cpu_count() or 1) if cuda else 0)

        # Load data.
        self.dataset = ADE20KDataset(opts.data, "training", resolution=gcfg.img_resolution, flip=True,
                                     require_seg=False, seed=cfg.seed)
        if len(self.dataset) < cfg.batch_size:
            raise InputError(f"{opts.data}: {len(self.dataset)} training image(s), fewer than one batch of "
                             f"{cfg.batch_size}; lower --batch-size or add data.")

        # Build networks (same seed on every rank: identical initial weights), then per-rank random streams.
        seed_everything(cfg.seed)
        self.trainer = StyleGAN2Trainer(gcfg, cfg, self.device, self.precision, self.d)
        self.init_from = None
        if opts.init_from is not None and run.state is None:  # a resumed run has its own weights
            self.init_from = {"file": str(Path(opts.init_from).resolve()),
                              "sha256": warm_start(self.trainer, Path(opts.init_from))}
        seed_everything(rank_seed(cfg.seed, self.d.rank))  # each rank its own latents, noise and augmentations

        # Fixed latents for sample grids, fixed reals for SWD (explicit generators: no global RNG draws).
        self.grid_z = torch.randn(cfg.grid_cols * cfg.grid_rows, gcfg.z_dim,
                                  generator=torch.Generator().manual_seed(0))
        if self.d.is_main:
            self.reals = load_real_images(self.dataset, min(cfg.swd_images, len(self.dataset)))
            self.swd_ref = SWDReference(self.reals, SWDSettings(patches_per_image=cfg.swd_patches))
            self.swd_z = torch.randn(self.reals.shape[0], gcfg.z_dim, generator=torch.Generator().manual_seed(1))

    def begin(self, run_dir: Path | None, resumed: bool) -> None:
        super().begin(run_dir, resumed)
        if self.d.is_main and not resumed:
            save_png(run_dir / "samples" / "reals.png",
                     image_grid(self.reals[:self.grid_z.shape[0]], self.cfg.grid_cols), force=True)

    # State.

    def state_dict(self) -> dict[str, Any]:
        return {**self.trainer.state_dict(), "init_from": self.init_from}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state)
        self.init_from = state.get("init_from")

    # The step.

    def train_step(self, step: int, batches: DataStream) -> tuple[dict[str, Any], dict[str, float], int]:
        real = batches.next()["img"].to(self.device, non_blocking=True)
        scalars = self.trainer.step(real, step)
        return scalars, {"D": scalars["loss/D"], "G": scalars["loss/G"]}, real.shape[0]

    # Evaluation: at every snapshot.

    def evaluate(self, step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        trainer, cfg = self.trainer, self.cfg
        if self.d.enabled:
            hashes = all_gather_objects(state_hash(trainer.G, trainer.D, trainer.G_ema), self.d)
            if len(set(hashes)) != 1:
                raise RuntimeError(f"DDP ranks hold different weights at step {step}: {hashes}")
        if not self.d.is_main:
            return {}, None
        t = time.time()
        swd = self.swd_ref(generate_images(trainer.G_ema, self.swd_z, self.local_batch * 4, self.device))
        grid = generate_images(trainer.G_ema, self.grid_z, self.local_batch * 4, self.device)
        save_png(self.run_dir / "samples" / f"fakes-{step:06d}.png", image_grid(grid, cfg.grid_cols), force=True)
        record = {"event": "snapshot", "kimg": round(step * cfg.batch_size / 1000, 3),
                  "snapshot_seconds": round(time.time() - t, 2), "fid": fid_status(),
                  "swd_settings": {"images": self.swd_ref.num_images, **self.swd_ref.settings.to_dict()}, **swd}
        return record, swd

    # What the runner writes.

    def snapshot_network(self) -> nn.Module:
        return self.trainer.G_ema  # the EMA generator is the one users get

    def command(self) -> str:
        return self.cfg.command(Path(self.opts.data).resolve(), Path(self.opts.bundle).resolve(),
                                self.d.world_size, self.opts.time_limit_min)

    def provenance(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"kimg": round(step * self.cfg.batch_size / 1000, 3), "swd": metrics, "fid": fid_status(),
                "precision": self.precision, "init_from": self.init_from}

    def start_record(self) -> dict[str, Any]:
        return {"generator": self.gcfg.to_dict(), "precision": self.precision, "workers": self.workers,
                "init_from": self.init_from}

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"preset": self.cfg.preset, "batch_size": self.cfg.batch_size, "world_size": self.d.world_size,
                "device": str(self.device), "precision": self.precision, "swd": metrics, "fid": fid_status()}


def train_generator(opts: GeneratorTrainOptions) -> dict[str, Any]:
    """Run (or resume) a StyleGAN2 training; returns a summary (paths, settings, throughput, last SWD)."""
    run = StageRun.open(STAGE, opts.bundle, device=opts.device, resume=opts.resume)
    cfg = resolve_settings(opts, run.saved_settings)
    stage = GeneratorStage(cfg, opts, run)
    summary = run.fit(stage, cfg, opts, eval_every=opts.snapshot_every, workers=stage.workers)
    _dump_rank_hash(stage.trainer, summary["steps"], run.d)
    return {**summary, "kimg": round(summary["steps"] * cfg.batch_size / 1000, 3)}

def _dump_rank_hash(trainer: StyleGAN2Trainer, step: int, d) -> None:
    folder = os.environ.get(RANK_HASH_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"rank": d.rank, "world_size": d.world_size, "step": step, "G": state_hash(trainer.G),
              "D": state_hash(trainer.D), "G_ema": state_hash(trainer.G_ema)}
    (Path(folder) / f"rank{d.rank}.json").write_text(json.dumps(record))
