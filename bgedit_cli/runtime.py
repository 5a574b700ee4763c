"""What commands and trainers share at run time: the device and the numeric precision (the console: console.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Sequence

import torch

from bgedit_cli.errors import InputError

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

def resolve_precision(name: str, device: torch.device, allowed: Sequence[str] = PRECISIONS) -> str:
    """`--precision` value -> fp32, bf16 or fp16: auto is bf16 on CUDA and fp32 on CPU; mixed precision is
    CUDA only."""
    if name not in allowed:
        raise InputError(f"--precision {name}: expected one of {', '.join(allowed)}.")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name != "fp32" and device.type != "cuda":
        raise InputError(f"--precision {name} is for CUDA (on this CPU bf16 is ~200x slower than fp32); use "
                         "--precision fp32 or leave it at auto.")
    return name

def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a forward pass runs in: nothing for fp32, torch.autocast to bf16/fp16 otherwise."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
