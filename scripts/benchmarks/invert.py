"""Inversion (proposed variant: both encoders + 2 hypernetworks, 5 refinement steps): seconds per image and
peak memory at demo and paper-256 sizes, random weights, batch 1 and 8, per precision (fp32, and bf16 where
it can pay), on CPU (and CUDA when present).

On CPU, rows also give `cpu_sec_per_image` (process CPU time / images): on a shared machine wall time
includes waiting for other processes, CPU time does not (with T threads it is about T x wall when idle).

Peak memory: CUDA allocator peak on CUDA; on CPU the process's peak RSS so far (`ru_maxrss`, it never goes
down, so a row shows the largest footprint of this and every earlier row of the process).
"""

from __future__ import annotations

import resource
import time

import torch

from benchmarks.common import precisions
from bgedit_cli.data.ade20k_classes import NUM_CLASSES
from bgedit_cli.nn.inversion import build_inversion
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from bgedit_cli.pipelines.invert import invert
from bgedit_cli.runtime import autocast, cache_casts

STEPS = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(batch: int, resolution: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(batch, 3, resolution, resolution, generator=gen) * 2 - 1
    ids = torch.randint(0, NUM_CLASSES, (batch, resolution, resolution), generator=gen)
    seg = torch.zeros(batch, NUM_CLASSES, resolution, resolution).scatter_(1, ids[:, None], 1.0)
    return img.to(device), seg.to(device)


def build_nets(preset: str, device: torch.device, precision: str = "fp32"):
    """(generator, proposed inversion net) at `preset` with random weights (seed 0), frozen, in eval mode; for
    bf16 the weights are marked for autocast's cast cache as `bgedit invert` does."""
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS[preset]).eval().requires_grad_(False).to(device)
    net = build_inversion("proposed", preset, g).eval().requires_grad_(False).to(device)
    if precision == "bf16":
        cache_casts(g, net)
    return g, net


def time_invert(g: Generator, net, batch: int, device: torch.device, repeats: int) -> tuple[float, float, float]:
    """(wall seconds per image, process CPU seconds per image, peak memory MiB) for `invert(..., steps=5)`."""
    img, seg = _inputs(batch, g.cfg.img_resolution, device)
    if device.type == "cuda":
        invert(g, net, img, seg, steps=STEPS)  # warm-up (cuDNN autotuning, allocator)
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        invert(g, net, img, seg, steps=STEPS)
    _sync(device)
    per_image = (time.perf_counter() - t) / (repeats * batch)
    cpu_per_image = (time.process_time() - c) / (repeats * batch)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return per_image, cpu_per_image, peak


def run(quick: bool = False) -> list[dict]:
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for preset in ("demo", "paper-256"):
            torch.manual_seed(0)
            g = Generator(GENERATOR_PRESETS[preset]).eval().requires_grad_(False).to(device)
            net = build_inversion("proposed", preset, g).eval().requires_grad_(False).to(device)
            params = net.num_parameters()
            slow = device.type == "cpu" and preset == "paper-256"
            for precision in precisions(device):
                if precision == "bf16":
                    cache_casts(g, net)  # as `bgedit invert` does: one bf16 copy of the weights per command
                for batch in (1,) if (quick and slow) else (1, 8):
                    repeats = 10 if device.type == "cuda" and not quick else (1 if slow or quick else 2)
                    with autocast(device, precision):
                        sec, cpu_sec, peak = time_invert(g, net, batch, device, repeats)
                    rows.append({"bench": "invert", "preset": preset, "device": device.type, "batch": batch,
                                 "precision": precision, "steps": STEPS, "sec_per_image": round(sec, 4),
                                 "peak_mem_mib": round(peak, 1),
                                 **({"cpu_sec_per_image": round(cpu_sec, 4), "threads": torch.get_num_threads()}
                                    if device.type == "cpu" else {}),
                                 "params_m": round(params["total"] / 1e6, 2),
                                 "hypernet_params_m": round(params["hyper_img"] / 1e6, 2)})
            del g, net
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
