"""The layout-edit term of inversion training: teach the seg path (Seg Encoder and `hyper_seg`) to draw a map
it did not come from.

A plain reconstruction loss never asks the seg path to draw anything the image path could not draw as well: the
image hypernetwork's deltas, computed from A, carry A's layout, and a layout edit (`mix-content A --seg MAP`)
comes back looking like A. This term trains the edit itself, the way `pipelines.mix.edit_layout` runs it:

```
A = img[i], B = seg[(i + 1) % N]                     # another scene's map, from the same batch
ws = compose(w_A, SegEncoder(B))                     # A's w (no gradient), the map's seg latents
y_0 = G(ws, delta_img_A)                             # A's final image deltas (no gradient), as edit_layout keeps them
y_t = G(ws, delta_img_A + delta_seg_t),  delta_seg_t = delta_seg_{t-1} + H_seg(cat(B, y_{t-1}))
loss_t = CE(segmenter(y_t), B)  +  look * |class colours of y_t on B - class colours of A on A's map|^2
```

- **Layout** (`layout_lambda`): the bundle's frozen segmenter should read the edit as B (per-pixel cross-entropy,
  the map's ignored pixels left out). The segmenter is the one `bgedit evaluate` scores layout edits with, so the
  term optimises what is measured; it never sees a ground-truth image, so it works on ADE20K as on synthetic data.
- **Look** (`look_lambda`): A's look is mostly carried by the fine W+ rows and `delta_img`, which the edit keeps;
  this term also asks that every class present in both maps keeps A's mean colour (sky stays A's sky, water A's
  water), a statistic that needs no pairing of pixels.

The **map-only reconstruction** (`map_only_lambda`) is the stable, pair-free counterpart: every image is redrawn
from its own map and its own w with no image deltas (y_t as above with A = B and delta_img = 0) and scored with
the reconstruction loss, so the seg path must learn to draw the layout that the image hypernetwork draws
otherwise.

Gradients of both terms reach the Seg Encoder (through the seg latents) and `hyper_seg` (through delta_seg); the
image encoder and `hyper_img` are untouched by them. Each refinement iteration's graph is freed after its backward, as in the
reconstruction step.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F

from bgedit_cli.io import IGNORE_ID
from bgedit_cli.latent import Deltas
from bgedit_cli.pipelines.invert import compose_ws, refine_step, render

MIN_CLASS_PIXELS = 16  # a class must cover this many pixels in both maps to compare its colour


def other_maps(seg: torch.Tensor) -> torch.Tensor:
    """Pair every item with the next one's map (a derangement for N >= 2): [N, C, R, R] -> [N, C, R, R]."""
    return seg.roll(1, dims=0)


def map_labels(seg: torch.Tensor) -> torch.Tensor:
    """One-hot [N, C, R, R] (all-zero = ignored pixel) -> class ids [N, R, R] with IGNORE_ID where ignored."""
    return seg.argmax(dim=1).masked_fill(seg.sum(dim=1) == 0, IGNORE_ID)


def class_colours(img: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean colour of each class: img [N, 3, R, R], one-hot seg [N, C, R, R] -> (means [N, C, 3], pixels [N, C])."""
    pixels = seg.sum(dim=(2, 3))
    sums = torch.einsum("nchw,nkhw->nck", seg, img.float())
    return sums / pixels.clamp(min=1)[..., None], pixels


def look_loss(y: torch.Tensor, seg_b: torch.Tensor, colours_a: torch.Tensor, pixels_a: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of class colours, over the classes both maps show with enough pixels."""
    colours_y, pixels_b = class_colours(y, seg_b)
    shared = (pixels_a >= MIN_CLASS_PIXELS) & (pixels_b >= MIN_CLASS_PIXELS)
    if not shared.any():
        return y.sum() * 0
    return (colours_y - colours_a).square().sum(dim=2)[shared].mean()


def seg_path_passes(G, net, seg: torch.Tensor, w: torch.Tensor, delta_img: Deltas | None, *, refine_steps: int,
                    loss: Callable[[torch.Tensor], torch.Tensor], autocast: Callable) -> None:
    """Draw `seg` with `w` (and fixed `delta_img`) the way `edit_layout` does, backward of `loss(y_t)` at every
    iteration: y_0 trains the Seg Encoder, the refinement trains `hyper_seg` (each graph freed after its backward)."""
    with autocast():
        ws = compose_ws(G, w.detach(), net.seg_encoder(seg, G))
        y = render(G, ws, delta_img)
    loss(y).backward()
    ws, y = ws.detach(), y.detach()
    delta_seg = None
    for _ in range(refine_steps):
        with autocast():
            _, delta_seg, y = refine_step(G, net, None, seg, ws, delta_img, delta_seg, y)
        loss(y).backward()


def layout_edit_step(G, net, segmenter, img: torch.Tensor, seg: torch.Tensor, w: torch.Tensor,
                     delta_img: Deltas | None, *, refine_steps: int, layout_lambda: float, look_lambda: float,
                     autocast: Callable | None = None) -> dict[str, float]:
    """Forward and backward of the layout-edit term for one batch (gradients accumulate; no optimizer step).

    `img`, `seg`: the batch (A's images and maps); `w` [N, w_dim] and `delta_img`: A's codes from the
    reconstruction step (detached here). Returns the scalars to log: `edit/ce`, `edit/look` of the last iteration
    and `edit/loss` summed over iterations."""
    seg_b = other_maps(seg)
    labels = map_labels(seg_b)
    colours_a, pixels_a = class_colours(img, seg)
    delta_img = {k: v.detach() for k, v in delta_img.items()} if delta_img is not None else None
    scalars: dict[str, float] = {"edit/loss": 0.0}

    def account(y: torch.Tensor) -> torch.Tensor:
        y = y.float().clamp(-1, 1)  # what is saved and read; keeps both terms bounded
        ce = F.cross_entropy(segmenter(y).float(), labels, ignore_index=IGNORE_ID)
        look = look_loss(y, seg_b, colours_a, pixels_a)
        loss = layout_lambda * ce + look_lambda * look
        scalars["edit/ce"], scalars["edit/look"] = float(ce.detach()), float(look.detach())
        scalars["edit/loss"] += float(loss.detach())
        return loss

    seg_path_passes(G, net, seg_b, w, delta_img, refine_steps=refine_steps, loss=account,
                    autocast=autocast or nullcontext)
    return scalars


def map_only_step(G, net, loss_fn, img: torch.Tensor, seg: torch.Tensor, w: torch.Tensor, *, refine_steps: int,
                  weight: float, autocast: Callable | None = None) -> dict[str, float]:
    """The map-only reconstruction term: redraw each image from its own map and its own w, with no image
    deltas, so that the seg path must draw the layout the image hypernetwork draws otherwise. Stable (a plain
    reconstruction loss, no second network to fool) and needs no pairs. Returns `maponly/loss` (summed over
    iterations) and `maponly/last` (the last iteration's loss, unweighted)."""
    scalars: dict[str, float] = {"maponly/loss": 0.0}

    def account(y: torch.Tensor) -> torch.Tensor:
        loss, _ = loss_fn(y.float(), img)
        scalars["maponly/last"] = float(loss.detach())
        scalars["maponly/loss"] += weight * float(loss.detach())
        return weight * loss

    seg_path_passes(G, net, seg, w, None, refine_steps=refine_steps, loss=account, autocast=autocast or nullcontext)
    return scalars
