"""Latent files: one inverted image per `<stem>.latent.safetensors` (kind `latent`), so edits chain in shell
pipelines without inverting again.

Tensors (no batch dim):
    ws            float32 [num_ws, w_dim]      the code fed to G
    w             float32 [w_dim]              the image encoder's w ([num_ws, w_dim] for a W+ encoder)
    seg_latents   float32 [seg_layers, w_dim]  (proposed variant only)
    delta_img.convs.j, delta_seg.convs.j
                  float16 [C_out, C_in, k, k], or [C_out, C_in, 1, 1] where the delta is the same for every
                  kernel tap (per-channel heads) -- expanded back to k x k on load
Header config: generator_sha256, source (image file name), resolution, num_ws, w_dim, variant, seg_layers,
steps, layer_shapes. A latent is only valid with the generator it was made with: `load_latent` refuses another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from bgedit_cli.checkpoint import read_checkpoint, save_checkpoint
from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.pipelines.invert import Inversion

KIND = "latent"
SUFFIX = ".latent.safetensors"
DELTA_PARTS = ("delta_img", "delta_seg")


def is_latent_path(path: Path | str) -> bool:
    return str(path).endswith(SUFFIX)


def latent_path(folder: Path, stem: str) -> Path:
    return Path(folder) / f"{stem}{SUFFIX}"


def _compact(delta: torch.Tensor) -> torch.Tensor:
    """[O, I, k, k] -> [O, I, 1, 1] when every tap holds the same value, else unchanged."""
    first = delta[..., :1, :1]
    return first.contiguous() if delta.shape[-1] > 1 and bool((delta == first).all()) else delta


def save_latent(path: Path, inversion: Inversion, meta: Mapping[str, Any], force: bool = False,
                provenance: Mapping[str, Any] | None = None) -> str:
    """Write one item of `inversion` (batch size 1). `meta` must hold `generator_sha256`; the shapes, variant
    and layer shapes are added here. Returns the file's sha256."""
    if inversion.num != 1:
        raise ValueError(f"save_latent writes one item; select it first (got a batch of {inversion.num}).")
    if not meta.get("generator_sha256"):
        raise ValueError("save_latent needs meta['generator_sha256'].")
    tensors = {"ws": inversion.ws[0].float(), "w": inversion.w[0].float()}
    if inversion.seg_latents is not None:
        tensors["seg_latents"] = inversion.seg_latents[0].float()
    layer_shapes = {}
    for part in DELTA_PARTS:
        deltas = getattr(inversion, part)
        for name, d in (deltas or {}).items():
            layer_shapes[name] = list(d.shape[1:])
            tensors[f"{part}.{name}"] = _compact(d[0].detach().to(torch.float16))
    config = {"resolution": None, "source": None, "steps": None, **dict(meta),
              "num_ws": inversion.ws.shape[1], "w_dim": inversion.ws.shape[2],
              "variant": "proposed" if inversion.seg_latents is not None else "baseline",
              "seg_layers": inversion.seg_layers, "layer_shapes": layer_shapes}
    return save_checkpoint(path, tensors, kind=KIND, config=config, provenance=dict(provenance or {}), force=force)


def load_latent(path: Path, generator_sha256: str | None = None) -> Inversion:
    """Read a latent file as an `Inversion` of batch size 1 (float32; `images` None; header in `.meta`).

    With `generator_sha256`, a latent made with another generator is refused (CheckpointError)."""
    path = Path(path)
    ckpt = read_checkpoint(path, KIND)
    cfg, t = ckpt.config, ckpt.tensors
    made_with = cfg.get("generator_sha256", "")
    if generator_sha256 and made_with != generator_sha256:
        raise CheckpointError(
            f"{path}: this latent was made with generator {str(made_with)[:12]}..., but the generator in use is "
            f"{generator_sha256[:12]}...; latents only work with their own generator. Invert the image again "
            "with this model (bgedit invert).")
    try:
        num_ws, w_dim, seg_layers = int(cfg["num_ws"]), int(cfg["w_dim"]), int(cfg["seg_layers"])
        layer_shapes = {k: tuple(int(s) for s in v) for k, v in dict(cfg.get("layer_shapes") or {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged latent header ({exc}); invert the image again.") from None

    def need(name: str, shape: list[int]) -> torch.Tensor:
        if name not in t:
            raise CheckpointError(f"{path}: latent file lacks tensor '{name}'; invert the image again.")
        if list(t[name].shape) != shape:
            raise CheckpointError(f"{path}: tensor '{name}' is {list(t[name].shape)}, expected {shape}.")
        return t[name].float().unsqueeze(0)

    ws = need("ws", [num_ws, w_dim])
    w = need("w", [w_dim] if t.get("w") is None or t["w"].ndim == 1 else [num_ws, w_dim])
    seg_latents = need("seg_latents", [seg_layers, w_dim]) if seg_layers > 0 else None
    parts: dict[str, dict[str, torch.Tensor] | None] = {}
    for part in DELTA_PARTS:
        names = [k for k in t if k.startswith(part + ".")]
        deltas = {}
        for key in names:
            layer = key[len(part) + 1:]
            if layer not in layer_shapes:
                raise CheckpointError(f"{path}: tensor '{key}' has no layer shape in the header; invert again.")
            full = layer_shapes[layer]
            d = t[key]
            if tuple(d.shape) not in (full, full[:2] + (1, 1)):
                raise CheckpointError(f"{path}: tensor '{key}' is {list(d.shape)}, expected {list(full)}.")
            deltas[layer] = d.float().expand(*full).unsqueeze(0)  # (1, O, I, k, k)
        parts[part] = deltas or None
    prefixes = tuple(p + "." for p in DELTA_PARTS)
    unexpected = {k for k in t if k not in ("ws", "w", "seg_latents") and not k.startswith(prefixes)}
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensors {sorted(unexpected)[:4]}; not a bgedit latent file.")
    if not torch.isfinite(ws).all():
        raise InputError(f"{path}: the latent contains NaN or infinite values.")
    return Inversion(ws=ws, w=w, seg_latents=seg_latents, delta_img=parts["delta_img"],
                     delta_seg=parts["delta_seg"], meta={**cfg, "path": str(path)})
