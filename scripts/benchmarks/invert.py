"""Inversion (proposed variant: both encoders + 2 hypernetworks, 5 refinement steps) at demo and paper-256 sizes,
random weights, batch 1 and 8, per precision (fp32, and bf16 where it can pay), on CPU (and CUDA when present).

Each row: seconds per image (best of the repeats, and the median), peak memory, the inversion's FLOPs (counted
by `torch.utils.flop_counter` on one inversion, which is also the warm-up), the FLOP limit -- the rate of the
generator's big 3x3 convolutions in that precision, measured right before the row, as the generator rows do --
and the ratio of the time to FLOPs / limit. bf16 rows add the speed ratio to the fp32 row of the same batch and
the PSNR of their batch-1 reconstructions against fp32's (same inputs). Then one `invert-auto` row per preset and
batch: what `--precision auto` picks for this inversion on this machine (`runtime.resolve_precision` with the
command's workload, the decision `bgedit invert` makes) and its time against fp32.

On CPU, rows also give CPU seconds per image and the ratio in CPU time (the limit measured in CPU time too): on
a shared machine wall time includes waiting for other processes, CPU time does not (with T threads it is about
T x wall when idle).

Peak memory: CUDA allocator peak on CUDA; on CPU the process's peak RSS so far (`ru_maxrss`, it never goes
down, so a row shows the largest footprint of this and every earlier row of the process).
"""

from __future__ import annotations

import math
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import precisions
from benchmarks.generator import conv_gflops
from bgedit_cli.data.ade20k_classes import NUM_CLASSES
from bgedit_cli.nn.inversion import build_inversion
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from bgedit_cli.pipelines.invert import invert
from bgedit_cli.pipelines.precision import inversion_workload
from bgedit_cli.runtime import autocast, cache_casts, resolve_precision

STEPS = 5
PRESETS = ("demo", "paper-256")
BATCHES = (1, 8)


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


def invert_gflop(g: Generator, net, device: torch.device) -> float:
    """GFLOP of one inversion of one image (convolutions and matrix products, counted while it runs)."""
    img, seg = _inputs(1, g.cfg.img_resolution, device)
    with FlopCounterMode(display=False) as counter:
        invert(g, net, img, seg, steps=STEPS)
    return counter.get_total_flops() / 1e9


def time_invert(g: Generator, net, batch: int, device: torch.device, repeats: int) -> dict:
    """Per image: best and median wall seconds and best CPU seconds of `repeats` inversions (after one warm-up
    on CUDA); peak memory in MiB; the last reconstructions."""
    img, seg = _inputs(batch, g.cfg.img_resolution, device)
    if device.type == "cuda":
        invert(g, net, img, seg, steps=STEPS)  # warm-up (cuDNN autotuning, allocator)
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = invert(g, net, img, seg, steps=STEPS).images
        _sync(device)
        walls.append((time.perf_counter() - t) / batch)
        cpus.append((time.process_time() - c) / batch)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"best": min(walls), "median": statistics.median(walls), "cpu": min(cpus), "peak": peak,
            "images": out.float().cpu()}


def conv_limit(device: torch.device, precision: str) -> tuple[float, float]:
    """The FLOP limit (GFLOP/s) in wall time and, on CPU, in process CPU time (`conv_gflops`)."""
    wall = conv_gflops(device, precision)
    cpu = conv_gflops(device, precision, clock=time.process_time) if device.type == "cpu" else wall
    return wall, cpu


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).square().mean().item()
    return round(10 * math.log10(4 / mse), 2) if mse > 0 else float("inf")


def auto_precision(g: Generator, net, device: torch.device) -> str:
    """What `bgedit invert --precision auto` runs these networks in on this machine."""
    return resolve_precision("auto", device, ("auto", "fp32", "bf16"), workload=inversion_workload(g, net))


def run(quick: bool = False) -> list[dict]:
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for preset in PRESETS:
            g, net = build_nets(preset, device)
            params = net.num_parameters()
            work = invert_gflop(g, net, device)
            auto = auto_precision(g, net, device)
            slow = device.type == "cpu" and preset == "paper-256"
            batches = (1,) if (quick and slow) else BATCHES
            by_precision: dict[str, dict[int, dict]] = {}
            for precision in precisions(device):
                if precision == "bf16":
                    cache_casts(g, net)  # as `bgedit invert` does: one bf16 copy of the weights per command
                for batch in batches:
                    repeats = 10 if device.type == "cuda" and not quick else 1 if (slow and batch > 1) else 3
                    limit, limit_cpu = conv_limit(device, precision)
                    with autocast(device, precision):
                        m = time_invert(g, net, batch, device, repeats)
                    by_precision.setdefault(precision, {})[batch] = m
                    ideal, ideal_cpu = work / limit, work / limit_cpu
                    row = {"bench": "invert", "preset": preset, "device": device.type, "batch": batch,
                           "precision": precision, "steps": STEPS, "repeats": repeats,
                           "sec_per_image": round(m["best"], 4), "median_sec_per_image": round(m["median"], 4),
                           "peak_mem_mib": round(m["peak"], 1), "gflop_per_image": round(work, 1),
                           "conv_gflops": round(limit, 1), "ideal_sec_per_image": round(ideal, 4),
                           "ratio_to_ideal": round(m["best"] / ideal, 2)}
                    if device.type == "cpu":
                        row.update({"cpu_sec_per_image": round(m["cpu"], 4), "conv_gflops_cpu": round(limit_cpu, 1),
                                    "cpu_ratio_to_ideal": round(m["cpu"] / ideal_cpu, 2),
                                    "threads": torch.get_num_threads()})
                    if precision != "fp32":
                        fp32 = by_precision["fp32"][batch]
                        row["over_fp32"] = round(m["best"] / fp32["best"], 3)
                        if device.type == "cpu":
                            row["cpu_over_fp32"] = round(m["cpu"] / fp32["cpu"], 3)
                        row["psnr_vs_fp32"] = psnr(m["images"][:1], fp32["images"][:1])
                    row.update({"params_m": round(params["total"] / 1e6, 2),
                                "hypernet_params_m": round(params["hyper_img"] / 1e6, 2)})
                    rows.append(row)
            for batch in batches:
                fp32, chosen = by_precision["fp32"][batch], by_precision.get(auto, by_precision["fp32"])[batch]
                rows.append({"bench": "invert-auto", "preset": preset, "device": device.type, "batch": batch,
                             "auto": auto, "sec_per_image": round(chosen["best"], 4),
                             "fp32_sec_per_image": round(fp32["best"], 4),
                             "auto_over_fp32": round(chosen["best"] / fp32["best"], 3),
                             **({"cpu_auto_over_fp32": round(chosen["cpu"] / fp32["cpu"], 3)}
                                if device.type == "cpu" else {})})
            del g, net
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
