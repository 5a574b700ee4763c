"""Resumable training state without pickle: nested dicts/lists of tensors and JSON values -> one .safetensors.

Tensors go into the file's tensor table under generated names; the nested structure (with JSON scalars and
references to those names) goes into the header as JSON. Optimizer state dicts (int keys), RNG states and
step counters round-trip exactly.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bgedit_cli.checkpoint import read_checkpoint, save_checkpoint
from bgedit_cli.distributed import all_gather_objects


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": _encode(torch.from_numpy(obj.copy()), tensors)}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return _decode(obj["__ndarray__"], tensors).numpy()
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
    return obj


def save_state(path: Path, state: dict[str, Any], *, kind: str = "training-state") -> None:
    """Write a nested state atomically (overwrites)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    save_checkpoint(path, tensors, kind=kind, config={"tree": tree}, provenance={}, force=True)


def load_state(path: Path, *, kind: str = "training-state") -> dict[str, Any]:
    ckpt = read_checkpoint(path, kind)
    return _decode(ckpt.config["tree"], ckpt.tensors)


def rng_state() -> dict[str, Any]:
    """Every RNG a training loop may touch: torch (CPU and CUDA), numpy's global, Python's."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank `rank`'s own random stream (latents, noise, augmentations) derived from `seed`."""
    return int(np.random.SeedSequence([seed, rank, 0x5EED]).generate_state(1)[0])


def gather_rng_states(d: Any) -> list[dict[str, Any]]:
    """Every rank's `rng_state()`, in rank order (one item without DDP). Collective: every rank must call it."""
    return all_gather_objects(rng_state(), d)


def restore_rng_states(states: list[dict[str, Any]] | dict[str, Any], d: Any, fallback_seed: int) -> None:
    """Rank r continues `states[r]`. Resumed with another number of processes, each rank starts a fresh
    stream seeded by (`fallback_seed`, rank) instead: the old streams cannot be split or merged. A single dict
    (states saved by rank 0 only) counts as a one-process run."""
    if isinstance(states, dict):
        states = [states]
    if len(states) == d.world_size:
        set_rng_state(states[d.rank])
    else:
        seed_everything(rank_seed(fallback_seed, d.rank))
