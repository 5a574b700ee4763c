"""Style mixing, content mixing and layout editing of inverted images (the paper's sections 3.3 and 5).

All functions take `Inversion`s (from `invert` or `load_latent`) of the proposed variant. Two inversions are
paired item by item; one of them may have a single item, which is then paired with every item of the other.

- `mix_style(G, a, b)`: A's content, B's style -- W+ rows in `layers` (default: seg_layers.., the 64x64 and
  finer rows at 256 px) from B; seg latents and deltas from A (`take_delta_img="b"` also takes B's delta_img).
- `mix_content(G, a, b)`: A's style, B's content -- seg latents (rows < seg_layers) from B, the fine rows from
  A; `swap_deltas`: "seg" (delta_seg from B, delta_img from A; the paper's choice), "all" (both from B) or
  "none" (both from A).
- `edit_layout(G, net, a, new_seg)`: A's style, the content of an edited map alone (the paper's future work):
  the Seg Encoder encodes the new map, `hyper_seg` refines delta_seg from y_0 = G(new ws, A's delta_img), and
  A's w and delta_img are kept.
`style_mix_codes` / `content_mix_codes` return the mixed (ws, delta_img, delta_seg) without rendering.

For the commands, on a bundle's `Models` and files (images, inverted now, or latent files): `mix_style_files`
(`bgedit mix-style`) and `mix_content_files` (`bgedit mix-content`, with B or a new map) write the mixed image
and, if asked, the mixed code as a latent file.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from bgedit_cli.errors import InputError
from bgedit_cli.fileio import check_writable
from bgedit_cli.io import load_seg, one_hot_seg, save_png, to_uint8
from bgedit_cli.latent import Deltas, Inversion, latent_path, save_latent as write_latent, sum_deltas
from bgedit_cli.nn.inversion import InversionNet
from bgedit_cli.nn.stylegan2 import Generator, NoiseMode
from bgedit_cli.pipelines.invert import Progress, compose_ws, inversion_for, refine_step, render
from bgedit_cli.pipelines.models import Models
from bgedit_cli.runtime import autocast

SWAP_DELTAS = ("seg", "all", "none")
DELTA_SOURCES = ("a", "b")


def parse_layers(text: str, num_ws: int) -> list[int]:
    """W+ row indices from `8:` / `:8` / `4:10` (Python slices) or `3,5,9-12` (inclusive ranges)."""
    text = text.replace(" ", "")
    m = re.fullmatch(r"(-?\d*):(-?\d*)", text)
    if m:
        start = int(m.group(1)) if m.group(1) else None
        stop = int(m.group(2)) if m.group(2) else None
        rows = list(range(num_ws))[slice(start, stop)]
    else:
        rows = []
        for part in text.split(","):
            r = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not r:
                raise InputError(f"--layers {text!r}: expected a slice like 8: or 4:10, or a list like 3,5,9-12.")
            lo, hi = int(r.group(1)), int(r.group(2) or r.group(1))
            if hi < lo or hi >= num_ws:
                raise InputError(f"--layers {text!r}: rows must be in 0..{num_ws - 1} (this generator has "
                                 f"{num_ws} W+ rows).")
            rows.extend(range(lo, hi + 1))
    rows = sorted(set(rows))
    if not rows:
        raise InputError(f"--layers {text!r} selects no W+ rows (this generator has {num_ws}).")
    return rows


def require_proposed(inv: Inversion, name: str) -> None:
    if inv.seg_latents is None:
        raise InputError(f"{name}: mixing needs an inversion by the proposed variant (with seg latents); this one "
                         "comes from the baseline. Invert it with --variant proposed.")


def _pair(a: Inversion, b: Inversion) -> tuple[Inversion, Inversion]:
    """Repeat a single-item inversion to the other's batch size."""
    if a.num == b.num:
        return a, b
    if a.num == 1:
        return a.apply(lambda x: x.expand(b.num, *x.shape[1:])), b
    if b.num == 1:
        return a, b.apply(lambda x: x.expand(a.num, *x.shape[1:]))
    raise InputError(f"cannot pair {a.num} inversions with {b.num}; give equal numbers or a single one.")


def _check_compatible(a: Inversion, b: Inversion) -> None:
    require_proposed(a, "A")
    require_proposed(b, "B")
    if a.ws.shape[1:] != b.ws.shape[1:] or a.seg_layers != b.seg_layers:
        raise InputError(f"the two inversions do not match (ws {list(a.ws.shape[1:])} vs {list(b.ws.shape[1:])}, "
                         f"seg_layers {a.seg_layers} vs {b.seg_layers}); invert both with the same model.")


def style_mix_codes(a: Inversion, b: Inversion, *, layers: Sequence[int] | slice | None = None,
                    take_delta_img: str = "a") -> tuple[torch.Tensor, Deltas | None, Deltas | None]:
    """(ws, delta_img, delta_seg) with A's content and B's style (see module doc)."""
    _check_compatible(a, b)
    if take_delta_img not in DELTA_SOURCES:
        raise InputError(f"take_delta_img must be 'a' or 'b', got {take_delta_img!r}.")
    a, b = _pair(a, b)
    rows = list(range(a.ws.shape[1]))[layers] if isinstance(layers, slice) else layers
    rows = list(range(a.seg_layers, a.ws.shape[1])) if rows is None else list(rows)
    ws = a.ws.clone()
    ws[:, rows] = b.ws[:, rows].to(ws.dtype)
    return ws, (b if take_delta_img == "b" else a).delta_img, a.delta_seg


def content_mix_codes(a: Inversion, b: Inversion, *, swap_deltas: str = "seg"
                      ) -> tuple[torch.Tensor, Deltas | None, Deltas | None]:
    """(ws, delta_img, delta_seg) with A's style and B's content (see module doc)."""
    _check_compatible(a, b)
    if swap_deltas not in SWAP_DELTAS:
        raise InputError(f"swap_deltas must be one of {', '.join(SWAP_DELTAS)}, got {swap_deltas!r}.")
    a, b = _pair(a, b)
    k = a.seg_layers
    ws = torch.cat([b.ws[:, :k].to(a.ws.dtype), a.ws[:, k:]], dim=1)
    delta_img = (b if swap_deltas == "all" else a).delta_img
    delta_seg = (a if swap_deltas == "none" else b).delta_seg
    return ws, delta_img, delta_seg


@torch.no_grad()
def mix_style(generator: Generator, inv_a: Inversion, inv_b: Inversion, *,
              layers: Sequence[int] | slice | None = None, take_delta_img: str = "a",
              noise_mode: NoiseMode = "const") -> torch.Tensor:
    """Images [N, 3, R, R] with A's content and B's style."""
    ws, d_img, d_seg = style_mix_codes(inv_a, inv_b, layers=layers, take_delta_img=take_delta_img)
    return render(generator, ws, sum_deltas(d_img, d_seg), noise_mode=noise_mode)


@torch.no_grad()
def mix_content(generator: Generator, inv_a: Inversion, inv_b: Inversion, *, swap_deltas: str = "seg",
                noise_mode: NoiseMode = "const") -> torch.Tensor:
    """Images [N, 3, R, R] with A's style and B's content."""
    ws, d_img, d_seg = content_mix_codes(inv_a, inv_b, swap_deltas=swap_deltas)
    return render(generator, ws, sum_deltas(d_img, d_seg), noise_mode=noise_mode)


@torch.no_grad()
def edit_layout(generator: Generator, net: InversionNet, inv_a: Inversion, new_seg: torch.Tensor, *,
                steps: int = 5, progress: Progress | None = None, noise_mode: NoiseMode = "const") -> Inversion:
    """A's style with the content of `new_seg` ([N or 1, 151, R, R] one-hot): a new Inversion whose seg latents
    and delta_seg come from the map alone, and whose w and delta_img are A's."""
    require_proposed(inv_a, "A")
    if not net.uses_seg:
        raise InputError("layout editing needs the proposed variant's Seg Encoder and hyper_seg.")
    r, c = net.cfg.img_resolution, net.cfg.num_classes
    if new_seg.ndim != 4 or tuple(new_seg.shape[1:]) != (c, r, r):
        raise InputError(f"the new map must be one-hot [N, {c}, {r}, {r}], got {list(new_seg.shape)}.")
    if inv_a.seg_layers != net.seg_layers:
        raise InputError(f"A has {inv_a.seg_layers} seg rows but this model uses {net.seg_layers}; invert A with it.")
    n = max(inv_a.num, new_seg.shape[0])
    if inv_a.num != n:
        inv_a = inv_a.apply(lambda x: x.expand(n, *x.shape[1:]))
    if new_seg.shape[0] != n:
        new_seg = new_seg.expand(n, -1, -1, -1)
    seg_latents = net.seg_encoder(new_seg, generator)
    ws = compose_ws(generator, inv_a.w, seg_latents)
    delta_img = inv_a.delta_img
    y = render(generator, ws, delta_img, noise_mode=noise_mode)
    if progress is not None:
        progress(0, steps)
    delta_seg = None
    for t in range(1, steps + 1):
        delta_img, delta_seg, y = refine_step(generator, net, None, new_seg, ws, delta_img, delta_seg, y,
                                              noise_mode=noise_mode)
        if progress is not None:
            progress(t, steps)
    return Inversion(ws=ws, w=inv_a.w, seg_latents=seg_latents, delta_img=delta_img, delta_seg=delta_seg, images=y)


# ----------------------------------------------------------------------------------------------------------
# `bgedit mix-style`, `bgedit mix-content`: files in, a PNG (and a latent file) out.


@dataclasses.dataclass(frozen=True)
class MixOutput:
    """What a mix wrote, and how: `rows` (style mixing: the W+ rows taken from STYLE), `mode` (content mixing:
    "mix" with B's content, "layout" with a new map's)."""

    image: Path
    latent: Path | None = None
    rows: list[int] | None = None
    mode: str = "mix"

    def files(self) -> dict[str, str]:
        return {"image": str(self.image), **({"latent": str(self.latent)} if self.latent else {})}


def mixed_inversion(codes: tuple[torch.Tensor, Deltas | None, Deltas | None], w: torch.Tensor,
                    seg_layers: int) -> Inversion:
    """The Inversion of mixed codes (ws, delta_img, delta_seg): seg latents are ws' first `seg_layers` rows."""
    ws, delta_img, delta_seg = codes
    return Inversion(ws=ws, w=w, seg_latents=ws[:, :seg_layers], delta_img=delta_img, delta_seg=delta_seg)


def mix_style_files(models: Models, content: Path, style: Path, out: Path, *, layers: str | None = None,
                    take_delta_img: str = "a", content_seg: Path | None = None, style_seg: Path | None = None,
                    steps: int = 5, save_latent: bool = False, force: bool = False) -> MixOutput:
    """CONTENT's layout in STYLE's look (`layers`: the W+ rows from STYLE as `--layers` text, default
    seg_layers:) -> OUT (and `<out stem>.latent.safetensors` with `save_latent`)."""
    _check_outputs(models, out, save_latent, force)
    rows = parse_layers(layers, models.generator.cfg.num_ws) if layers else None
    inv_a = inversion_for(models, content, content_seg, steps)
    inv_b = inversion_for(models, style, style_seg, steps)
    mixed = mixed_inversion(style_mix_codes(inv_a, inv_b, layers=rows, take_delta_img=take_delta_img), inv_b.w,
                            models.net.seg_layers)
    latent = _save(models, out, _render(models, mixed), mixed, save_latent=save_latent, force=force,
                   source=f"mix-style {content.name} {style.name}", steps=steps)
    rows = rows if rows is not None else list(range(models.net.seg_layers, models.generator.cfg.num_ws))
    return MixOutput(image=out, latent=latent, rows=rows)


def mix_content_files(models: Models, a: Path, b: Path | None, out: Path, *, seg: Path | None = None,
                      a_seg: Path | None = None, swap_deltas: str = "seg", steps: int = 5, save_latent: bool = False,
                      force: bool = False) -> MixOutput:
    """A's look with B's content (`seg`: B's map if B is an image), or without B with the content of the map
    `seg` alone (layout edit) -> OUT (and `<out stem>.latent.safetensors` with `save_latent`)."""
    if b is None and seg is None:
        raise InputError("give B (an image or latent) or a new layout map with --seg.")
    _check_outputs(models, out, save_latent, force)
    inv_a = inversion_for(models, a, a_seg, steps)
    if b is not None:
        inv_b = inversion_for(models, b, seg, steps)
        mixed = mixed_inversion(content_mix_codes(inv_a, inv_b, swap_deltas=swap_deltas), inv_a.w,
                                models.net.seg_layers)
        images, source, mode = _render(models, mixed), f"mix-content {a.name} {b.name}", "mix"
    else:
        ids = torch.from_numpy(load_seg(seg, models.resolution).copy()).long()
        with autocast(models.device, models.precision):
            edited = edit_layout(models.generator, models.net, inv_a, one_hot_seg(ids[None]).to(models.device),
                                 steps=steps)
        images, mixed = edited.images.float(), dataclasses.replace(edited, images=None)
        source, mode = f"mix-content {a.name} --seg {seg.name}", "layout"
    latent = _save(models, out, images, mixed, save_latent=save_latent, force=force, source=source, steps=steps)
    return MixOutput(image=out, latent=latent, mode=mode)


def _check_outputs(models: Models, out: Path, save_latent: bool, force: bool) -> None:
    """Before any work: the outputs are writable and the model can mix."""
    check_writable(out, force)
    if save_latent:
        check_writable(latent_path(out.parent, out.stem), force)
    if not models.net.uses_seg:
        raise InputError("mixing needs the proposed variant (Seg Encoder + two hypernetworks); this model is the "
                         "baseline. Use --variant proposed or a bundle with inversion.safetensors.")


def _render(models: Models, mixed: Inversion) -> torch.Tensor:
    with torch.no_grad(), autocast(models.device, models.precision):
        return render(models.generator, mixed.ws, mixed.weight_deltas()).float()


def _save(models: Models, out: Path, images: torch.Tensor, mixed: Inversion, *, save_latent: bool, force: bool,
          source: str, steps: int) -> Path | None:
    """Write the PNG and, with `save_latent`, the mixed code; return the latent file's path (or None)."""
    lpath = None
    if save_latent:
        lpath = latent_path(out.parent, out.name[: -len(out.suffix)] if out.suffix else out.name)
        meta: dict[str, Any] = {"generator_sha256": models.generator_sha256, "source": source,
                                "resolution": models.resolution, "variant": "proposed", "steps": steps}
        write_latent(lpath, mixed.to("cpu"), meta, force=force, provenance={"command": source})
    save_png(out, to_uint8(images)[0], force=force)
    return lpath
