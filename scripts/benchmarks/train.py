"""StyleGAN2 training throughput: images/s of full training steps (D main, lazy R1, G main, lazy path length, EMA)
for the tiny, demo and paper-256 presets on CPU (fp32) and, when present, CUDA (bf16 as trained by default).

Step 1 is a warm-up (no regularizer runs there); steps 2..n+1 are timed, with the lazy R1 (steps divisible by
16) and path-length (by 4, where the preset uses it) phases where they fall, so windows of n < 16 steps
overstate throughput a little (n = 1 or 2 runs no regularizer at all). Real images are
random tensors: data loading is not measured (it is small next to a step at these sizes).
"""

from __future__ import annotations

import time

import torch

from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS
from bgedit_cli.training.generator import GeneratorTrainConfig, StyleGAN2Trainer
from bgedit_cli.training.state import seed_everything

# (preset, batch, timed steps): quick / full, per device.
PLAN = {
    "cpu": {"tiny": (8, 4, 16), "demo": (4, 4, 16), "paper-256": (4, 1, 2)},
    "cuda": {"tiny": (8, 8, 32), "demo": (32, 8, 32), "paper-256": (32, 4, 16)},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(preset: str, batch: int, steps: int, device: torch.device, precision: str) -> float:
    """Images per second over `steps` timed training steps (after one warm-up step)."""
    gcfg = GENERATOR_PRESETS[preset]
    cfg = GeneratorTrainConfig.for_preset(preset, batch_size=batch)
    seed_everything(0)
    trainer = StyleGAN2Trainer(gcfg, cfg, device, precision)
    res = gcfg.img_resolution
    real = torch.rand(batch, gcfg.img_channels, res, res, device=device) * 2 - 1
    trainer.step(real, 1)
    _sync(device)
    t = time.perf_counter()
    for step in range(2, steps + 2):
        trainer.step(real, step)
    _sync(device)
    return batch * steps / (time.perf_counter() - t)


def run(quick: bool = False) -> list[dict]:
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        precision = "bf16" if device.type == "cuda" else "fp32"
        for preset, (batch, quick_steps, full_steps) in PLAN[device.type].items():
            steps = quick_steps if quick else full_steps
            ips = time_steps(preset, batch, steps, device, precision)
            rows.append({"bench": "train-generator", "preset": preset, "device": device.type, "batch": batch,
                         "precision": precision, "timed_steps": steps, "threads": torch.get_num_threads(),
                         "images_per_s": round(ips, 2)})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
