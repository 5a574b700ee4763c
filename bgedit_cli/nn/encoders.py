"""Encoders into the generator's W/W+ space: the StyleTransformer image encoder and the Seg Encoder.

Both are one architecture, `StyleTransformerEncoder` (Hu et al. 2022, "Style Transformer for Image Inversion
and Editing"), built twice with different inputs and outputs:

- backbone: IR-SE (ArcFace-style "improved residual" blocks with squeeze-excitation, as pSp/StyleTransformer's
  IR-SE-50): a stride-1 3x3 stem, then four stages whose first unit has stride 2. Input [N, C_in, R, R] gives
  stage outputs at R/2, R/4, R/8, R/16. The pyramid is c1 = stage 2 (R/4), c2 = stage 3 (R/8), c3 = stage 4
  (R/16) -- 64x64, 32x32, 16x16 at R = 256 (4x4, 8x8, 16x16 at 64 px);
- FPN: `p2 = up(c3) + lat2(c2)`, `p1 = up(p2) + lat1(c1)` (bilinear, align_corners), all at width `w_dim`;
- queries: `num_queries` learned z-like tokens [num_queries, z_dim] mapped by the (frozen) generator's
  mapping network, passed in at forward time and never stored here;
- three post-norm transformer decoder stages (self-attention among queries, cross-attention to one pyramid
  level, MLP), coarse to fine: c3, p2, p1;
- output: offsets from the generator's `w_avg`. `output="w"` averages the query outputs into one w
  [N, w_dim] (the paper reduces StyleTransformer's W+ output to a single w for HyperStyle);
  `output="wplus"` returns every query as its own row [N, num_queries, w_dim].

The image encoder has `in_channels=3`, `num_queries=num_ws` and `output="w"` (or "wplus");
the Seg Encoder has `in_channels=151` (one-hot ADE20K map), `num_queries=seg_layers`, `output="wplus"`:
its rows replace W+ indices 0..seg_layers-1. (The paper does not describe the Seg Encoder's layers; reusing
the StyleTransformer design gives one latent per replaced W+ row at a fraction of a pSp map2style head's size.)
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.errors import ConfigError
from bgedit_cli.nn.ops import assert_shape

NORMS = ("batch", "group")
OUTPUTS = ("w", "wplus")


@dataclasses.dataclass(frozen=True)
class EncoderConfig(Config):
    """A StyleTransformer encoder. `stage_channels[i]`/`stage_units[i]`: width and number of IR blocks of
    stage i (each stage halves the resolution). `z_dim`/`w_dim`: the generator's."""

    in_channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    num_queries: int = 14
    output: str = "w"
    stem_channels: int = 64
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    stage_units: tuple[int, ...] = (3, 4, 14, 3)
    squeeze_excite: bool = True
    norm: str = "batch"
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if len(self.stage_channels) != 4 or len(self.stage_units) != 4:
            raise ConfigError("stage_channels and stage_units must list 4 stages (pyramid levels are stages 2-4).")
        if min(self.stage_channels + self.stage_units) < 1 or min(self.in_channels, self.num_queries) < 1:
            raise ConfigError("encoder widths, unit counts, in_channels and num_queries must be positive.")
        if self.output not in OUTPUTS:
            raise ConfigError(f"encoder output must be one of {', '.join(OUTPUTS)}, got {self.output!r}.")
        if self.norm not in NORMS:
            raise ConfigError(f"encoder norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if self.w_dim % self.num_heads:
            raise ConfigError(f"w_dim {self.w_dim} must be divisible by num_heads {self.num_heads}.")


def make_norm(kind: str, channels: int) -> nn.Module:
    """BatchNorm2d, or GroupNorm (batch-size independent, for small batches) with up to 32 groups of at least
    4 channels (so it also works on 1x1 maps)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = math.gcd(channels, 32)
    while groups > 1 and channels // groups < 4:
        groups //= 2
    return nn.GroupNorm(groups, channels)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=[2, 3], keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class IRBlock(nn.Module):
    """IR(-SE) bottleneck: norm -> conv3x3 -> PReLU -> conv3x3(stride) -> norm (-> SE), plus a shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, se: bool) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            make_norm(norm, in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            make_norm(norm, out_ch),
            SqueezeExcite(out_ch) if se else nn.Identity(),
        )
        if in_ch == out_ch:
            self.shortcut = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class TransformerStage(nn.Module):
    """Post-norm decoder layer (DETR/StyleTransformer): self-attn, cross-attn to `memory`, MLP."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """q: [N, Q, D]; memory: [N, HW, D] -> [N, Q, D]."""
        q = self.norm1(q + self.drop(self.self_attn(q, q, q, need_weights=False)[0]))
        q = self.norm2(q + self.drop(self.cross_attn(q, memory, memory, need_weights=False)[0]))
        return self.norm3(q + self.drop(self.mlp(q)))


class StyleTransformerEncoder(nn.Module):
    """`forward(x [N, in_channels, R, R], generator) -> w [N, w_dim]` or `ws [N, num_queries, w_dim]`.

    The generator is used for its mapping network (query initialisation) and `w_avg`; pass it frozen.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, d = cfg.stage_channels, cfg.w_dim
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, cfg.stem_channels, 3, 1, 1, bias=False),
                                  make_norm(cfg.norm, cfg.stem_channels), nn.PReLU(cfg.stem_channels))
        stages, prev = [], cfg.stem_channels
        for width, units in zip(ch, cfg.stage_units):
            blocks = [IRBlock(prev, width, 2, cfg.norm, cfg.squeeze_excite)]
            blocks += [IRBlock(width, width, 1, cfg.norm, cfg.squeeze_excite) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            prev = width
        self.stages = nn.ModuleList(stages)
        self.lat3 = nn.Conv2d(ch[3], d, 1) if ch[3] != d else nn.Identity()
        self.lat2 = nn.Conv2d(ch[2], d, 1)
        self.lat1 = nn.Conv2d(ch[1], d, 1)
        self.z = nn.Parameter(torch.randn(cfg.num_queries, cfg.z_dim))
        self.coarse = TransformerStage(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
        self.medium = TransformerStage(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
        self.fine = TransformerStage(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout)

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (c3 at R/16, p2 at R/8, p1 at R/4), each [N, w_dim, h, w]."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        c3 = self.lat3(feats[3])
        p2 = F.interpolate(c3, size=feats[2].shape[-2:], mode="bilinear", align_corners=True) + self.lat2(feats[2])
        p1 = F.interpolate(p2, size=feats[1].shape[-2:], mode="bilinear", align_corners=True) + self.lat1(feats[1])
        return c3, p2, p1

    def forward(self, x: torch.Tensor, generator: nn.Module) -> torch.Tensor:
        cfg = self.cfg
        assert_shape(x, [None, cfg.in_channels, None, None], "encoder input")
        n = x.shape[0]
        c3, p2, p1 = self.pyramid(x)
        q = generator.mapping(self.z).unsqueeze(0).expand(n, -1, -1)  # (N, Q, D)
        q = self.coarse(q, c3.flatten(2).transpose(1, 2))  # memory (N, HW, D)
        q = self.medium(q, p2.flatten(2).transpose(1, 2))
        q = self.fine(q, p1.flatten(2).transpose(1, 2))
        if cfg.output == "w":
            q = q.mean(dim=1)  # (N, D)
        return q + generator.w_avg.to(q.dtype)
