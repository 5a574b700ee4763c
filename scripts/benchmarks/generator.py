"""StyleGAN2 generator forward per precision: seconds per image, peak memory, GFLOP/s, against the rate of the
generator's own big convolutions (and the matmul rate), both measured right before each row."""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import precisions
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


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5, trials: int = 5) -> float:
    """Best of `trials` timings of `repeats` n x n fp32 matmuls: the machine's attainable rate. (The best,
    not the mean: on a shared VM the spread between runs is +-15%, and the ideal is what the machine can do.)"""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    _sync(device)
    a @ b
    _sync(device)
    best = 0.0
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9)
    return best


def conv_gflops(device: torch.device, precision: str = "fp32", trials: int = 3) -> float:
    """Best rate of the paper-256 generator's big 3x3 convolutions (512 ch at 32 px, 256 ch at 64 px, batch 1,
    channels-last) in `precision` (bf16 under autocast): the convolution limit a forward can approach."""
    from bgedit_cli.runtime import autocast

    best = 0.0
    for ch, res in ((512, 32), (256, 64)):
        conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)
        x = torch.randn(1, ch, res, res, device=device).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(device, precision):
            conv(x)
            for _ in range(trials):
                _sync(device)
                t = time.perf_counter()
                conv(x)
                _sync(device)
                best = max(best, 2 * ch * ch * 9 * res * res / (time.perf_counter() - t) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def time_forward(g: Generator, batch: int, device: torch.device, repeats: int) -> dict:
    """Per-image seconds of `repeats` timed forwards (best and median), CPU seconds per image / threads, and
    peak memory in MiB (CUDA allocator peak, or process peak RSS on CPU). The CPU-time figure tells how much
    of the wall time other processes took; the best run is the one least disturbed by them."""
    z = torch.randn(batch, g.cfg.z_dim, device=device)
    g(z)  # warm-up
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    c = time.process_time()
    for _ in range(repeats):
        t = time.perf_counter()
        g(z)
        _sync(device)
        times.append((time.perf_counter() - t) / batch)
    cpu_per_image = (time.process_time() - c) / (repeats * batch * torch.get_num_threads())
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mib()
    return {"best": min(times), "median": statistics.median(times), "cpu": cpu_per_image, "peak": peak}


def run(quick: bool = False) -> list[dict]:
    from bgedit_cli.runtime import autocast, cache_casts

    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for preset in ("demo", "paper-256"):
            cfg = GENERATOR_PRESETS[preset]
            impls = ["ref"] + (["compile"] if device.type == "cuda" else [])
            for impl, precision in [(i, p) for i in impls for p in precisions(device)]:
                g = Generator(cfg, impl=impl).eval().to(device)
                if precision == "bf16":
                    cache_casts(g)  # as the commands do: one bf16 copy of the weights per autocast context
                work = generator_gflop(cfg)
                for batch in (1, 8):
                    repeats = 10 if device.type == "cuda" else 2 if quick else 5 if batch == 1 else 3
                    # Rates right before the row, so both see the same machine state.
                    gflops_machine = matmul_gflops(device)
                    gflops_conv = conv_gflops(device, precision)
                    with autocast(device, precision):
                        m = time_forward(g, batch, device, repeats)
                    ideal = work / gflops_conv
                    rows.append({
                        "bench": "generator-forward", "preset": preset, "device": device.type, "impl": impl,
                        "precision": precision, "batch": batch, "repeats": repeats,
                        "sec_per_image": round(m["best"], 4),
                        "median_sec_per_image": round(m["median"], 4), "cpu_sec_per_image": round(m["cpu"], 4),
                        "peak_mem_mib": round(m["peak"], 1),
                        "gflop_per_image": round(work, 2), "achieved_gflops": round(work / m["best"], 1),
                        "matmul_gflops": round(gflops_machine, 1), "conv_gflops": round(gflops_conv, 1),
                        "ideal_sec_per_image": round(ideal, 4),
                        "ratio_to_ideal": round(m["best"] / ideal, 2),
                    })
                del g
    return rows
