"""What the bench sections share."""

from __future__ import annotations

import torch


def precisions(device: torch.device) -> list[str]:
    """fp32, and bf16 where it can pay (CUDA, or a CPU with bf16 instructions; elsewhere it is ~200x slower)."""
    if device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return ["fp32", "bf16"]
    return ["fp32"]
