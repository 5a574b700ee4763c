"""Inverted images: `Inversion` (codes and weight residuals of N images, what `bgedit_cli.pipelines.invert`
returns) and latent files, one inverted image per `<stem>.latent.safetensors` (kind `latent`), so edits chain in
shell pipelines without inverting again.

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

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from bgedit_cli.checkpoint import read_checkpoint, save_checkpoint
from bgedit_cli.errors import CheckpointError, InputError

KIND = "latent"
SUFFIX = ".latent.safetensors"
DELTA_PARTS = ("delta_img", "delta_seg")

Deltas = dict[str, torch.Tensor]


@dataclasses.dataclass
class Inversion:
    """The result of inverting N images (every tensor has the batch dim first).

    ws: [N, num_ws, w_dim] -- the code fed to G: seg latents in rows < seg_layers, the image w in the rest
        (baseline: the image w everywhere);
    w: [N, w_dim] (or [N, num_ws, w_dim] from a W+ image encoder);
    seg_latents: [N, seg_layers, w_dim] or None (baseline);
    delta_img, delta_seg: {"convs.j": [N, C_out, C_in, k, k]} or None (no refinement / baseline);
    images: [N, 3, R, R] final reconstruction (None when loaded from a latent file);
    steps_images: reconstructions y_0 .. y_steps when asked for;
    meta: header of the latent file it was loaded from, if any.
    """

    ws: torch.Tensor
    w: torch.Tensor
    seg_latents: torch.Tensor | None = None
    delta_img: Deltas | None = None
    delta_seg: Deltas | None = None
    images: torch.Tensor | None = None
    steps_images: list[torch.Tensor] | None = None
    meta: dict | None = None

    @property
    def num(self) -> int:
        return self.ws.shape[0]

    @property
    def seg_layers(self) -> int:
        return 0 if self.seg_latents is None else self.seg_latents.shape[1]

    def weight_deltas(self) -> Deltas | None:
        """delta_img + delta_seg per layer (what G runs with), or None."""
        return sum_deltas(self.delta_img, self.delta_seg)

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Inversion":
        """A new Inversion with `fn` applied to every tensor (e.g. a device move or a batch slice)."""
        def opt(x):
            return None if x is None else fn(x)

        def dmap(d):
            return None if d is None else {k: fn(v) for k, v in d.items()}

        return Inversion(ws=fn(self.ws), w=fn(self.w), seg_latents=opt(self.seg_latents),
                         delta_img=dmap(self.delta_img), delta_seg=dmap(self.delta_seg), images=opt(self.images),
                         steps_images=None if self.steps_images is None else [fn(y) for y in self.steps_images],
                         meta=self.meta)

    def select(self, index: int | slice) -> "Inversion":
        """Items `index` (an int keeps a batch dim of 1)."""
        sl = slice(index, index + 1) if isinstance(index, int) else index
        return self.apply(lambda x: x[sl])

    def to(self, device: torch.device | str) -> "Inversion":
        return self.apply(lambda x: x.to(device))

    @staticmethod
    def cat(items: Sequence["Inversion"]) -> "Inversion":
        """Concatenate along the batch dim (all items must have the same parts)."""
        first = items[0]

        def cat_opt(get):
            vals = [get(i) for i in items]
            return None if vals[0] is None else torch.cat(vals)

        def cat_deltas(get):
            vals = [get(i) for i in items]
            return None if vals[0] is None else {k: torch.cat([v[k] for v in vals]) for k in vals[0]}

        steps = None
        if first.steps_images is not None:
            steps = [torch.cat([i.steps_images[t] for i in items]) for t in range(len(first.steps_images))]
        return Inversion(ws=torch.cat([i.ws for i in items]), w=torch.cat([i.w for i in items]),
                         seg_latents=cat_opt(lambda i: i.seg_latents), delta_img=cat_deltas(lambda i: i.delta_img),
                         delta_seg=cat_deltas(lambda i: i.delta_seg), images=cat_opt(lambda i: i.images),
                         steps_images=steps)


def sum_deltas(a: Mapping[str, torch.Tensor] | None, b: Mapping[str, torch.Tensor] | None) -> Deltas | None:
    """Per-layer sum of two delta dicts (either may be None; a layer missing in one is taken from the other)."""
    if a is None or b is None:
        return None if a is None and b is None else dict(a if b is None else b)
    return {k: a[k] + b[k] if k in a and k in b else (a[k] if k in a else b[k]) for k in {**a, **b}}


# ----------------------------------------------------------------------------------------------------------
# Latent files.


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
