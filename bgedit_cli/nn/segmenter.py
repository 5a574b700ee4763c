"""Semantic segmenter: image -> 151-class ADE20K logits (0 = other, 1..150 = objects), a compact UNet.

Shapes, for a config with `resolution` R, `channels = (c_0, ..., c_L)` and `stem_stride` s:
- input `img: [N, 3, H, W]` in [-1, 1]; H and W multiples of `s * 2**L` (normally H = W = R);
- encoder level i runs at H / (s * 2**i) with c_i channels (level 0 after a stride-s stem, levels i > 0 after
  a stride-2 conv); each level holds `num_convs` conv3x3 -> norm -> ReLU blocks;
- with `global_context`, the deepest map gets its spatial mean concatenated at every position, then a
  conv1x1 -> norm -> ReLU back to c_L channels (image-level context, as in PSPNet / DeepLab's image pooling);
- decoder: from the deepest level up, bilinear x2 upsampling, concatenation with the encoder skip, then
  `num_convs` blocks at that level's width;
- head: conv1x1 to `num_classes` at H / s, bilinearly upsampled to H x W when s > 1;
- output `logits: [N, num_classes, H, W]`; `predict(img) -> [N, H, W]` int64 class ids.

Class 0 ("other") is an ordinary class here; label 255 (ignore) is handled by the loss, not the network.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.data.ade20k_classes import NUM_CLASSES
from bgedit_cli.errors import ConfigError
from bgedit_cli.nn.ops import assert_shape

NORMS = ("group", "batch")


# ----------------------------------------------------------------------------------------------------------
# Config and presets.


@dataclasses.dataclass(frozen=True)
class SegmenterConfig(Config):
    """Everything needed to rebuild a segmenter. `channels[i]` is the width of encoder level i."""

    resolution: int = 256
    num_classes: int = NUM_CLASSES
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    num_convs: int = 2
    stem_stride: int = 1
    norm: str = "group"
    num_groups: int = 8
    global_context: bool = False

    def __post_init__(self) -> None:
        if len(self.channels) < 1 or min(self.channels) < 1:
            raise ConfigError(f"channels must list at least one positive width, got {list(self.channels)}.")
        if min(self.num_classes, self.in_channels, self.num_convs, self.stem_stride) < 1:
            raise ConfigError("num_classes, in_channels, num_convs and stem_stride must be positive.")
        if self.resolution % self.downsampling:
            raise ConfigError(f"resolution {self.resolution} must be a multiple of the total downsampling "
                              f"{self.downsampling} (stem_stride * 2**(len(channels) - 1)).")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if self.norm == "group" and any(c % self.num_groups for c in self.channels):
            raise ConfigError(f"with norm 'group', every width in channels {list(self.channels)} must be a "
                              f"multiple of num_groups ({self.num_groups}).")

    @property
    def downsampling(self) -> int:
        """Factor between the input size and the deepest feature map."""
        return self.stem_stride * 2 ** (len(self.channels) - 1)


PRESETS: dict[str, SegmenterConfig] = {
    # Tests: 32 px, widths <= 16, a few thousand parameters.
    "tiny": SegmenterConfig(resolution=32, channels=(8, 16), num_convs=1, norm="group", num_groups=4),
    # CPU-trainable in minutes at 64 px (docs/segmenter.md has its curve on synthetic scenes).
    "demo": SegmenterConfig(resolution=64, channels=(16, 32, 64, 64), num_convs=2, norm="batch",
                            global_context=True),
    # ADE20K at 256 px: a stride-2 stem, then five levels down to 8x8.
    "paper-256": SegmenterConfig(resolution=256, channels=(32, 64, 128, 256, 512), num_convs=2, stem_stride=2,
                                 norm="batch", global_context=True),
}


def segmenter_preset(name: str) -> SegmenterConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown segmenter preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


# ----------------------------------------------------------------------------------------------------------
# Network.


def _norm(cfg: SegmenterConfig, channels: int) -> nn.Module:
    if cfg.norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(cfg.num_groups, channels)


class ConvBlock(nn.Sequential):
    """conv (3x3 by default, no bias) -> norm -> ReLU."""

    def __init__(self, cfg: SegmenterConfig, in_channels: int, out_channels: int, stride: int = 1,
                 kernel: int = 3) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
                         _norm(cfg, out_channels), nn.ReLU(inplace=True))


def _blocks(cfg: SegmenterConfig, in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    layers = [ConvBlock(cfg, in_channels, out_channels, stride)]
    layers += [ConvBlock(cfg, out_channels, out_channels) for _ in range(cfg.num_convs - 1)]
    return nn.Sequential(*layers)


class Segmenter(nn.Module):
    """UNet segmenter. `forward(img: [N, 3, H, W]) -> logits [N, num_classes, H, W]`."""

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.encoder = nn.ModuleList([_blocks(cfg, cfg.in_channels, ch[0], cfg.stem_stride)])
        self.encoder.extend(_blocks(cfg, ch[i - 1], ch[i], stride=2) for i in range(1, len(ch)))
        # decoder[j] brings level j + 1 up to level j (deepest first when run).
        self.decoder = nn.ModuleList(_blocks(cfg, ch[j + 1] + ch[j], ch[j]) for j in range(len(ch) - 1))
        self.context = ConvBlock(cfg, 2 * ch[-1], ch[-1], kernel=1) if cfg.global_context else None
        self.head = nn.Conv2d(ch[0], cfg.num_classes, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert_shape(img, [None, self.cfg.in_channels, None, None], "img")
        h, w = img.shape[2:]
        if h % self.cfg.downsampling or w % self.cfg.downsampling:
            raise ValueError(f"img: height and width must be multiples of {self.cfg.downsampling}, got {h}x{w}")
        skips = []
        x = img
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        if self.context is not None:
            x = self.context(torch.cat([x, x.mean(dim=(2, 3), keepdim=True).expand_as(x)], dim=1))
        for j in reversed(range(len(self.decoder))):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.decoder[j](torch.cat([x, skips[j]], dim=1))
        logits = self.head(x)
        if self.cfg.stem_stride > 1:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits  # (N, num_classes, H, W)

    @torch.no_grad()
    def predict(self, img: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """img: [N, 3, H, W] in [-1, 1] -> class ids [N, H, W] (int64), in batches, without gradients."""
        parts = [self(img[i:i + batch_size]).argmax(dim=1) for i in range(0, img.shape[0], batch_size)]
        return torch.cat(parts) if parts else img.new_zeros((0, *img.shape[2:]), dtype=torch.long)
