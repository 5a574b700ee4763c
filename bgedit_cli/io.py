"""Images and arrays <-> tensors: reading, resizing rules, writing (atomically).

Images out: PNG, uint8 = round((clamp(x, -1, 1) + 1) * 127.5) computed in float32 (round half to even).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bgedit_cli.checkpoint import atomic_output
from bgedit_cli.errors import InputError


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(path: Path, pixels: np.ndarray, force: bool = False) -> None:
    """Write one HWC (or HW) uint8 array as PNG, atomically."""
    from PIL import Image

    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    with atomic_output(path, force=force) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def save_npy(path: Path, array: np.ndarray, force: bool = False) -> None:
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def load_npy(path: Path, *, what: str = "array") -> np.ndarray:
    """Read a numeric .npy file (no pickles) as float32; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy {what} ({str(exc)[:120]}).") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{path}: the {what} must be numeric, found dtype {getattr(arr, 'dtype', '?')}.")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: the {what} contains NaN or infinite values.")
    return arr
