"""Inversion: image (+ one-hot seg map) -> codes and weight residuals that make the frozen generator redraw it.

Shapes: `img [N, 3, R, R]` in [-1, 1]; `seg [N, 151, R, R]` one-hot (`bgedit_cli.io.one_hot_seg`);
`ws [N, num_ws, w_dim]`; deltas `{"convs.j": [N, C_out, C_in, k, k]}`.

The pieces, for inference (`invert`) and for training (`bgedit_cli.training.inversion` reuses them):

    w, seg_latents, ws = initial_codes(G, net, img, seg)      # encoders; ws = compose_ws(G, w, seg_latents)
    y = render(G, ws)                                          # y_0: no deltas
    delta_img = delta_seg = None
    for t in range(steps):                                     # HyperStyle's iterative refinement
        delta_img, delta_seg, y = refine_step(G, net, img, seg, ws, delta_img, delta_seg, y)

`refine_step` cuts the gradient between iterations (it detaches `y_prev` and the incoming deltas, like
HyperStyle's training loop), so a trainer may compute a loss and call backward after every step; `ws` is used
as given (detach it to train the hypernetworks alone). `invert` runs all of this under `torch.no_grad()`.
Deltas combine as `theta * (1 + delta_img + delta_seg)`; the baseline variant has only `delta_img`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import torch

from bgedit_cli.errors import InputError
from bgedit_cli.nn.inversion import InversionNet
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.nn.stylegan2 import Generator, NoiseMode

Deltas = dict[str, torch.Tensor]
Progress = Callable[[int, int], None]


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


def render(generator: Generator, ws: torch.Tensor, deltas: Mapping[str, torch.Tensor] | None = None, *,
           noise_mode: NoiseMode = "const") -> torch.Tensor:
    """G(ws) with weights theta * (1 + delta) per sample -> [N, 3, R, R]."""
    return generator.synthesize(ws, noise_mode=noise_mode, weight_deltas=deltas or None)


def compose_ws(generator: Generator, w: torch.Tensor, seg_latents: torch.Tensor | None) -> torch.Tensor:
    """W+ code: `w` ([N, w_dim] broadcast, or [N, num_ws, w_dim]) with rows < seg_layers replaced by
    `seg_latents` [N, seg_layers, w_dim] when given."""
    ws = generator.broadcast(w)
    if seg_latents is None:
        return ws
    k = seg_latents.shape[1]
    assert_shape(seg_latents, [ws.shape[0], k, ws.shape[2]], "seg_latents")
    return torch.cat([seg_latents.to(ws.dtype), ws[:, k:]], dim=1)


def check_inputs(net: InversionNet, img: torch.Tensor, seg: torch.Tensor | None) -> None:
    """Shape checks with user-facing messages (InputError)."""
    r = net.cfg.img_resolution
    if img.ndim != 4 or tuple(img.shape[1:]) != (3, r, r):
        raise InputError(f"images must be [N, 3, {r}, {r}] for this model, got {list(img.shape)}.")
    if net.uses_seg:
        if seg is None:
            raise InputError("the proposed variant needs a segmentation map for every image (give --seg or a "
                             "bundle with a segmenter).")
        if tuple(seg.shape) != (img.shape[0], net.cfg.num_classes, r, r):
            raise InputError(f"one-hot seg must be [{img.shape[0]}, {net.cfg.num_classes}, {r}, {r}], "
                             f"got {list(seg.shape)}.")


def initial_codes(generator: Generator, net: InversionNet, img: torch.Tensor, seg: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Encoders only: (w, seg_latents or None, ws). The baseline ignores `seg`."""
    check_inputs(net, img, seg)
    w = net.image_encoder(img, generator)
    seg_latents = net.seg_encoder(seg, generator) if net.uses_seg else None
    return w, seg_latents, compose_ws(generator, w, seg_latents)


def refine_step(generator: Generator, net: InversionNet, x_img: torch.Tensor | None, x_seg: torch.Tensor | None,
                ws: torch.Tensor, delta_img: Deltas | None, delta_seg: Deltas | None, y_prev: torch.Tensor, *,
                noise_mode: NoiseMode = "const") -> tuple[Deltas | None, Deltas | None, torch.Tensor]:
    """One HyperStyle iteration: `delta += H(cat(x, y_prev))` for each hypernetwork, then y = G(ws, deltas).

    A hypernetwork whose input is None (`x_img`, or `x_seg` / the baseline's missing `hyper_seg`) keeps its
    deltas unchanged (e.g. a layout edit refines only delta_seg). Incoming deltas and `y_prev` are detached.
    Returns (delta_img, delta_seg, y).
    """
    y_prev = y_prev.detach()

    def update(hyper, x, old):
        if hyper is None or x is None:
            return old
        step = hyper(torch.cat([x, y_prev.to(x.dtype)], dim=1))
        return step if old is None else {k: old[k].detach() + v for k, v in step.items()}

    delta_img = update(net.hyper_img, x_img, delta_img)
    delta_seg = update(net.hyper_seg, x_seg, delta_seg)
    y = render(generator, ws, sum_deltas(delta_img, delta_seg), noise_mode=noise_mode)
    return delta_img, delta_seg, y


@torch.no_grad()
def invert(generator: Generator, net: InversionNet, img: torch.Tensor, seg: torch.Tensor | None = None, *,
           steps: int = 5, progress: Progress | None = None, return_steps: bool = False,
           noise_mode: NoiseMode = "const") -> Inversion:
    """Invert a batch: encoders, y_0 = G(ws), then `steps` refinement steps. `seg` (one-hot) is required by the
    proposed variant and ignored by the baseline. `progress(t, steps)` is called after y_t."""
    if steps < 0:
        raise InputError(f"steps must be >= 0, got {steps}.")
    w, seg_latents, ws = initial_codes(generator, net, img, seg)
    x_seg = seg if net.uses_seg else None
    y = render(generator, ws, noise_mode=noise_mode)
    history = [y] if return_steps else None
    if progress is not None:
        progress(0, steps)
    delta_img = delta_seg = None
    for t in range(1, steps + 1):
        delta_img, delta_seg, y = refine_step(generator, net, img, x_seg, ws, delta_img, delta_seg, y,
                                              noise_mode=noise_mode)
        if history is not None:
            history.append(y)
        if progress is not None:
            progress(t, steps)
    return Inversion(ws=ws, w=w, seg_latents=seg_latents, delta_img=delta_img, delta_seg=delta_seg, images=y,
                     steps_images=history)
