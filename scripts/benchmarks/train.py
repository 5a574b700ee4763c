"""Training throughput per precision: images/s of full training steps, fp32 and (where it can pay) bf16.

- `train-generator`: StyleGAN2 steps (D main, lazy R1, G main, lazy path length, EMA) for the tiny, demo and
  paper-256 presets. Step 1 is a warm-up (no regularizer runs there); steps 2..n+1 are timed, with the lazy R1
  (steps divisible by 16) and path-length (by 4, where the preset uses it) phases where they fall, so windows of
  n < 16 steps overstate throughput a little (n = 1 or 2 runs no regularizer at all).
- `train-inversion`: the inversion stage's step (`training.inversion.train_step` + Adam) at the demo preset
  (its batch, refinement steps and weight-free losses), "joint" (encoders and hypernetworks, `bgedit train
  inversion`) and "hypernetworks" (encoders frozen, the demo recipe's inversion-hypernets stage).
- `train-auto`: what `--precision auto` picks for training on this machine (the convolution check of
  `runtime.cpu_bf16_status`) next to the measured bf16/fp32 time ratio of each step above (CPU seconds on CPU):
  auto should pick bf16 only where every ratio is below 1.

Real images are random tensors: data loading is not measured (it is small next to a step at these sizes). On
CPU, rows also give CPU seconds per step (other processes on a shared machine do not count there).
"""

from __future__ import annotations

import time
from functools import partial

import torch

from benchmarks.common import precisions
from bgedit_cli.data.ade20k_classes import NUM_CLASSES
from bgedit_cli.losses import LossLambdas, build_inversion_loss
from bgedit_cli.nn.inversion import build_inversion
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from bgedit_cli.runtime import autocast, resolve_precision
from bgedit_cli.training.configs import GeneratorTrainConfig, InversionTrainConfig
from bgedit_cli.training.gan import StyleGAN2Trainer
from bgedit_cli.training.inversion import train_step
from bgedit_cli.training.state import seed_everything

# (preset, batch, timed steps): quick / full, per device.
PLAN = {
    "cpu": {"tiny": (8, 4, 16), "demo": (4, 4, 16), "paper-256": (4, 1, 2)},
    "cuda": {"tiny": (8, 8, 32), "demo": (32, 8, 32), "paper-256": (32, 4, 16)},
}
INVERSION_PLAN = {"cpu": ("demo", 2, 4), "cuda": ("demo", 8, 16)}  # preset, timed steps quick / full


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, steps: int, device: torch.device) -> tuple[float, float]:
    """(best wall, best CPU) seconds of `steps` calls of `step()` after one warm-up call."""
    step()
    _sync(device)
    walls, cpus = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def time_steps(preset: str, batch: int, steps: int, device: torch.device, precision: str) -> tuple[float, float]:
    """Images per second over `steps` timed generator training steps (after one warm-up step), in wall time and
    per CPU second of the process."""
    gcfg = GENERATOR_PRESETS[preset]
    cfg = GeneratorTrainConfig.for_preset(preset, batch_size=batch)
    seed_everything(0)
    trainer = StyleGAN2Trainer(gcfg, cfg, device, precision)
    res = gcfg.img_resolution
    real = torch.rand(batch, gcfg.img_channels, res, res, device=device) * 2 - 1
    trainer.step(real, 1)
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    for step in range(2, steps + 2):
        trainer.step(real, step)
    _sync(device)
    return batch * steps / (time.perf_counter() - t), batch * steps / (time.process_time() - c)


def time_inversion_steps(preset: str, mode: str, steps: int, device: torch.device, precision: str
                         ) -> tuple[int, float, float]:
    """(batch, best wall s, best CPU s) per inversion training step: forward and backward of every refinement
    iteration, then the Adam step; `mode` "joint" or "hypernetworks" (encoders frozen)."""
    cfg = InversionTrainConfig.for_preset(preset)
    seed_everything(0)
    g = Generator(GENERATOR_PRESETS[preset]).eval().requires_grad_(False).to(device)
    net = build_inversion("proposed", preset, g).to(device).train()
    res = g.cfg.img_resolution
    loss_fn = build_inversion_loss(LossLambdas(**cfg.lambdas), resolution=res, device=device)
    encoders = mode == "joint"
    for m in (net.image_encoder, net.seg_encoder):
        m.requires_grad_(encoders).train(encoders)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    img = (torch.rand(cfg.batch_size, 3, res, res, generator=gen) * 2 - 1).to(device)
    ids = torch.randint(0, NUM_CLASSES, (cfg.batch_size, 1, res, res), generator=gen)
    seg = torch.zeros(cfg.batch_size, NUM_CLASSES, res, res).scatter_(1, ids, 1.0).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        train_step(g, net, loss_fn, img, seg, refine_steps=cfg.refine_steps, train_encoders=encoders,
                   train_hypernets=True, autocast=partial(autocast, device, precision))
        optimizer.step()

    return (cfg.batch_size, *_timed(step, steps, device))


def run(quick: bool = False) -> list[dict]:
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        ratios = {}
        for precision in precisions(device):
            for preset, (batch, quick_steps, full_steps) in PLAN[device.type].items():
                if device.type == "cpu" and preset == "paper-256" and precision != "fp32":
                    continue  # 25 s per image on a CPU: one precision is enough to show it is a GPU job
                steps = quick_steps if quick else full_steps
                ips, cpu_ips = time_steps(preset, batch, steps, device, precision)
                rows.append({"bench": "train-generator", "preset": preset, "device": device.type, "batch": batch,
                             "precision": precision, "timed_steps": steps, "threads": torch.get_num_threads(),
                             "images_per_s": round(ips, 2),
                             **({"images_per_cpu_s": round(cpu_ips, 2)} if device.type == "cpu" else {})})
                ratios.setdefault(("train-generator", preset, ""), {})[precision] = (
                    1 / cpu_ips if device.type == "cpu" else 1 / ips)
            preset, quick_steps, full_steps = INVERSION_PLAN[device.type]
            for mode in ("joint", "hypernetworks"):
                steps = quick_steps if quick else full_steps
                batch, wall, cpu = time_inversion_steps(preset, mode, steps, device, precision)
                rows.append({"bench": "train-inversion", "preset": preset, "mode": mode, "device": device.type,
                             "batch": batch, "precision": precision, "timed_steps": steps,
                             "threads": torch.get_num_threads(), "sec_per_step": round(wall, 3),
                             "images_per_s": round(batch / wall, 2),
                             **({"cpu_sec_per_step": round(cpu, 3)} if device.type == "cpu" else {})})
                ratios.setdefault(("train-inversion", preset, mode), {})[precision] = (
                    cpu if device.type == "cpu" else wall)
        auto = resolve_precision("auto", device)
        rows.append({"bench": "train-auto", "device": device.type, "auto": auto,
                     "bf16_over_fp32": {" ".join(k for k in key if k): round(t["bf16"] / t["fp32"], 3)
                                        for key, t in ratios.items() if "bf16" in t}})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
