"""StyleCLIP's levels mapper, conditioned on the prompt's CLIP text embedding.

    mapper = LevelsMapper(mapper_config(num_ws=14, w_dim=512, text_dim=512))
    delta1 = mapper(ws, text_emb)          # ws [N, num_ws, w_dim], text_emb [N, text_dim] -> [N, num_ws, w_dim]

As in StyleCLIP (Patashnik et al. 2021, `mapper/latent_mappers.py`), W+ rows are split into three groups --
coarse (rows < `medium_start`), medium (< `fine_start`) and fine (the rest) -- and each group has its own
mapper, shared by its rows: PixelNorm, then `num_layers` equalized-lr linear layers (lr multiplier 0.01) each
followed by leaky ReLU, output scaled by `output_scale` (StyleCLIP's 0.1). A group switched off contributes
zeros. Default split (`default_levels`): coarse 0..3, medium 4..7, fine 8..num_ws-1 (4x4-8x8, 16x16-32x32 and
64x64 up, for any resolution >= 64 px), clipped so that each group keeps at least one row when num_ws < 10.

Beyond StyleCLIP (one mapper per prompt), the mapper is text-conditioned so one model serves many prompts:
FiLM on every layer's pre-activation, `h * (1 + gamma(c)) + beta(c)` with (gamma, beta) an equalized-lr linear
map of the condition c, initialised to zero so an untrained mapper equals the unconditioned one (HairCLIP's
modulation). `condition="film"`: c is the text embedding; `condition="film-delta"`: c is the unit-norm
difference between it and a neutral prompt's embedding (DeltaEdit), kept in the buffer `neutral_emb` that the
trainer fills (`set_neutral`) and the checkpoint stores.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.errors import ConfigError
from bgedit_cli.nn.ops import assert_shape, bias_lrelu, normalize_2nd_moment
from bgedit_cli.nn.stylegan2 import FullyConnected

GROUPS = ("coarse", "medium", "fine")
CONDITIONS = ("film", "film-delta")


def default_levels(num_ws: int) -> tuple[int, int]:
    """(medium_start, fine_start): StyleCLIP's 4 and 8, clipped so every group keeps a row (num_ws >= 3)."""
    if num_ws < 3:
        raise ConfigError(f"the levels mapper needs at least 3 W+ rows, got {num_ws}.")
    return min(4, num_ws - 2), min(8, num_ws - 1)


@dataclasses.dataclass(frozen=True)
class MapperConfig(Config):
    w_dim: int
    num_ws: int
    text_dim: int
    medium_start: int = 4
    fine_start: int = 8
    groups: tuple[str, ...] = GROUPS  # which groups are on
    num_layers: int = 4
    lr_mul: float = 0.01
    output_scale: float = 0.1
    condition: str = "film"

    def __post_init__(self) -> None:
        if not 0 < self.medium_start < self.fine_start < self.num_ws:
            raise ConfigError(f"need 0 < medium_start < fine_start < num_ws, got {self.medium_start}, "
                              f"{self.fine_start}, {self.num_ws}.")
        unknown = set(self.groups) - set(GROUPS)
        if unknown or not self.groups:
            raise ConfigError(f"mapper groups must be a non-empty subset of {', '.join(GROUPS)}, got {self.groups}.")
        if self.condition not in CONDITIONS:
            raise ConfigError(f"mapper condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r}.")
        if min(self.w_dim, self.text_dim, self.num_layers) < 1 or self.lr_mul <= 0:
            raise ConfigError("w_dim, text_dim and num_layers must be positive and lr_mul > 0.")

    def rows(self, group: str) -> range:
        """W+ rows of `group`."""
        bounds = {"coarse": (0, self.medium_start), "medium": (self.medium_start, self.fine_start),
                  "fine": (self.fine_start, self.num_ws)}
        return range(*bounds[group])


def mapper_config(num_ws: int, w_dim: int, text_dim: int, **overrides) -> MapperConfig:
    """A config with the default level split for `num_ws` rows."""
    medium_start, fine_start = default_levels(num_ws)
    return MapperConfig(**{"w_dim": w_dim, "num_ws": num_ws, "text_dim": text_dim, "medium_start": medium_start,
                           "fine_start": fine_start, **overrides})


class GroupMapper(nn.Module):
    """PixelNorm + `num_layers` x (equalized linear, FiLM, lrelu) over the rows of one group."""

    def __init__(self, cfg: MapperConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FullyConnected(cfg.w_dim, cfg.w_dim, lr_mul=cfg.lr_mul)
                                    for _ in range(cfg.num_layers))
        self.films = nn.ModuleList(FullyConnected(cfg.text_dim, 2 * cfg.w_dim, lr_mul=cfg.lr_mul)
                                   for _ in range(cfg.num_layers))
        for film in self.films:  # zero: the mapper starts unconditioned
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """x [N, k, w_dim], cond [N, text_dim] or None (unconditioned) -> [N, k, w_dim]."""
        n, k, c = x.shape
        x = normalize_2nd_moment(x, dim=2)
        for fc, film in zip(self.layers, self.films):
            x = fc(x.reshape(n * k, c)).reshape(n, k, c)
            if cond is not None:
                gamma, beta = film(cond).unsqueeze(1).chunk(2, dim=2)  # (N, 1, w_dim) each
                x = torch.addcmul(beta, x, 1 + gamma)
            x = bias_lrelu(x, None)
        return x


class LevelsMapper(nn.Module):
    """Text-conditioned levels mapper: `forward(ws, text_emb) -> delta1` (see the module doc)."""

    def __init__(self, cfg: MapperConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.groups = nn.ModuleDict({g: GroupMapper(cfg) for g in GROUPS if g in cfg.groups})
        if cfg.condition == "film-delta":
            self.register_buffer("neutral_emb", torch.zeros(cfg.text_dim))

    def set_neutral(self, emb: torch.Tensor) -> None:
        """Store the neutral prompt's embedding [text_dim] (film-delta only)."""
        assert_shape(emb.reshape(-1), [self.cfg.text_dim], "neutral embedding")
        self.neutral_emb.copy_(emb.reshape(-1))

    def condition(self, text_emb: torch.Tensor) -> torch.Tensor:
        """The FiLM input for `text_emb` [N, text_dim]."""
        if self.cfg.condition == "film-delta":
            return F.normalize(text_emb - self.neutral_emb.to(text_emb.dtype), dim=1)
        return text_emb

    def forward(self, ws: torch.Tensor, text_emb: torch.Tensor | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim], text_emb [N, text_dim] (None: unconditioned) -> delta1 [N, num_ws, w_dim]."""
        cfg = self.cfg
        assert_shape(ws, [None, cfg.num_ws, cfg.w_dim], "ws")
        cond = None
        if text_emb is not None:
            assert_shape(text_emb, [ws.shape[0], cfg.text_dim], "text_emb")
            cond = self.condition(text_emb)
        parts = []
        for g in GROUPS:
            rows = cfg.rows(g)
            x = ws[:, rows.start:rows.stop]
            parts.append(self.groups[g](x, cond) if g in self.groups else torch.zeros_like(x))
        return torch.cat(parts, dim=1) * cfg.output_scale
