"""A bundle's networks on one device, checked against each other: what inversion and mixing run on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from bgedit_cli.bundle import bundle_file, resolve_bundle
from bgedit_cli.checkpoint import file_sha256, load_network
from bgedit_cli.errors import InputError
from bgedit_cli.nn.clip_model import ClipEncoder, load_clip_encoder
from bgedit_cli.nn.inversion import VARIANTS, InversionNet
from bgedit_cli.nn.segmenter import Segmenter
from bgedit_cli.nn.stylegan2 import Generator
from bgedit_cli.runtime import cache_casts, resolve_device, resolve_precision


@dataclass
class Models:
    """Networks of a bundle on one device; the segmenter is loaded on first use."""

    bundle: Path
    device: torch.device
    generator: Generator
    generator_sha256: str
    net: InversionNet
    segmenter_path: Path | None
    precision: str = "fp32"  # fp32 or bf16 (autocast), see bgedit_cli.runtime.resolve_precision
    _segmenter: Segmenter | None = field(default=None, repr=False)

    @property
    def resolution(self) -> int:
        return self.generator.cfg.img_resolution

    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            path = bundle_file(self.bundle, "segmenter", override=self.segmenter_path)
            self._segmenter = load_network(path, "segmenter", device=self.device)
            if self.precision == "bf16":
                cache_casts(self._segmenter)
        return self._segmenter


def load_models(model: Path | None, variant: str | None, device: str, *, generator: Path | None = None,
                inversion: Path | None = None, segmenter: Path | None = None, precision: str = "fp32") -> Models:
    """Generator + inversion networks (checked against each other). `variant` None: the --inversion file's, or
    the bundle's proposed model. `device`, `precision`: --device and --precision values."""
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
    prec = resolve_precision(precision, dev, ("auto", "fp32", "bf16"))
    if prec == "bf16":
        cache_casts(g, net)
    return Models(bundle=bundle, device=dev, generator=g, generator_sha256=sha, net=net, segmenter_path=segmenter,
                  precision=prec)


def load_clip(bundle: Path, clip: Path | None, device: torch.device) -> ClipEncoder:
    """The CLIP of text editing: `--clip FILE` (our clip.safetensors or OpenAI's .pt), else the bundle's
    clip.safetensors, else OpenAI's ViT-B-32.pt where it is looked up (a clear error naming it when missing)."""
    if clip is None and (Path(bundle) / "clip.safetensors").is_file():
        clip = Path(bundle) / "clip.safetensors"
    if clip is not None and not Path(clip).is_file():
        raise InputError(f"--clip {clip}: no such file.")
    return load_clip_encoder(clip, device)

