"""Text editing of inverted images: edit the W+ code with the text model, render with the kept weight deltas.

    emb = clip.encode_text(["a lake at night"])                       # [1, D] (one prompt for all) or [N, D]
    images = text_edit(G, inversion, editor, emb, alpha=0.5, strength=1.0, seed=0, samples=4)   # [N * 4, 3, R, R]
    max_cos, ranking = nearest_trained_prompts(emb, editor.prompt_embs, editor.cfg.prompts)

Sample k of every image uses the same eps_k, drawn from `torch.Generator().manual_seed(seed)` on the CPU, so a
result depends on (image, prompt, seed, k) only -- not on the batch it was computed in or on the device.
Output order: image n's samples are rows n * K .. n * K + K - 1. The K samples are one batched generator call
(the inversion's deltas repeated per sample); callers chunk large batches.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from bgedit_cli.errors import InputError
from bgedit_cli.nn.stylegan2 import Generator, NoiseMode
from bgedit_cli.nn.text_encoder import TextEditor
from bgedit_cli.pipelines.invert import Inversion, render


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
