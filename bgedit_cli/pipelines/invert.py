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

For the commands (and evaluation) on a bundle's `Models`: `load_item` reads an image and its map,
`run_inversion` inverts a batch (maps missing from it are predicted by `predict_seg`), `inversion_for` reads a
latent file or inverts an image. These read the input files they are given. `invert_files` inverts many files
in batches and writes each one's reconstruction and latent file (pipelines/batch.py); `invert_paths` is
`bgedit invert`: torchrun, the input list, the bundle's networks, then `invert_files`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from bgedit_cli.distributed import Dist, join, main_process_first
from bgedit_cli.errors import InputError
from bgedit_cli.io import load_image, load_seg, one_hot_seg, save_png, save_seg, to_uint8
from bgedit_cli.latent import Deltas, Inversion, is_latent_path, latent_path, load_latent, save_latent, sum_deltas
from bgedit_cli.nn.inversion import InversionNet
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.nn.stylegan2 import Generator, NoiseMode
from bgedit_cli.pipelines.batch import (BatchReport, Failure, Source, check_out_dir, gather_report, input_paths,
                                        run_batches, share_size, stage_progress)
from bgedit_cli.pipelines.models import Models, load_models
from bgedit_cli.runtime import autocast, autocast_for

Progress = Callable[[int, int], None]


def render(generator: Generator, ws: torch.Tensor, deltas: Mapping[str, torch.Tensor] | None = None, *,
           noise_mode: NoiseMode = "const") -> torch.Tensor:
    """G(ws) with weights theta * (1 + delta) per sample -> [N, 3, R, R] (in bf16 for a generator prepared for
    it, `runtime.autocast_for`)."""
    with autocast_for(ws.device, generator):
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


def hyper_conditions(net: InversionNet, x_img: torch.Tensor | None, x_seg: torch.Tensor | None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """For `refine_step(..., conds=)`: each hypernetwork's response to its fixed input (`HyperNetwork.condition`),
    computed once for all the refinement steps of an inversion."""
    def cond(hyper, x):
        return None if hyper is None or x is None else hyper.condition(x)

    return cond(net.hyper_img, x_img), cond(net.hyper_seg, x_seg)


def refine_step(generator: Generator, net: InversionNet, x_img: torch.Tensor | None, x_seg: torch.Tensor | None,
                ws: torch.Tensor, delta_img: Deltas | None, delta_seg: Deltas | None, y_prev: torch.Tensor, *,
                noise_mode: NoiseMode = "const", conds: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
                ) -> tuple[Deltas | None, Deltas | None, torch.Tensor]:
    """One HyperStyle iteration: `delta += H(cat(x, y_prev))` for each hypernetwork, then y = G(ws, deltas).

    A hypernetwork whose input is None (`x_img`, or `x_seg` / the baseline's missing `hyper_seg`) keeps its
    deltas unchanged (e.g. a layout edit refines only delta_seg). Incoming deltas and `y_prev` are detached.
    `conds`: `hyper_conditions(net, x_img, x_seg)` of these inputs, to skip their part of the hypernetworks'
    first convolution. Returns (delta_img, delta_seg, y).
    """
    y_prev = y_prev.detach()

    def update(hyper, x, old, cond):
        if hyper is None or x is None:
            return old
        step = hyper(torch.cat([x, y_prev.to(x.dtype)], dim=1)) if cond is None else hyper(y_prev, cond)
        return step if old is None else {k: old[k].detach() + v for k, v in step.items()}

    cond_img, cond_seg = conds or (None, None)
    delta_img = update(net.hyper_img, x_img, delta_img, cond_img)
    delta_seg = update(net.hyper_seg, x_seg, delta_seg, cond_seg)
    y = render(generator, ws, sum_deltas(delta_img, delta_seg), noise_mode=noise_mode)
    return delta_img, delta_seg, y


@torch.no_grad()
def invert(generator: Generator, net: InversionNet, img: torch.Tensor, seg: torch.Tensor | None = None, *,
           steps: int = 5, progress: Progress | None = None, return_steps: bool = False,
           noise_mode: NoiseMode = "const") -> Inversion:
    """Invert a batch: encoders, y_0 = G(ws), then `steps` refinement steps. `seg` (one-hot) is required by the
    proposed variant and ignored by the baseline. `progress(t, steps)` is called after y_t. Networks prepared
    for bf16 (`load_models(..., precision="bf16")`) run under bf16 autocast (`runtime.autocast_for`)."""
    if steps < 0:
        raise InputError(f"steps must be >= 0, got {steps}.")
    with autocast_for(img.device, generator, net):
        w, seg_latents, ws = initial_codes(generator, net, img, seg)
        x_seg = seg if net.uses_seg else None
        y = render(generator, ws, noise_mode=noise_mode)
        history = [y] if return_steps else None
        if progress is not None:
            progress(0, steps)
        delta_img = delta_seg = None
        conds = hyper_conditions(net, img, x_seg) if steps else None
        for t in range(1, steps + 1):
            delta_img, delta_seg, y = refine_step(generator, net, img, x_seg, ws, delta_img, delta_seg, y,
                                                  noise_mode=noise_mode, conds=conds)
            if history is not None:
                history.append(y)
            if progress is not None:
                progress(t, steps)
    return Inversion(ws=ws, w=w, seg_latents=seg_latents, delta_img=delta_img, delta_seg=delta_seg, images=y,
                     steps_images=history)


# ----------------------------------------------------------------------------------------------------------
# Inverting files with a bundle's models.


def predict_seg(models: Models, paths: list[Path]) -> torch.Tensor:
    """Class ids [N, R, R] at the generator's resolution, predicted by the bundle's segmenter."""
    seg_net = models.segmenter()
    img = torch.stack([load_image(p, seg_net.cfg.resolution) for p in paths]).to(models.device)
    ids = seg_net.predict(img)
    r = models.resolution
    if ids.shape[-1] != r:
        ids = F.interpolate(ids[:, None].float(), size=(r, r), mode="nearest")[:, 0].long()
    return ids


def load_item(models: Models, path: Path, seg_path: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(image [3, R, R], seg ids [R, R] or None). Errors are InputErrors naming the file."""
    img = load_image(path, models.resolution)
    seg = None
    if seg_path is not None and models.net.uses_seg:
        seg = torch.from_numpy(load_seg(seg_path, models.resolution).copy()).long()
    return img, seg


def run_inversion(models: Models, imgs: torch.Tensor, segs: list[torch.Tensor | None], paths: list[Path],
                  steps: int, progress: Progress | None = None) -> tuple[Inversion, torch.Tensor | None]:
    """Invert a batch `imgs` [N, 3, R, R] read from `paths` (segs: ids [R, R] or None per item, missing ones
    predicted). Returns (Inversion on the CPU, ids [N, R, R] or None for the baseline)."""
    ids = onehot = None
    if models.net.uses_seg:
        missing = [i for i, s in enumerate(segs) if s is None]
        if missing:
            predicted = predict_seg(models, [paths[i] for i in missing]).cpu()
            segs = list(segs)
            for i, s in zip(missing, predicted):
                segs[i] = s
        ids = torch.stack(segs)
        onehot = one_hot_seg(ids).to(models.device)
    with autocast(models.device, models.precision):
        inv = invert(models.generator, models.net, imgs.to(models.device), onehot, steps=steps, progress=progress)
    return inv.apply(lambda x: x.float().cpu()), ids


def inversion_for(models: Models, src: Path, seg: Path | None, steps: int) -> Inversion:
    """An Inversion (batch 1, on the models' device) from an image (inverted now) or a `.latent.safetensors`
    (checked against the generator)."""
    if is_latent_path(src):
        inv = load_latent(src, models.generator_sha256)
        if inv.seg_layers and inv.seg_layers != models.net.seg_layers:
            raise InputError(f"{src}: made with seg_layers {inv.seg_layers}, but the model uses "
                             f"{models.net.seg_layers}; invert the image again with this model.")
        return inv.to(models.device)
    img, ids = load_item(models, src, seg)
    inv, _ = run_inversion(models, img[None], [ids], [src], steps)
    return inv.to(models.device)


# ----------------------------------------------------------------------------------------------------------
# `bgedit invert`: many files into an output folder.


def latent_meta(models: Models, source: Path, steps: int) -> dict[str, Any]:
    """Header of the latent file of `source` inverted with `models`."""
    net = models.net
    return {"generator_sha256": models.generator_sha256, "source": Path(source).name,
            "resolution": models.resolution, "variant": net.variant, "steps": steps,
            "inversion_file": Path(getattr(net, "checkpoint_path", "")).name}


@dataclasses.dataclass
class _InvertJob:
    """pipelines/batch.py's steps for inverting files: name the outputs, read, invert a batch, write one item."""

    models: Models
    out: Path
    steps: int
    write_seg: bool
    overwrite: bool

    def outputs(self, source: Source) -> tuple[str, dict[str, Path]]:
        stem = source.path.stem
        outs = {"image": self.out / f"{stem}.png", "latent": latent_path(self.out, stem)}
        if self.write_seg:
            outs["seg"] = self.out / f"{stem}.seg.png"
        return stem, outs

    def prepare(self, source: Source, outs: dict[str, Path]) -> tuple[Path, torch.Tensor, torch.Tensor | None, dict]:
        img, ids = load_item(self.models, source.path, source.seg)
        return source.path, img, ids, outs

    def process(self, batch: list) -> tuple[Inversion, torch.Tensor | None, torch.Tensor]:
        inv, ids = run_inversion(self.models, torch.stack([b[1] for b in batch]), [b[2] for b in batch],
                                 [b[0] for b in batch], self.steps)
        return inv, ids, to_uint8(inv.images)

    def write(self, item: tuple, result: tuple, i: int) -> None:
        path, _, _, outs = item
        inv, ids, pixels = result
        save_latent(outs["latent"], inv.select(i), latent_meta(self.models, path, self.steps), force=self.overwrite,
                    provenance={"command": "bgedit invert"})
        save_png(outs["image"], pixels[i], force=self.overwrite)
        if "seg" in outs:
            save_seg(outs["seg"], ids[i].to(torch.uint8), force=self.overwrite)


def invert_files(models: Models, sources: Iterable[Source], out: Path, *, steps: int = 5, batch_size: int = 4,
                 save_seg: bool = False, force: bool = False, skip_existing: bool = False, shard: Dist | None = None,
                 progress: Callable[[int], None] | None = None,
                 on_failure: Callable[[Failure], None] | None = None) -> BatchReport:
    """Invert image files (each with its seg map, or predicted) in batches into OUT: `<stem>.png` (the
    reconstruction), `<stem>.latent.safetensors` and, with `save_seg` on the proposed variant, `<stem>.seg.png`
    (the map used). A bad input is reported in the returned report and the others are still done. `skip_existing`:
    inputs whose outputs all exist are skipped. Under torchrun (`shard`), this rank inverts its share of the
    inputs and the report returned is every rank's (pipelines/batch.py)."""
    check_out_dir(out, "--out")
    if models.net.uses_seg and isinstance(sources, Sequence) and any(s.seg is None for s in sources):
        models.segmenter()  # maps to predict: a missing segmenter is one error, before any work
    job = _InvertJob(models, Path(out), steps, save_seg and models.net.uses_seg, force or skip_existing)
    with autocast(models.device, models.precision):  # one context: bf16 weight copies are made once, not per batch
        report = run_batches(job, sources, batch_size=batch_size, force=force, skip_existing=skip_existing,
                             shard=shard, progress=progress, on_failure=on_failure)
    return gather_report(report, shard)


@dataclasses.dataclass(frozen=True)
class InvertRun:
    """What `invert_paths` did: every rank's report, this process under torchrun, and what inverted."""

    report: BatchReport
    shard: Dist
    variant: str
    generator_sha256: str


def invert_paths(images: list[Path] | None, out: Path, *, seg: list[Path] | None = None,
                 files_from: Path | None = None, model: Path | None = None, variant: str | None = None,
                 generator: Path | None = None, inversion: Path | None = None, segmenter: Path | None = None,
                 device: str = "auto", precision: str = "auto", steps: int = 5, batch_size: int = 4,
                 save_seg: bool = False, force: bool = False, skip_existing: bool = False,
                 progress: Callable[[str, int, int | None], None] | None = None,
                 on_failure: Callable[[Failure], None] | None = None) -> InvertRun:
    """`bgedit invert`: join torchrun's processes (one without it), read the inputs (`images`, with `seg[k]` the
    map of `images[k]`, then `files_from`'s list, streamed), load the bundle's networks on this process's device
    (rank 0 first, so that a CPU's `--precision auto` decision is measured once and read by every rank) and
    `invert_files` them. `progress(stage, done, total)`: this rank's share (total None for a streamed list), on
    rank 0 only; `on_failure(failure)` as each input fails, in one process only (under torchrun rank 0 has them
    all in the returned report)."""
    d, dev = join(device)
    paths = input_paths(images, files_from, d)
    with main_process_first(d):  # under torchrun: one `--precision auto` decision for all
        models = load_models(model, variant, str(dev), generator=generator, inversion=inversion, segmenter=segmenter,
                             precision=precision)
    sources: Iterable[Source] = (Source(path, seg[k] if k < len(seg or []) else None)
                                 for k, path in enumerate(paths))
    if files_from is None:
        sources = list(sources)
    total = None if files_from is not None else share_size(len(images or []), batch_size, d)
    report = invert_files(models, sources, out, steps=steps, batch_size=batch_size, save_seg=save_seg, force=force,
                          skip_existing=skip_existing, shard=d, progress=stage_progress(progress, "inverting", total, d),
                          on_failure=None if d.enabled else on_failure)
    return InvertRun(report, d, models.net.variant, models.generator_sha256)
