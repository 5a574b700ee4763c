"""`bgedit invert IMG... --out DIR`: image(s) -> reconstruction PNG + `<stem>.latent.safetensors` per image.

Also home of the model loading shared by `mix-style` / `mix-content` (`load_models`, `inversions_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from bgedit_cli.cli.common import (BatchOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, cli_command, err_console,
                                   make_progress, print_json)

ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="model bundle folder (default: "
                                                  "$BGEDIT_HOME/models/default)")]
StepsOpt = Annotated[int, typer.Option("--steps", min=0, help="HyperStyle refinement steps")]
GeneratorOpt = Annotated[Optional[Path], typer.Option("--generator", help="generator file instead of the bundle's")]
InversionOpt = Annotated[Optional[Path], typer.Option("--inversion", help="inversion file instead of the bundle's")]
SegmenterOpt = Annotated[Optional[Path], typer.Option("--segmenter", help="segmenter file instead of the bundle's")]


@dataclass
class Models:
    """Networks of a bundle on one device; the segmenter is loaded on first use."""

    bundle: Path
    device: Any
    generator: Any
    generator_sha256: str
    net: Any
    segmenter_path: Optional[Path]
    _segmenter: Any = field(default=None, repr=False)

    @property
    def resolution(self) -> int:
        return self.generator.cfg.img_resolution

    def segmenter(self):
        from bgedit_cli.bundle import bundle_file
        from bgedit_cli.checkpoint import load_network

        if self._segmenter is None:
            path = bundle_file(self.bundle, "segmenter", override=self.segmenter_path)
            self._segmenter = load_network(path, "segmenter", device=self.device)
        return self._segmenter


def load_models(model: Optional[Path], variant: Optional[str], device: str, *, generator: Optional[Path] = None,
                inversion: Optional[Path] = None, segmenter: Optional[Path] = None) -> Models:
    """Generator + inversion networks (checked against each other). `variant` None: the --inversion file's, or
    the bundle's proposed model."""
    from bgedit_cli.bundle import bundle_file, resolve_bundle
    from bgedit_cli.checkpoint import file_sha256, load_network
    from bgedit_cli.cli.common import resolve_device
    from bgedit_cli.errors import InputError
    from bgedit_cli.nn.inversion import VARIANTS

    if variant is not None and variant not in VARIANTS:
        raise InputError(f"--variant {variant}: expected one of {', '.join(VARIANTS)}.")
    dev = resolve_device(device)
    bundle = resolve_bundle(model)
    g_path = bundle_file(bundle, "generator", override=generator)
    inv_name = "inversion-baseline" if variant == "baseline" else "inversion"
    inv_path = bundle_file(bundle, inv_name, override=inversion)
    g = load_network(g_path, "generator", device=dev)
    net = load_network(inv_path, "inversion", device=dev)
    if variant is not None and net.variant != variant:
        raise InputError(f"{inv_path}: holds the {net.variant} variant, but --variant {variant} was asked for.")
    sha = file_sha256(g_path)
    net.check_generator(g, sha)
    return Models(bundle=bundle, device=dev, generator=g, generator_sha256=sha, net=net, segmenter_path=segmenter)


def predict_seg(models: Models, paths: list[Path]) -> "torch.Tensor":  # noqa: F821
    """Class ids [N, R, R] at the generator's resolution, predicted by the bundle's segmenter."""
    import torch
    import torch.nn.functional as F

    from bgedit_cli.io import load_image

    seg_net = models.segmenter()
    img = torch.stack([load_image(p, seg_net.cfg.resolution) for p in paths]).to(models.device)
    ids = seg_net.predict(img)
    r = models.resolution
    if ids.shape[-1] != r:
        ids = F.interpolate(ids[:, None].float(), size=(r, r), mode="nearest")[:, 0].long()
    return ids


def load_item(models: Models, path: Path, seg_path: Optional[Path]) -> tuple["torch.Tensor", Any]:  # noqa: F821
    """(image [3, R, R], seg ids [R, R] or None). Errors are InputErrors naming the file."""
    import torch

    from bgedit_cli.io import load_image, load_seg

    img = load_image(path, models.resolution)
    seg = None
    if seg_path is not None and models.net.uses_seg:
        seg = torch.from_numpy(load_seg(seg_path, models.resolution).copy()).long()
    return img, seg


def run_inversion(models: Models, imgs: "torch.Tensor", segs: list, paths: list[Path], steps: int,  # noqa: F821
                  progress: Optional[Callable[[int, int], None]] = None):
    """Invert a batch (segs: ids [R, R] or None per item, missing ones predicted). Returns (Inversion, ids)."""
    import torch

    from bgedit_cli.io import one_hot_seg
    from bgedit_cli.pipelines.invert import invert

    dev = models.device
    ids = onehot = None
    if models.net.uses_seg:
        missing = [i for i, s in enumerate(segs) if s is None]
        if missing:
            predicted = predict_seg(models, [paths[i] for i in missing]).cpu()
            segs = list(segs)
            for i, s in zip(missing, predicted):
                segs[i] = s
        ids = torch.stack(segs)
        onehot = one_hot_seg(ids).to(dev)
    inv = invert(models.generator, models.net, imgs.to(dev), onehot, steps=steps, progress=progress)
    return inv.to("cpu"), ids


def inversion_for(models: Models, src: Path, seg: Optional[Path], steps: int):
    """An Inversion (batch 1) from an image (inverted now) or a `.latent.safetensors` (checked against G)."""
    import torch

    from bgedit_cli.latent import is_latent_path, load_latent

    if is_latent_path(src):
        inv = load_latent(src, models.generator_sha256)
        if inv.seg_layers and inv.seg_layers != models.net.seg_layers:
            from bgedit_cli.errors import InputError

            raise InputError(f"{src}: made with seg_layers {inv.seg_layers}, but the model uses "
                             f"{models.net.seg_layers}; invert the image again with this model.")
        return inv.to(models.device)
    img, ids = load_item(models, src, seg)
    inv, _ = run_inversion(models, img[None], [ids], [src], steps)
    return inv.to(models.device)


def latent_meta(models: Models, source: Path, steps: int) -> dict:
    net = models.net
    return {"generator_sha256": models.generator_sha256, "source": Path(source).name,
            "resolution": models.resolution, "variant": net.variant, "steps": steps,
            "inversion_file": Path(getattr(net, "checkpoint_path", "")).name}


@cli_command
def invert(
    images: Annotated[list[Path], typer.Argument(help="images (PNG/JPEG/WebP, any size; centre-cropped)")],
    out: Annotated[Path, typer.Option("--out", help="output folder: <stem>.png, <stem>.latent.safetensors")],
    seg: Annotated[Optional[list[Path]], typer.Option("--seg", help="seg map per image, in the same order "
                                                      "(default: predicted by the bundle's segmenter)")] = None,
    model: ModelOpt = None,
    steps: StepsOpt = 5,
    batch_size: BatchOpt = 4,
    variant: Annotated[Optional[str], typer.Option("--variant", help="proposed (default) or baseline")] = None,
    save_seg: Annotated[bool, typer.Option("--save-seg", help="also write the map used as <stem>.seg.png")] = False,
    generator: GeneratorOpt = None,
    inversion: InversionOpt = None,
    segmenter: SegmenterOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Invert images into the generator: reconstruction and latent file per image."""
    import sys

    import torch

    from bgedit_cli.checkpoint import check_writable
    from bgedit_cli.errors import BgeditError, InputError
    from bgedit_cli.io import save_png, save_seg, to_uint8
    from bgedit_cli.latent import latent_path, save_latent

    if seg and len(seg) != len(images):
        raise typer.BadParameter(f"got {len(seg)} map(s) for {len(images)} image(s); give one per image, in order.",
                                 param_hint="--seg")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the outputs.")
    models = load_models(model, variant, device, generator=generator, inversion=inversion, segmenter=segmenter)
    write_seg = save_seg and models.net.uses_seg
    if models.net.uses_seg and not seg:
        models.segmenter()  # no maps given: a missing segmenter is one error, before any work
    failed: list[dict] = []
    done: list[dict] = []

    def fail(path: Path, exc: BaseException) -> None:
        message = " ".join(str(exc).split())
        failed.append({"input": str(path), "error": message})
        print(f"Error: {message}", file=sys.stderr)

    # Check outputs and read inputs; a bad item is reported and skipped.
    items, seen = [], set()
    for k, path in enumerate(images):
        stem = path.stem
        outs = {"image": out / f"{stem}.png", "latent": latent_path(out, stem)}
        if write_seg:
            outs["seg"] = out / f"{stem}.seg.png"
        try:
            if stem in seen:
                raise InputError(f"{path}: another input has the same name stem '{stem}'; its outputs would "
                                     "collide. Rename one of them.")
            seen.add(stem)
            for p in outs.values():
                check_writable(p, force)
            img, ids = load_item(models, path, seg[k] if seg else None)
        except BgeditError as exc:
            fail(path, exc)
            continue
        items.append((path, img, ids, outs))

    # Invert in batches and write.
    with make_progress(quiet or len(items) <= 1) as bar:
        task = bar.add_task("inverting", total=len(items))
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            try:
                inv, ids = run_inversion(models, torch.stack([c[1] for c in chunk]), [c[2] for c in chunk],
                                         [c[0] for c in chunk], steps)
            except BgeditError as exc:
                for c in chunk:
                    fail(c[0], exc)
                bar.advance(task, len(chunk))
                continue
            pixels = to_uint8(inv.images)
            for i, (path, _, _, outs) in enumerate(chunk):
                try:
                    save_latent(outs["latent"], inv.select(i), latent_meta(models, path, steps), force=force,
                                provenance={"command": "bgedit invert"})
                    save_png(outs["image"], pixels[i], force=force)
                    if "seg" in outs:
                        save_seg(outs["seg"], ids[i].to(torch.uint8), force=force)
                except BgeditError as exc:
                    fail(path, exc)
                    continue
                done.append({"input": str(path), **{k: str(v) for k, v in outs.items()}})
            bar.advance(task, len(chunk))

    if json_out:
        print_json({"out": str(out), "variant": models.net.variant, "steps": steps, "outputs": done,
                    "failed": failed, "generator_sha256": models.generator_sha256})
    elif not quiet and not failed:  # with failures, stderr holds just their `Error:` lines
        err_console.print(f"Inverted {len(done)} image(s) into {out}.")
    if failed:
        raise typer.Exit(1)

