"""The text-editing losses (paper eq. 4): `L = lambda_clip * L_clip + lambda_sim * L_sim`.

- `clip_loss(encoder, images, text_emb)`: per image `1 - cos(CLIP_img(G(ws')), CLIP_text(t))` (StyleCLIP's
  CLIP loss, with the differentiable preprocessing of `bgedit_cli.nn.clip_model.preprocess`).
- `L_sim`: per image `1 - cos(f(edit), f(reconstruction))`, the reconstruction's features carrying no gradient.
  The paper's f is MoCo v2 (`bgedit_cli.losses.moco`); when its file is absent, `build_similarity_loss` falls
  back to the CLIP image tower and says so in the name it returns, so the training log records which was used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.losses.moco import build_moco
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.weights import MissingWeightsError

SimilarityLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def clip_loss(encoder: nn.Module, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """images [N, 3, H, W] in [-1, 1], text_emb [N, D] or [D] -> [N] (`encoder`: a ClipEncoder)."""
    img_f = encoder.encode_image(images)
    text_emb = F.normalize(text_emb.reshape(-1, img_f.shape[1]).to(img_f), dim=1)
    return 1 - (img_f * text_emb).sum(dim=1)


class ClipSimilarityLoss(nn.Module):
    """`L_sim` on CLIP image features: (edit, reconstruction) -> [N] `1 - cos`, the target detached."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, edit: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        assert_shape(recon, list(edit.shape), "recon")
        with torch.no_grad():
            target = self.encoder.encode_image(recon)
        return 1 - (self.encoder.encode_image(edit) * target).sum(dim=1)


def build_similarity_loss(encoder: nn.Module, moco: str | Path | None = None, *,
                          device: str | torch.device = "cpu") -> tuple[SimilarityLoss, str]:
    """(L_sim, name): MoCo v2 (`"moco-v2"`) from `moco` or `$BGEDIT_HOME/weights/`, else the CLIP image tower
    (`"clip-image (no MoCo v2 file)"`). A `moco` path that is given but missing is an error, not a fallback."""
    try:
        return build_moco(moco, device), "moco-v2"
    except MissingWeightsError:
        if moco is not None:
            raise
    return ClipSimilarityLoss(encoder), "clip-image (no MoCo v2 file)"
