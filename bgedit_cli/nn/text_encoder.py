"""The paper's Text Encoder, and the text-editing networks of one model in one file (`BUNDLE/text.safetensors`,
kind `text`).

    T = TextEncoder(TextEncoderConfig(text_dim=512, num_ws=14, w_dim=512))
    out = T(text_emb, generator=torch.Generator().manual_seed(0))    # out.delta = out.mu + out.sigma * eps

    editor = build_text_editor(G.cfg, text_dim=clip.embed_dim, preset="demo")   # or load_network(path, "text")
    ws_edit = editor.edit(ws, text_emb, alpha=0.5, strength=1.0, generator=g)

`TextEncoder`: an equalized-lr MLP (lr multiplier 0.01, like the mapper, so both train with one optimizer) from
the CLIP text embedding to a Gaussian per W+ element: `mu` and `sigma = softplus(.)` [N, num_ws, w_dim], both
scaled by `output_scale` like the mapper's output; `delta2 = mu + sigma * eps` with eps ~ N(0, I) given or drawn
from an explicit `torch.Generator` (reparameterised, seedable). The sigma head starts at zero weights, so every
sigma starts at `sigma_init`.

`TextEditor(cfg)` holds `mapper` (`LevelsMapper`, delta1 = M(ws, text)) and `text_encoder` (None for the
paper's `--no-text-encoder` ablation: the file then holds no Text Encoder weights) and applies paper eq. 3 with
a global strength: `ws' = ws + strength * (alpha * delta1 + (1 - alpha) * delta2)`, or `ws + strength * delta1`
without a Text Encoder. Its config records the defaults (`alpha`, `strength`), the trained prompts, the neutral
prompt, and the CLIP and generator it was trained with (`clip_name`, `clip_sha256`, `generator_sha256`); the
buffer `prompt_embs` [num prompts, text_dim] keeps the trained prompts' CLIP embeddings, so an unseen prompt's
distance to them needs no re-encoding (`bgedit_cli.pipelines.text_edit.nearest_trained_prompts`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.errors import CheckpointError, ConfigError
from bgedit_cli.nn.mapper import LevelsMapper, MapperConfig, mapper_config
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.nn.stylegan2 import FullyConnected


@dataclasses.dataclass(frozen=True)
class TextEncoderConfig(Config):
    text_dim: int
    num_ws: int
    w_dim: int
    hidden_dim: int = 512
    num_layers: int = 2  # hidden layers (each equalized linear + lrelu)
    lr_mul: float = 0.01
    output_scale: float = 0.1
    sigma_init: float = 0.05  # sigma of every element at initialisation (after output_scale)

    def __post_init__(self) -> None:
        if min(self.text_dim, self.num_ws, self.w_dim, self.hidden_dim, self.num_layers) < 1:
            raise ConfigError("text encoder dims and num_layers must be positive.")
        if self.lr_mul <= 0 or self.output_scale <= 0 or self.sigma_init <= 0:
            raise ConfigError("lr_mul, output_scale and sigma_init must be positive.")


class TextDelta(NamedTuple):
    """Text Encoder output, each [N, num_ws, w_dim]: delta2 = mu + sigma * eps."""

    delta: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor


class TextEncoder(nn.Module):
    """CLIP text embedding [N, text_dim] -> (delta2, mu, sigma) [N, num_ws, w_dim] (see the module doc)."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = [cfg.text_dim] + [cfg.hidden_dim] * cfg.num_layers
        self.layers = nn.Sequential(*(FullyConnected(dims[i], dims[i + 1], activation=True, lr_mul=cfg.lr_mul)
                                      for i in range(cfg.num_layers)))
        out = cfg.num_ws * cfg.w_dim
        raw_sigma = cfg.sigma_init / cfg.output_scale
        self.mu = FullyConnected(cfg.hidden_dim, out, lr_mul=cfg.lr_mul)
        self.sigma = FullyConnected(cfg.hidden_dim, out, lr_mul=cfg.lr_mul,
                                    bias_init=raw_sigma + math.log(-math.expm1(-raw_sigma)))  # softplus^-1
        nn.init.zeros_(self.sigma.weight)

    def eps_shape(self, n: int) -> tuple[int, int, int]:
        return n, self.cfg.num_ws, self.cfg.w_dim

    def forward(self, text_emb: torch.Tensor, *, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None) -> TextDelta:
        """eps [N, num_ws, w_dim] or None: drawn from `generator` on the generator's device (CPU by default,
        so a seed gives the same eps on every device), then moved to text_emb's device."""
        cfg = self.cfg
        assert_shape(text_emb, [None, cfg.text_dim], "text_emb")
        shape = self.eps_shape(text_emb.shape[0])
        if eps is None:
            device = generator.device if generator is not None else torch.device("cpu")
            eps = torch.randn(shape, generator=generator, device=device)
        assert_shape(eps, list(shape), "eps")
        h = self.layers(text_emb)
        mu = (self.mu(h) * cfg.output_scale).reshape(shape)
        sigma = (F.softplus(self.sigma(h)) * cfg.output_scale).reshape(shape)
        return TextDelta(torch.addcmul(mu, sigma, eps.to(mu)), mu, sigma)


# ----------------------------------------------------------------------------------------------------------
# The text-editing model of a bundle.


TEXT_ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_dim=32, num_layers=2),
    "demo": dict(hidden_dim=256, num_layers=2),
    "paper-256": dict(hidden_dim=512, num_layers=2),
}


@dataclasses.dataclass(frozen=True)
class TextEditorConfig(Config):
    mapper: MapperConfig
    text_encoder: TextEncoderConfig | None = None
    alpha: float = 0.5
    strength: float = 1.0
    prompts: tuple[str, ...] = ()
    neutral_prompt: str = "a landscape"
    clip_name: str = ""
    clip_sha256: str = ""
    generator_sha256: str = ""
    preset: str = ""

    def __post_init__(self) -> None:
        te, m = self.text_encoder, self.mapper
        if te is not None and (te.text_dim, te.num_ws, te.w_dim) != (m.text_dim, m.num_ws, m.w_dim):
            raise ConfigError("the Text Encoder and the mapper must share text_dim, num_ws and w_dim.")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TextEditorConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}.")
        data = dict(data)
        for key, sub in (("mapper", MapperConfig), ("text_encoder", TextEncoderConfig)):
            if isinstance(data.get(key), dict):
                data[key] = sub.from_dict(data[key])
        return super().from_dict(data)


def text_editor_config(generator_cfg: Any, text_dim: int, preset: str, *, text_encoder: bool = True,
                       condition: str = "film", mapper_overrides: dict | None = None, **overrides: Any
                       ) -> TextEditorConfig:
    """Config for a generator (its num_ws, w_dim) and a CLIP (its embedding size) with the sizes of `preset`;
    `text_encoder=False` is the paper's no-Text-Encoder ablation. `overrides`: any TextEditorConfig field."""
    if preset not in TEXT_ENCODER_PRESETS:
        raise ConfigError(f"unknown text preset {preset!r}; choose one of {', '.join(TEXT_ENCODER_PRESETS)}.")
    g = generator_cfg
    mapper = mapper_config(g.num_ws, g.w_dim, text_dim, condition=condition, **(mapper_overrides or {}))
    te = TextEncoderConfig(text_dim=text_dim, num_ws=g.num_ws, w_dim=g.w_dim, **TEXT_ENCODER_PRESETS[preset]) \
        if text_encoder else None
    return TextEditorConfig(mapper=mapper, text_encoder=te, preset=preset, **overrides)


class TextEditor(nn.Module):
    """Mapper + optional Text Encoder (see the module doc)."""

    def __init__(self, cfg: TextEditorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapper = LevelsMapper(cfg.mapper)
        self.text_encoder = TextEncoder(cfg.text_encoder) if cfg.text_encoder is not None else None
        self.register_buffer("prompt_embs", torch.zeros(len(cfg.prompts), cfg.mapper.text_dim))

    @property
    def num_ws(self) -> int:
        return self.cfg.mapper.num_ws

    @property
    def w_dim(self) -> int:
        return self.cfg.mapper.w_dim

    @property
    def text_dim(self) -> int:
        return self.cfg.mapper.text_dim

    def deltas(self, ws: torch.Tensor, text_emb: torch.Tensor, *, generator: torch.Generator | None = None,
               eps: torch.Tensor | None = None) -> tuple[torch.Tensor, TextDelta | None]:
        """(delta1 [N, num_ws, w_dim], the Text Encoder's TextDelta or None)."""
        delta1 = self.mapper(ws, text_emb)
        if self.text_encoder is None:
            return delta1, None
        return delta1, self.text_encoder(text_emb, generator=generator, eps=eps)

    def edit(self, ws: torch.Tensor, text_emb: torch.Tensor, *, alpha: float | None = None,
             strength: float | None = None, generator: torch.Generator | None = None,
             eps: torch.Tensor | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim], text_emb [N, text_dim] -> edited ws (paper eq. 3 times `strength`);
        alpha and strength default to the config's."""
        alpha = self.cfg.alpha if alpha is None else alpha
        strength = self.cfg.strength if strength is None else strength
        delta1, t = self.deltas(ws, text_emb, generator=generator, eps=eps)
        delta = delta1 if t is None else alpha * delta1 + (1 - alpha) * t.delta
        return ws + strength * delta

    def set_prompts(self, prompt_embs: torch.Tensor, neutral_emb: torch.Tensor | None = None) -> None:
        """Store the trained prompts' embeddings [len(cfg.prompts), text_dim] (and the neutral prompt's, used
        by a film-delta mapper)."""
        assert_shape(prompt_embs, list(self.prompt_embs.shape), "prompt_embs")
        self.prompt_embs.copy_(prompt_embs)
        if neutral_emb is not None and self.cfg.mapper.condition == "film-delta":
            self.mapper.set_neutral(neutral_emb)

    def check_generator(self, generator: nn.Module, sha256: str | None = None) -> None:
        """CheckpointError unless the generator has this model's W+ shape (and, when both are known, its hash)."""
        g = generator.cfg
        if (g.num_ws, g.w_dim) != (self.num_ws, self.w_dim):
            raise CheckpointError(
                f"the text model was trained for a generator with {self.num_ws} ws of {self.w_dim} dims; this one "
                f"has {g.num_ws} of {g.w_dim}. Use the generator it was trained with.")
        if sha256 and self.cfg.generator_sha256 and sha256 != self.cfg.generator_sha256:
            raise CheckpointError(
                f"the text model was trained for generator {self.cfg.generator_sha256[:12]}..., but this generator "
                f"file is {sha256[:12]}... Use the matching generator.safetensors or retrain with "
                "`bgedit train text`.")

    def check_clip(self, encoder: nn.Module) -> None:
        """CheckpointError unless `encoder` (a ClipEncoder) is the CLIP this model was trained with."""
        if encoder.embed_dim != self.text_dim:
            raise CheckpointError(f"the text model needs a CLIP with {self.text_dim}-d embeddings; "
                                  f"{encoder.name or 'this CLIP'} has {encoder.embed_dim}.")
        if self.cfg.clip_sha256 and encoder.sha256 and encoder.sha256 != self.cfg.clip_sha256:
            trained = " ".join(filter(None, [self.cfg.clip_name, f"{self.cfg.clip_sha256[:12]}..."]))
            raise CheckpointError(
                f"the text model was trained with CLIP {trained}, but {encoder.name or 'this CLIP'} is "
                f"{encoder.sha256[:12]}...; use the CLIP it was trained with.")

    def num_parameters(self) -> dict[str, int]:
        parts = {"mapper": self.mapper, "text_encoder": self.text_encoder}
        out = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items() if m is not None}
        out["total"] = sum(out.values())
        return out


def build_text_editor(generator_cfg: Any, text_dim: int, preset: str, *, prompts: Sequence[str] = (),
                      **config_kwargs: Any) -> TextEditor:
    """A freshly initialised TextEditor (train mode, CPU); `config_kwargs` go to `text_editor_config`."""
    return TextEditor(text_editor_config(generator_cfg, text_dim, preset, prompts=tuple(prompts), **config_kwargs))
