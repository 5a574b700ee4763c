"""A bundle's networks on one device, checked against each other: what inversion, mixing and text editing run on.

    models = load_models(bundle, None, "auto")           # generator + inversion (+ the segmenter on first use)
    text = load_text_model(models)                       # the text model and its CLIP, checked against both
    match = text.gate("snowy night")                     # refused (InputError) when far from the trained prompts
    g = load_generator(path_or_bundle, "cpu")           # a generator alone (`bgedit generate`, probes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from bgedit_cli.bundle import bundle_file, resolve_bundle
from bgedit_cli.checkpoint import file_sha256, load_network
from bgedit_cli.errors import InputError
from bgedit_cli.nn.clip_model import ClipEncoder, load_clip_encoder
from bgedit_cli.nn.inversion import VARIANTS, InversionNet
from bgedit_cli.nn.segmenter import Segmenter
from bgedit_cli.nn.stylegan2 import Generator
from bgedit_cli.nn.text_encoder import TextEditor
from bgedit_cli.pipelines.precision import generator_workload, inversion_workload
from bgedit_cli.runtime import cache_casts, resolve_device, resolve_precision

# A prompt whose CLIP embedding is further than this (cosine) from every trained prompt is refused.
MIN_PROMPT_COSINE = 0.8


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
    prec = resolve_precision(precision, dev, ("auto", "fp32", "bf16"), workload=inversion_workload(g, net))
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



@dataclass
class LoadedGenerator:
    """A generator alone on one device, with the precision it runs at."""

    generator: Generator
    path: Path
    device: torch.device
    precision: str = "fp32"


def load_generator(ckpt: Path | None, device: str = "cpu", precision: str = "fp32") -> LoadedGenerator:
    """A generator file, or a bundle folder's generator (None: the default bundle's). `device`, `precision`:
    --device and --precision values."""
    if ckpt is None or Path(ckpt).is_dir():
        ckpt = bundle_file(resolve_bundle(ckpt), "generator")
    dev = resolve_device(device)
    g = load_network(ckpt, "generator", device=dev).eval()
    prec = resolve_precision(precision, dev, ("auto", "fp32", "bf16"), workload=generator_workload(g))
    if prec == "bf16":
        cache_casts(g)
    return LoadedGenerator(generator=g, path=Path(ckpt), device=dev, precision=prec)


# ----------------------------------------------------------------------------------------------------------
# The text model.


@dataclass(frozen=True)
class PromptMatch:
    """A prompt, its CLIP embedding [1, D] and how close it is to the trained prompts (cosine, best first)."""

    prompt: str
    embedding: torch.Tensor
    nearest: float
    ranking: list[tuple[str, float]]


@dataclass
class TextModel:
    """A bundle's text model (latent mapper + Text Encoder) and the CLIP it was trained with, both checked."""

    editor: TextEditor
    clip: ClipEncoder
    path: Path

    def gate(self, prompt: str, *, force: bool = False) -> PromptMatch:
        """Encode `prompt`; a prompt far from every trained one (cosine < MIN_PROMPT_COSINE) is an InputError
        unless `force`, and so is an empty one."""
        if not prompt.strip():
            raise InputError("the prompt is empty; say what the scene should become, e.g. \"ocean\".")
        emb = self.clip.encode_text([prompt])
        nearest, ranking = nearest_trained_prompts(emb, self.editor.prompt_embs, self.editor.cfg.prompts)
        if nearest < MIN_PROMPT_COSINE and not force:
            trained = ", ".join(f'"{p}"' for p in self.editor.cfg.prompts)
            raise InputError(f'"{prompt}" is far from every prompt this text model was trained on (best cosine '
                             f"{nearest:.2f} < {MIN_PROMPT_COSINE}); trained prompts: {trained}. Use one of those, "
                             "retrain with `bgedit train text --prompts ...`, or pass --force-prompt.")
        return PromptMatch(prompt=prompt, embedding=emb, nearest=nearest, ranking=ranking)


def load_text_model(models: Models, *, text: Path | None = None, clip: Path | None = None) -> TextModel:
    """The text model (`text`, else the bundle's text.safetensors; missing: a CheckpointError saying how to train
    one) on the models' device, checked against their generator, and its CLIP (`load_clip`), checked against
    the text model."""
    if text is not None and not Path(text).is_file():
        raise InputError(f"--text {text}: no such file.")
    path = bundle_file(models.bundle, "text", override=text)
    editor = load_network(path, "text", models.device).eval()
    editor.check_generator(models.generator, models.generator_sha256)
    encoder = load_clip(models.bundle, clip, models.device)
    editor.check_clip(encoder)
    return TextModel(editor=editor, clip=encoder, path=path)


def nearest_trained_prompts(text_emb: torch.Tensor, trained_embs: torch.Tensor, names: Sequence[str]
                            ) -> tuple[float, list[tuple[str, float]]]:
    """Cosine similarity of one prompt embedding ([D] or [1, D]) to the trained prompts' [P, D]:
    (the highest cosine, [(name, cosine), ...] best first). With no trained prompts: (nan, [])."""
    if len(names) != trained_embs.shape[0]:
        raise ValueError(f"{len(names)} names for {trained_embs.shape[0]} embeddings")
    if not len(names):
        return float("nan"), []
    query = F.normalize(text_emb.reshape(1, -1).float(), dim=1)
    cos = (F.normalize(trained_embs.float().to(query.device), dim=1) @ query.t()).squeeze(1)
    ranking = sorted(zip(names, cos.tolist()), key=lambda item: -item[1])
    return ranking[0][1], ranking
