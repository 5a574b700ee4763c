"""StyleGAN2 generator forward: seconds per image, peak memory, GFLOP/s, against this machine's matmul rate."""

from __future__ import annotations

import time

import torch

from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator, GeneratorConfig


def generator_gflop(cfg: GeneratorConfig) -> float:
    """Multiply-adds x 2 of one synthesis forward (3x3 convs; an upsampling conv is counted as the stride-2
    transposed conv it is, at its input resolution; ToRGB 1x1 convs). Mapping and FIR filters are negligible."""
    flops = 0
    res_in = 4
    for i, (res, ch) in enumerate(zip(cfg.resolutions, cfg.channels)):
        prev = cfg.channels[max(i - 1, 0)]
        if i == 0:
            flops += 2 * ch * ch * 9 * res * res
        else:
            flops += 2 * ch * prev * 9 * res_in * res_in  # upsampling (transposed) conv
            flops += 2 * ch * ch * 9 * res * res
        flops += 2 * cfg.img_channels * ch * res * res  # ToRGB
        res_in = res
    return flops / 1e9


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    _sync(device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def time_forward(g: Generator, batch: int, device: torch.device, repeats: int) -> tuple[float, float, float]:
    """(wall seconds per image, CPU seconds per image / threads, peak memory MiB: CUDA allocator peak, or
    process peak RSS on CPU). The CPU-time figure tells how much of the wall time other processes took."""
    z = torch.randn(batch, g.cfg.z_dim, device=device)
    g(z)  # warm-up
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        g(z)
    _sync(device)
    per_image = (time.perf_counter() - t) / (repeats * batch)
    cpu_per_image = (time.process_time() - c) / (repeats * batch * torch.get_num_threads())
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mib()
    return per_image, cpu_per_image, peak


def run(quick: bool = False) -> list[dict]:
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        gflops_machine = matmul_gflops(device)
        for preset in ("demo", "paper-256"):
            cfg = GENERATOR_PRESETS[preset]
            impls = ["ref"] + (["compile"] if device.type == "cuda" else [])
            for impl in impls:
                g = Generator(cfg, impl=impl).eval().to(device)
                work = generator_gflop(cfg)
                for batch in (1, 8):
                    repeats = 1 if (quick or (device.type == "cpu" and preset == "paper-256")) else 3
                    if device.type == "cuda":
                        repeats = 10
                    sec, cpu_sec, peak = time_forward(g, batch, device, repeats)
                    rows.append({
                        "bench": "generator-forward", "preset": preset, "device": device.type, "impl": impl,
                        "batch": batch, "sec_per_image": round(sec, 4), "cpu_sec_per_image": round(cpu_sec, 4),
                        "peak_mem_mib": round(peak, 1),
                        "gflop_per_image": round(work, 2), "achieved_gflops": round(work / sec, 1),
                        "matmul_gflops": round(gflops_machine, 1),
                        "ideal_sec_per_image": round(work / gflops_machine, 4),
                        "ratio_to_ideal": round(sec / (work / gflops_machine), 2),
                    })
                del g
    return rows
