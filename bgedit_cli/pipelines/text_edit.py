"""Text editing of inverted images: edit the W+ code with the text model, render with the kept weight deltas.

    emb = clip.encode_text(["a lake at night"])                       # [1, D] (one prompt for all) or [N, D]
    images = text_edit(G, inversion, editor, emb, alpha=0.5, strength=1.0, seed=0, samples=4)   # [N * 4, 3, R, R]
    report = edit_files(models, text_model, text_model.gate("a lake at night"), sources, out_dir=Path("edits"))

Sample k of every image uses the same eps_k, drawn from `torch.Generator().manual_seed(seed)` on the CPU, so a
result depends on (image, prompt, seed, k) only -- not on the batch it was computed in or on the device.
Output order: image n's samples are rows n * K .. n * K + K - 1. The K samples are one batched generator call
(the inversion's deltas repeated per sample); callers chunk large batches. `edit_files` (`bgedit text-edit`)
edits image or latent files in batches and writes each edit as its batch is done (pipelines/batch.py); the text
model and the prompt gate are pipelines/models.py's `load_text_model` and `TextModel.gate`. `edit_paths` is
`bgedit text-edit`: torchrun, the input list, the networks, the prompt gate, then `edit_files`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Iterable

import torch

from bgedit_cli.distributed import Dist, join, main_process_first
from bgedit_cli.errors import InputError
from bgedit_cli.io import save_png, to_uint8
from bgedit_cli.latent import SUFFIX as LATENT_SUFFIX
from bgedit_cli.nn.stylegan2 import Generator, NoiseMode
from bgedit_cli.nn.text_encoder import TextEditor
from bgedit_cli.pipelines.batch import (BatchReport, Failure, Source, check_out_dir, gather_report, input_paths,
                                        run_batches, share_size, stage_progress)
from bgedit_cli.pipelines.invert import Inversion, inversion_for, render
from bgedit_cli.pipelines.models import Models, PromptMatch, TextModel, load_models, load_text_model
from bgedit_cli.pipelines.models import nearest_trained_prompts  # noqa: F401 (its home before models.py)
from bgedit_cli.runtime import autocast


def sample_eps(editor: TextEditor, samples: int, seed: int) -> torch.Tensor:
    """eps_0 .. eps_{K-1} [K, num_ws, w_dim] from a CPU generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((samples, editor.num_ws, editor.w_dim), generator=g)


def edit_codes(editor: TextEditor, ws: torch.Tensor, text_emb: torch.Tensor, *, alpha: float | None = None,
               strength: float | None = None, seed: int = 0, samples: int = 1) -> torch.Tensor:
    """ws [N, num_ws, w_dim], text_emb [D], [1, D] or [N, D] -> edited codes [N * K, num_ws, w_dim]."""
    n = ws.shape[0]
    if samples < 1:
        raise InputError(f"--samples {samples}: expected 1 or more.")
    if samples > 1 and editor.text_encoder is None:
        raise InputError("this text model has no Text Encoder (trained with --no-text-encoder), so every sample "
                         "would be the same; use --samples 1.")
    if tuple(ws.shape[1:]) != (editor.num_ws, editor.w_dim):
        raise InputError(f"the text model edits codes of {editor.num_ws} x {editor.w_dim}, got "
                         f"{list(ws.shape[1:])}; use the generator it was trained with.")
    text_emb = text_emb.reshape(-1, editor.text_dim).to(ws)
    if text_emb.shape[0] not in (1, n):
        raise InputError(f"give one prompt embedding or one per image ({n}), got {text_emb.shape[0]}.")
    text_emb = text_emb.expand(n, -1).repeat_interleave(samples, dim=0)  # (N*K, D)
    ws = ws.repeat_interleave(samples, dim=0)  # (N*K, num_ws, w_dim)
    eps = None
    if editor.text_encoder is not None:
        eps = sample_eps(editor, samples, seed).repeat(n, 1, 1)  # row n*K + k holds eps_k
    return editor.edit(ws, text_emb, alpha=alpha, strength=strength, eps=eps)


@torch.no_grad()
def text_edit(generator: Generator, inversion: Inversion, editor: TextEditor, text_emb: torch.Tensor, *,
              alpha: float | None = None, strength: float | None = None, seed: int = 0, samples: int = 1,
              noise_mode: NoiseMode = "const") -> torch.Tensor:
    """Edited images [N * K, 3, R, R] of the N inverted images (their weight deltas kept); alpha and strength
    default to the text model's config."""
    ws = edit_codes(editor, inversion.ws, text_emb, alpha=alpha, strength=strength, seed=seed, samples=samples)
    deltas = inversion.weight_deltas()
    if deltas is not None and samples > 1:
        deltas = {k: v.repeat_interleave(samples, dim=0) for k, v in deltas.items()}  # (N*K, O, I, k, k)
    return render(generator, ws, deltas, noise_mode=noise_mode)


# ----------------------------------------------------------------------------------------------------------
# `bgedit text-edit`: many files.


def prompt_slug(prompt: str) -> str:
    """`"a snowy night!"` -> `a-snowy-night` (for output names)."""
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "prompt"


@dataclasses.dataclass
class _EditJob:
    """pipelines/batch.py's steps for text edits: name the outputs, invert (or read) a source, edit a batch, write
    one item."""

    models: Models
    text: TextModel
    match: PromptMatch
    outputs_of: Callable[[str], list[Path]]  # stem -> the K output paths
    steps: int
    settings: dict
    overwrite: bool

    def outputs(self, source: Source) -> tuple[str, dict[str, list[Path]]]:
        name = source.path.name
        stem = name.removesuffix(LATENT_SUFFIX) if name.endswith(LATENT_SUFFIX) else source.path.stem
        return stem, {"outputs": self.outputs_of(stem)}

    def prepare(self, source: Source, outs: dict[str, list[Path]]) -> tuple[Inversion, list[Path]]:
        inv = inversion_for(self.models, source.path, None, self.steps)
        return dataclasses.replace(inv, images=None, steps_images=None, meta=None), outs["outputs"]

    def process(self, batch: list[tuple[Inversion, list[Path]]]) -> torch.Tensor:
        inv = Inversion.cat([b[0] for b in batch])
        with torch.no_grad(), autocast(self.models.device, self.models.precision):
            images = text_edit(self.models.generator, inv, self.text.editor, self.match.embedding,
                               **self.settings).float()
        return to_uint8(images)

    def write(self, item: tuple[Inversion, list[Path]], pixels: torch.Tensor, i: int) -> None:
        outs = item[1]
        for k, path in enumerate(outs):
            save_png(path, pixels[i * len(outs) + k], force=self.overwrite)


def edit_files(models: Models, text: TextModel, match: PromptMatch, sources: Iterable[Source], *,
               out: Path | None = None, out_dir: Path | None = None, alpha: float | None = None,
               strength: float = 1.0, seed: int = 0, samples: int = 1, steps: int = 5, batch_size: int = 8,
               force: bool = False, skip_existing: bool = False, shard: Dist | None = None,
               progress: Callable[[int], None] | None = None,
               on_failure: Callable[[Failure], None] | None = None) -> BatchReport:
    """Edit image files (inverted with `steps`) or latent files toward `match`'s prompt, `samples` edits each
    (K samples of a source in one generator call), written to `out` (one source, one sample) or to
    `out_dir/<stem>.<prompt>.png` (`<stem>.<prompt>.<k>.png` for several samples). `skip_existing`: sources whose
    edits all exist are skipped. Under torchrun (`shard`), this rank edits its share of the sources and the report
    returned is every rank's (pipelines/batch.py)."""
    if (out is None) == (out_dir is None):
        raise InputError("give --out FILE (one source, one sample) or --out-dir DIR.")
    if out_dir is not None:
        check_out_dir(out_dir, "--out-dir")
    slug = prompt_slug(match.prompt)

    def outputs(stem: str) -> list[Path]:
        if out is not None:
            return [out]
        return [out_dir / (f"{stem}.{slug}.png" if samples == 1 else f"{stem}.{slug}.{k}.png")
                for k in range(samples)]

    settings = {"alpha": alpha, "strength": strength, "seed": seed, "samples": samples}
    job = _EditJob(models, text, match, outputs, steps, settings, force or skip_existing)
    report = run_batches(job, sources, batch_size=batch_size, force=force, skip_existing=skip_existing, shard=shard,
                         progress=progress, on_failure=on_failure)
    return gather_report(report, shard)


@dataclasses.dataclass(frozen=True)
class EditRun:
    """What `edit_paths` did: every rank's report, this process under torchrun, the prompt's match to the trained
    prompts, the alpha used and whether the text model has a Text Encoder."""

    report: BatchReport
    shard: Dist
    match: PromptMatch
    alpha: float
    text_encoder: bool


def edit_paths(sources: list[Path] | None, prompt: str, *, out: Path | None = None, out_dir: Path | None = None,
               files_from: Path | None = None, model: Path | None = None, text: Path | None = None,
               clip: Path | None = None, generator: Path | None = None, inversion: Path | None = None,
               segmenter: Path | None = None, device: str = "auto", precision: str = "auto",
               alpha: float | None = None, strength: float = 1.0, seed: int = 0, samples: int = 1,
               force_prompt: bool = False, steps: int = 5, batch_size: int = 8, force: bool = False,
               skip_existing: bool = False, progress: Callable[[str, int, int | None], None] | None = None,
               on_failure: Callable[[Failure], None] | None = None) -> EditRun:
    """`bgedit text-edit`: join torchrun's processes (one without it), read the inputs (`sources`, then
    `files_from`'s list, streamed), load the bundle's networks on this process's device (rank 0 first: one
    `--precision auto` decision for all) and the text model, gate `prompt` (`force_prompt`: edit even far from
    the trained prompts) and `edit_files` them. `progress` and `on_failure`: as `invert.invert_paths`."""
    d, dev = join(device)
    paths = input_paths(sources, files_from, d)
    with main_process_first(d):  # under torchrun: one `--precision auto` decision for all
        models = load_models(model, None, str(dev), generator=generator, inversion=inversion, segmenter=segmenter,
                             precision=precision)
    text_model = load_text_model(models, text=text, clip=clip)
    match = text_model.gate(prompt, force=force_prompt)
    total = None if files_from is not None else share_size(len(sources or []), batch_size, d)
    report = edit_files(models, text_model, match, (Source(p) for p in paths), out=out, out_dir=out_dir, alpha=alpha,
                        strength=strength, seed=seed, samples=samples, steps=steps, batch_size=batch_size,
                        force=force, skip_existing=skip_existing, shard=d,
                        progress=stage_progress(progress, "editing", total, d),
                        on_failure=None if d.enabled else on_failure)
    editor = text_model.editor
    return EditRun(report, d, match, editor.cfg.alpha if alpha is None else alpha, editor.text_encoder is not None)
