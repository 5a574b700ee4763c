"""What commands and trainers share at run time: the device and the numeric precision (the console: console.py);
what `bgedit doctor` reports about the machine (`system_report`)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bgedit_cli.bundle import bgedit_home
from bgedit_cli.console import err_console
from bgedit_cli.errors import InputError
from bgedit_cli.fileio import atomic_output

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`--device` value -> torch.device: auto (CUDA when present), cpu, cuda or cuda:N; InputError if unusable."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto.")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise InputError(f"--device {name}: not a valid device name (use cuda or cuda:N).") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present.")
        return dev
    raise InputError(f"--device {name}: expected auto, cpu, cuda or cuda:N.")

# ----------------------------------------------------------------------------------------------------------
# Precision. On CPU, bf16 is 2-8x faster than fp32 where the CPU has bf16 instructions (AVX512-BF16, AMX) and
# ~200x slower where it has not; and where it has them, small networks at small batches can still be slower in
# bf16 (per-layer casts and overheads outweigh the faster convolutions). `auto` decides at run time:
# - no bf16 instructions (or a micro-benchmark of one convolution finds bf16 under 1.3x fp32): fp32;
# - for a command that names its workload (`Workload`: the networks it runs, at batch 1), by timing that workload
#   once in both precisions: bf16 only where it is measured at least BF16_MIN_WORKLOAD_SPEEDUP faster;
# - otherwise (training stages) by the convolution micro-benchmark.
# Every measurement is cached per CPU model and torch version ($BGEDIT_HOME/cpu-bf16.json).
# BGEDIT_CPU_BF16=1 or 0 overrides the decision (the test suite sets 0: fp32 results everywhere).

CPU_BF16_ENV = "BGEDIT_CPU_BF16"
BF16_MIN_SPEEDUP = 1.3  # bf16 convolutions at least this much faster than fp32 for `auto` to pick bf16
BF16_MIN_WORKLOAD_SPEEDUP = 1.1  # a workload at least this much faster in bf16 (CPU time) for `auto` to pick it
_cpu_bf16: dict[str, Any] | None = None
_warned: set[str] = set()


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what decides CPU speed per precision


def cpu_info() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's processor string)."""
    return cpu_info().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> dict[str, bool | None]:
    """Each of CPU_FLAGS: present, absent, or None where /proc/cpuinfo does not say."""
    flags = cpu_info().get("flags")
    present = set(flags.split()) if flags is not None else None
    return {f: (f in present) if present is not None else None for f in CPU_FLAGS}


def _conv_speed(dtype: torch.dtype | None, reps: int = 5) -> float:
    """Seconds per 3x3 convolution (64 channels, 4 x 32 x 32, channels-last), fp32 or under bf16 autocast."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
        conv(x)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t)
    return best


def cpu_bf16_status() -> dict[str, Any]:
    """{"fast": bool, "supported": bool, "speedup": bf16 vs fp32 convolution speed or None, "source": ...}:
    whether bf16 autocast pays on this CPU. Measured once per CPU model and torch version, then cached."""
    global _cpu_bf16
    forced = os.environ.get(CPU_BF16_ENV)
    if forced in ("0", "1"):
        return {"fast": forced == "1", "supported": forced == "1", "speedup": None, "source": f"{CPU_BF16_ENV}={forced}"}
    if _cpu_bf16 is not None:
        return _cpu_bf16
    cached = _read_cache()
    if "status" in cached:
        _cpu_bf16 = {**cached["status"], "source": f"cached in {_cache_path()}"}
        return _cpu_bf16
    supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    speedup = None
    if supported:
        with torch.random.fork_rng():  # the benchmark's random tensors leave the seeded streams alone
            speedup = round(_conv_speed(None) / _conv_speed(torch.bfloat16), 3)
    status = {"fast": bool(supported and speedup >= BF16_MIN_SPEEDUP), "supported": supported, "speedup": speedup}
    _write_cache(status=status)
    _cpu_bf16 = {**status, "source": "measured"}
    return _cpu_bf16


def _cache_path() -> Path:
    return bgedit_home() / "cpu-bf16.json"


def _cache_key() -> str:
    return f"{cpu_model()} | torch {torch.__version__}"


def _read_cache() -> dict[str, Any]:
    """The cache's entries for this CPU and torch version ({} when absent, unreadable or for another machine)."""
    try:
        cached = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) and cached.get("key") == _cache_key() else {}


def _write_cache(**entries: Any) -> None:
    """Merge `entries` into the cache (a failure to write only means measuring again next time)."""
    data = {**_read_cache(), **entries, "key": _cache_key()}
    try:
        with atomic_output(_cache_path()) as tmp:
            tmp.write_text(json.dumps(data, indent=1))
    except OSError:
        pass


@dataclasses.dataclass(frozen=True)
class Workload:
    """A command's unit of work for `--precision auto` on CPU: `run()` runs it once in the ambient precision
    (random inputs through the real networks `modules`, at batch 1); `key` names it in the cache: the command
    family, the networks' sizes (never their weights: same-sized networks share the decision) and the batch."""

    key: str
    run: Callable[[], Any]
    modules: tuple[torch.nn.Module, ...]


def workload_decision(workload: Workload) -> dict[str, Any]:
    """{"precision", "fp32_s", "bf16_s", "source"} for `workload` on this CPU: cached, or measured now and cached.
    Each precision runs once to warm up, then once timed in the same autocast context (weights cast to bf16 once,
    as a command does), in process CPU time so that other processes on the machine do not bias it."""
    cached = _read_cache().get("workloads", {}).get(workload.key)
    if isinstance(cached, dict) and cached.get("precision") in ("fp32", "bf16"):
        return {**cached, "source": f"cached in {_cache_path()}"}
    cpu = torch.device("cpu")
    seconds = {}
    flags = [(p, p.requires_grad) for m in workload.modules for p in m.parameters()]
    marks = [(m, getattr(m, BF16_MARK, False)) for m in workload.modules]
    try:
        with torch.random.fork_rng(), torch.no_grad():  # the probe's random inputs leave seeded streams alone
            for precision in ("fp32", "bf16"):
                if precision == "bf16":
                    cache_casts(*workload.modules)
                with autocast(cpu, precision):
                    workload.run()
                    t = time.process_time()
                    workload.run()
                    seconds[precision] = time.process_time() - t
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mark in marks:
            setattr(m, BF16_MARK, mark)
    fast = seconds["bf16"] * BF16_MIN_WORKLOAD_SPEEDUP <= seconds["fp32"]
    decision = {"precision": "bf16" if fast else "fp32", "fp32_s": round(seconds["fp32"], 4),
                "bf16_s": round(seconds["bf16"], 4)}
    _write_cache(workloads={**_read_cache().get("workloads", {}), workload.key: decision})
    return {**decision, "source": "measured"}


def workload_decisions() -> dict[str, dict[str, Any]]:
    """Every workload decision cached for this CPU and torch version, by workload key (for `bgedit doctor`)."""
    workloads = _read_cache().get("workloads", {})
    return workloads if isinstance(workloads, dict) else {}


def auto_precision_by_command() -> dict[str, Any]:
    """What `--precision auto` runs on this CPU, per command family (for `bgedit doctor`): the training stages
    (the convolution check), then every command workload measured so far, by its key, with its timings; a
    command not listed measures its workload the first time it runs with auto."""
    status = cpu_bf16_status()
    forced = os.environ.get(CPU_BF16_ENV) in ("0", "1")
    out: dict[str, Any] = {"train (every stage)": "bf16" if status["fast"] else "fp32"}
    for key, decision in sorted(workload_decisions().items()):
        out[key] = {**decision, "precision": out["train (every stage)"]} if forced or not status["fast"] else decision
    return out


def system_report() -> dict[str, Any]:
    """What `bgedit doctor` lists about this machine: Python, torch, CUDA devices, the CPU model, its flags,
    threads and what `--precision auto` picks (on CPU and per command family)."""
    cuda = torch.cuda.is_available()
    try:
        mkldnn_bf16: bool | None = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_bf16 = None
    return {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda_available": cuda, "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cpu": cpu_model(), "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkldnn_bf16": mkldnn_bf16,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "auto_precision_cpu": resolve_precision("auto", torch.device("cpu")), "cpu_bf16": cpu_bf16_status(),
        "auto_precision_by_command": auto_precision_by_command(),
    }


def resolve_precision(name: str, device: torch.device, allowed: Sequence[str] = PRECISIONS,
                      workload: Workload | None = None) -> str:
    """`--precision` value -> fp32, bf16 or fp16. auto: bf16 on CUDA; on CPU fp32 unless bf16 is measured fast
    (`cpu_bf16_status`) and, given the command's `workload`, measured faster for it (`workload_decision`). bf16
    asked for on a CPU where it is slow still runs, with one warning; fp16 is CUDA only."""
    if name not in allowed:
        raise InputError(f"--precision {name}: expected one of {', '.join(allowed)}.")
    if device.type == "cuda":
        return "bf16" if name == "auto" else name
    if name == "fp16":
        raise InputError("--precision fp16 is for CUDA; on CPU use bf16 (where the CPU has it), fp32 or auto.")
    if name == "fp32":
        return name
    status = cpu_bf16_status()
    if name == "auto":
        if not status["fast"]:
            return "fp32"
        if workload is None or os.environ.get(CPU_BF16_ENV) in ("0", "1"):
            return "bf16"
        return workload_decision(workload)["precision"]
    if not status["fast"] and "bf16" not in _warned:
        _warned.add("bf16")
        how = (f"measured {status['speedup']}x the fp32 speed" if status["speedup"] else
               f"{status['source']}" if status["source"].startswith(CPU_BF16_ENV) else
               "no bf16 instructions: expect it to be up to ~200x slower than fp32")
        err_console.print(f"Warning: bf16 on this CPU is slow ({how}); --precision auto would use fp32.")
    return "bf16"


def cache_casts(*modules: torch.nn.Module | None) -> None:
    """Prepare networks for inference in bf16: let autocast keep one bf16 copy of each weight for the whole autocast
    context instead of casting it again at every use, and mark them so that the pipeline functions that run them
    enter bf16 autocast themselves (`autocast_for`). Autocast caches casts of leaf tensors that require grad
    only, so this marks the parameters as such; inference runs under `torch.no_grad()`, so no gradient is ever
    computed. (Measured on the paper-256 inversion, 5 steps, 1 CPU thread: bf16 took 27.8 s without the cache,
    13.6 s with it, fp32 18.2 s.)"""
    for m in modules:
        if m is not None:
            m.requires_grad_(True)
            setattr(m, BF16_MARK, True)


BF16_MARK = "bgedit_bf16"  # attribute set by `cache_casts` on networks prepared for bf16 inference


def autocast_for(device: torch.device, *modules: torch.nn.Module | None) -> AbstractContextManager:
    """bf16 autocast for networks prepared by `cache_casts` (`load_models(..., precision="bf16")`), unless the
    caller already runs under autocast; nothing for fp32 networks. Pipeline functions (`invert`, `render`) wrap
    their networks' work in it, so whoever calls them with a bundle's networks gets the bundle's precision, while
    the caller's own computations (metrics, losses) stay fp32."""
    if torch.is_autocast_enabled(device.type) or not any(getattr(m, BF16_MARK, False) for m in modules):
        return nullcontext()
    return autocast(device, "bf16")


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a forward pass runs in: nothing for fp32, torch.autocast to bf16/fp16 otherwise."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
