"""StyleGAN2 generator forward per precision: seconds per image, peak memory, GFLOP/s, against the rate of the
generator's own big convolutions (and the matmul rate), both measured right before each row.

With `peer_rosinality=DIR` (bench.py `--peer-rosinality DIR`), each CPU paper-256 fp32 row is followed by a peer
row: rosinality/stylegan2-pytorch's Generator (its CPU path) holding the same weights, timed the same way
(see benchmarks/peer.py)."""

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


def conv_gflops(device: torch.device, precision: str = "fp32", trials: int = 3, clock=time.perf_counter) -> float:
    """Best rate of the paper-256 generator's big 3x3 convolutions (512 ch at 32 px, 256 ch at 64 px, batch 1,
    channels-last) in `precision` (bf16 under autocast): the convolution limit a forward can approach. `clock`:
    wall time, or `time.process_time` for the rate per CPU second (CPU only)."""
    from bgedit_cli.runtime import autocast

    best = 0.0
    for ch, res in ((512, 32), (256, 64)):
        conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)
        x = torch.randn(1, ch, res, res, device=device).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(device, precision):
            conv(x)
            for _ in range(trials):
                _sync(device)
                t = clock()
                conv(x)
                _sync(device)
                best = max(best, 2 * ch * ch * 9 * res * res / max(clock() - t, 1e-9) / 1e9)
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


PEER_PRESET = "paper-256"  # config-f: rosinality's stock width table with channel_multiplier=2
PEER_PARITY_TOL = 1e-3  # max abs image difference (ours vs peer, same z/W/W+) accepted before timing the peer


def _peer_for(peer_rosinality, g: Generator) -> tuple[torch.nn.Module, float]:
    """The peer holding `g`'s weights (wrapped so `time_forward` can call it) and its parity: the largest max abs
    image difference to ours over the same z (const noise), W (no noise) and W+ (const noise)."""
    from benchmarks.peer import PeerForward, max_parity_diff, parity, peer_generator

    peer = peer_generator(peer_rosinality, g)
    check = parity(g, peer, batch=1)
    if max_parity_diff(check) > PEER_PARITY_TOL:
        raise RuntimeError(f"rosinality peer disagrees with our generator on the same weights: {check}")
    return PeerForward(peer, g.cfg), max_parity_diff(check)


def run(quick: bool = False, peer_rosinality=None) -> list[dict]:
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
                peer = None
                if (peer_rosinality is not None and device.type == "cpu" and preset == PEER_PRESET
                        and precision == "fp32" and impl == "ref"):
                    peer, peer_diff = _peer_for(peer_rosinality, g)
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
                    if peer is not None:
                        ours = rows[-1]
                        gflops_machine = matmul_gflops(device)
                        gflops_conv = conv_gflops(device, precision)
                        p = time_forward(peer, batch, device, repeats)
                        rows.append({
                            "bench": "generator-forward", "preset": preset, "device": device.type,
                            "impl": "rosinality (peer)", "precision": precision, "batch": batch, "repeats": repeats,
                            "sec_per_image": round(p["best"], 4),
                            "median_sec_per_image": round(p["median"], 4), "cpu_sec_per_image": round(p["cpu"], 4),
                            "peak_mem_mib": round(p["peak"], 1),
                            "gflop_per_image": round(work, 2), "achieved_gflops": round(work / p["best"], 1),
                            "matmul_gflops": round(gflops_machine, 1), "conv_gflops": round(gflops_conv, 1),
                            "ideal_sec_per_image": round(work / gflops_conv, 4),
                            "ratio_to_ideal": round(p["best"] / (work / gflops_conv), 2),
                            "ours_over_peer": round(ours["sec_per_image"] / p["best"], 2),
                            # The same ratio in CPU seconds: on a shared machine, where the wall times of the two
                            # rows may be disturbed differently, this one is less so.
                            "ours_over_peer_cpu": round(ours["cpu_sec_per_image"] / p["cpu"], 2),
                            "parity_max_abs_diff": float(f"{peer_diff:.2e}"),
                            "note": "rosinality/stylegan2-pytorch Generator, CPU path (upfirdn2d_native, unfused "
                                    "leaky_relu, F.conv2d; nothing compiled), same weights as the ref fp32 row above, "
                                    "G([z], randomize_noise=False), no grad; ours_over_peer(_cpu) < 1: ours is faster; "
                                    "peak_mem_mib is the process peak so far",
                        })
                del g, peer
    return rows
