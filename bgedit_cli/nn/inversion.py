"""The inversion networks of one model, in one file (`BUNDLE/inversion.safetensors`, kind `inversion`).

    net = build_inversion("proposed", "demo", G, generator_sha256)   # or load_network(path, "inversion")
    net.check_generator(G, sha256)                                   # shapes (and hash) must match

`InversionNet(cfg)` holds, for the **proposed** variant (the paper's model):
- `image_encoder`: `StyleTransformerEncoder`, image [N, 3, R, R] -> w [N, w_dim] (offset from G's w_avg;
  [N, num_ws, w_dim] when `cfg.image_encoder.output == "wplus"`);
- `seg_encoder`: `StyleTransformerEncoder`, one-hot map [N, 151, R, R] -> seg latents [N, seg_layers, w_dim]
  that replace W+ rows 0..seg_layers-1;
- `hyper_img`: `HyperNetwork` on cat(image, y_hat) [N, 6, R, R] -> delta_img {"convs.j": [N, O, I, k, k]};
- `hyper_seg`: `HyperNetwork` on cat(one-hot seg, y_hat) [N, 154, R, R] -> delta_seg (same layers).
The **baseline** variant (StyleTransformer + HyperStyle, no segmentation) has `seg_encoder = hyper_seg = None`
and is stored as `BUNDLE/inversion-baseline.safetensors`, still of kind `inversion` (`cfg.variant`).

The generator (frozen) is passed at forward time -- its mapping network initialises the encoders' queries --
and is never stored here. The config records what the networks were built for: `generator_config` (the
generator's config dict), `generator_sha256` (its file's hash; "" = unknown), `layer_shapes` (the tuned convs'
weight shapes, so the file rebuilds alone) and `seg_layers`.

Default `seg_layers` (`default_seg_layers`): the W+ rows up to the 32x32 resolution, i.e.
`num_ws - 2 * (log2(R) - 5)` clipped to [2, num_ws - 2]: 8 of 14 at 256 px (the paper's split), 8 of 10 at 64 px,
4 of 6 at 16 px.

How these networks are run (initial codes, refinement steps) lives in `bgedit_cli.pipelines.invert`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.data.ade20k_classes import NUM_CLASSES
from bgedit_cli.errors import CheckpointError, ConfigError
from bgedit_cli.nn.encoders import EncoderConfig, StyleTransformerEncoder
from bgedit_cli.nn.hypernet import HyperNetConfig, HyperNetwork, check_layer_shapes, normalize_layer_shapes

VARIANTS = ("proposed", "baseline")
IMG_CHANNELS = 3


def default_seg_layers(num_ws: int, img_resolution: int) -> int:
    """W+ rows driven by the Seg Encoder: those up to 32x32, clipped to [2, num_ws - 2] (8 of 14 at 256 px)."""
    n = num_ws - 2 * (int(math.log2(img_resolution)) - 5)
    return int(min(max(n, 2), num_ws - 2))


@dataclasses.dataclass(frozen=True)
class InversionConfig(Config):
    """Everything needed to rebuild an `InversionNet`; nested network configs are stored as JSON objects."""

    variant: str
    img_resolution: int
    z_dim: int
    w_dim: int
    num_ws: int
    seg_layers: int
    layer_shapes: dict
    image_encoder: EncoderConfig
    hyper_img: HyperNetConfig
    seg_encoder: EncoderConfig | None = None
    hyper_seg: HyperNetConfig | None = None
    num_classes: int = NUM_CLASSES
    preset: str = ""
    generator_config: dict = dataclasses.field(default_factory=dict)
    generator_sha256: str = ""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"inversion variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}.")
        object.__setattr__(self, "layer_shapes",
                           {k: list(v) for k, v in normalize_layer_shapes(self.layer_shapes).items()})
        has_seg = self.seg_encoder is not None, self.hyper_seg is not None
        if self.variant == "proposed" and has_seg != (True, True):
            raise ConfigError("the proposed variant needs seg_encoder and hyper_seg configs.")
        if self.variant == "baseline" and has_seg != (False, False):
            raise ConfigError("the baseline variant has no seg_encoder or hyper_seg.")
        if self.variant == "proposed" and not 1 <= self.seg_layers < self.num_ws:
            raise ConfigError(f"seg_layers must be in 1..{self.num_ws - 1}, got {self.seg_layers}.")
        enc = self.image_encoder
        if (enc.in_channels, enc.z_dim, enc.w_dim) != (IMG_CHANNELS, self.z_dim, self.w_dim):
            raise ConfigError("image_encoder must take 3 channels and use the generator's z_dim/w_dim.")
        if enc.output == "wplus" and enc.num_queries != self.num_ws:
            raise ConfigError("a W+ image encoder needs num_queries == num_ws.")
        if self.hyper_img.in_channels != 2 * IMG_CHANNELS:
            raise ConfigError("hyper_img takes cat(image, reconstruction): in_channels must be 6.")
        if self.seg_encoder is not None:
            s = self.seg_encoder
            if (s.in_channels, s.num_queries, s.output) != (self.num_classes, self.seg_layers, "wplus"):
                raise ConfigError("seg_encoder must take num_classes channels and output seg_layers W+ rows.")
        if self.hyper_seg is not None and self.hyper_seg.in_channels != self.num_classes + IMG_CHANNELS:
            raise ConfigError("hyper_seg takes cat(one-hot seg, reconstruction): in_channels must be num_classes + 3.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InversionConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}.")
        data = dict(data)
        for key, sub in (("image_encoder", EncoderConfig), ("seg_encoder", EncoderConfig),
                         ("hyper_img", HyperNetConfig), ("hyper_seg", HyperNetConfig)):
            if isinstance(data.get(key), dict):
                data[key] = sub.from_dict(data[key])
        return super().from_dict(data)


# ----------------------------------------------------------------------------------------------------------
# Presets: sizes only; generator-dependent values (dims, layer shapes, seg_layers) come from the generator.

ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(stem_channels=8, stage_channels=(8, 16, 16, 32), stage_units=(1, 1, 1, 1), norm="group",
                 num_heads=2, ffn_dim=64),
    "demo": dict(stem_channels=32, stage_channels=(32, 64, 96, 128), stage_units=(1, 2, 2, 1), norm="group",
                 num_heads=4, ffn_dim=256),
    # StyleTransformer: IR-SE-50 backbone, d_model 512, 4 heads, FFN 1024.
    "paper-256": dict(stem_channels=64, stage_channels=(64, 128, 256, 512), stage_units=(3, 4, 14, 3),
                      norm="batch", num_heads=4, ffn_dim=1024),
}

HYPERNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(stem_channels=8, stem_stride=1, stage_channels=(8, 16, 16, 32), stage_blocks=(1, 1, 1, 1),
                 norm="group", head_channels=16, dense_head_channels=16, code_dim=32, shared_rank=16),
    "demo": dict(stem_channels=32, stem_stride=2, stage_channels=(32, 64, 96, 128), stage_blocks=(1, 1, 1, 1),
                 norm="group", head_channels=64, dense_head_channels=64, code_dim=128, shared_rank=128),
    # HyperStyle: ResNet-34 backbone, 16x16 features, inner widths 128 (shared) / 256 (per layer), 512-d codes.
    "paper-256": dict(stem_channels=64, stem_stride=2, stage_channels=(64, 128, 256, 512), stage_blocks=(3, 4, 6, 3),
                      norm="batch", head_channels=128, dense_head_channels=256, code_dim=512, shared_rank=512),
}

# name -> sizes of the encoders and of the hypernetworks (the same for both of each kind).
INVERSION_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    name: {"encoder": ENCODER_PRESETS[name], "hypernet": HYPERNET_PRESETS[name]} for name in ENCODER_PRESETS
}


def inversion_config(variant: str, preset: str, generator_cfg: Any, layer_shapes: Mapping[str, Sequence[int]],
                     generator_sha256: str = "", *, seg_layers: int | None = None, wplus: bool = False,
                     **overrides: Any) -> InversionConfig:
    """Config for `variant` with the sizes of `preset`, fitted to a generator (its config and layer shapes)."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown inversion variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    if preset not in INVERSION_PRESETS:
        raise ConfigError(f"unknown inversion preset {preset!r}; choose one of {', '.join(INVERSION_PRESETS)}.")
    g = generator_cfg
    num_ws = g.num_ws
    seg_layers = default_seg_layers(num_ws, g.img_resolution) if seg_layers is None else seg_layers
    dims = dict(z_dim=g.z_dim, w_dim=g.w_dim)
    sizes = INVERSION_PRESETS[preset]
    image_encoder = EncoderConfig(in_channels=IMG_CHANNELS, num_queries=num_ws, output="wplus" if wplus else "w",
                                  **dims, **sizes["encoder"])
    hyper_img = HyperNetConfig(in_channels=2 * IMG_CHANNELS, **sizes["hypernet"])
    seg_encoder = hyper_seg = None
    if variant == "proposed":
        seg_encoder = EncoderConfig(in_channels=NUM_CLASSES, num_queries=seg_layers, output="wplus", **dims,
                                    **sizes["encoder"])
        hyper_seg = HyperNetConfig(in_channels=NUM_CLASSES + IMG_CHANNELS, **sizes["hypernet"])
    return InversionConfig(
        variant=variant, img_resolution=g.img_resolution, num_ws=num_ws, seg_layers=seg_layers,
        layer_shapes={k: list(v) for k, v in layer_shapes.items()}, image_encoder=image_encoder, hyper_img=hyper_img,
        seg_encoder=seg_encoder, hyper_seg=hyper_seg, preset=preset, generator_config=g.to_dict(),
        generator_sha256=generator_sha256, **dims, **overrides)


class InversionNet(nn.Module):
    """Container of the inversion networks (see the module doc). `layer_shapes`, when given, must equal the
    config's (a guard for callers that build from a generator)."""

    def __init__(self, cfg: InversionConfig, layer_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if layer_shapes is not None:
            check_layer_shapes(cfg.layer_shapes, layer_shapes, "this inversion config")
        r = cfg.img_resolution
        self.image_encoder = StyleTransformerEncoder(cfg.image_encoder)
        self.hyper_img = HyperNetwork(cfg.hyper_img, cfg.layer_shapes, r)
        self.seg_encoder = StyleTransformerEncoder(cfg.seg_encoder) if cfg.seg_encoder is not None else None
        self.hyper_seg = HyperNetwork(cfg.hyper_seg, cfg.layer_shapes, r) if cfg.hyper_seg is not None else None

    @property
    def variant(self) -> str:
        return self.cfg.variant

    @property
    def uses_seg(self) -> bool:
        return self.cfg.variant == "proposed"

    @property
    def seg_layers(self) -> int:
        """W+ rows from the Seg Encoder (0 for the baseline, whose image w fills every row)."""
        return self.cfg.seg_layers if self.uses_seg else 0

    def check_generator(self, generator: nn.Module, sha256: str | None = None) -> None:
        """CheckpointError unless `generator` is the one this was built for: same dims and conv shapes, and
        (when both hashes are known) the same file hash."""
        cfg, g = self.cfg, generator.cfg
        if (g.img_resolution, g.z_dim, g.w_dim, g.num_ws) != (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.num_ws):
            raise CheckpointError(
                f"the inversion networks were built for a {cfg.img_resolution}px generator with z_dim {cfg.z_dim}, "
                f"w_dim {cfg.w_dim}, {cfg.num_ws} ws; this generator is {g.img_resolution}px, z_dim {g.z_dim}, "
                f"w_dim {g.w_dim}, {g.num_ws} ws. Use the generator they were trained with.")
        check_layer_shapes(cfg.layer_shapes, generator.layer_shapes(), "the inversion networks")
        if sha256 and cfg.generator_sha256 and sha256 != cfg.generator_sha256:
            raise CheckpointError(
                f"the inversion networks were trained for generator {cfg.generator_sha256[:12]}..., but this "
                f"generator file is {sha256[:12]}... Use the matching generator.safetensors, or retrain with "
                "`bgedit train inversion`.")

    def num_parameters(self) -> dict[str, int]:
        parts = {"image_encoder": self.image_encoder, "seg_encoder": self.seg_encoder, "hyper_img": self.hyper_img,
                 "hyper_seg": self.hyper_seg}
        out = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items() if m is not None}
        out["total"] = sum(out.values())
        return out


def build_inversion(variant: str, preset: str, generator: nn.Module, generator_sha256: str = "",
                    **config_overrides: Any) -> InversionNet:
    """A freshly initialised `InversionNet` for `generator` (its real layer shapes), in train mode on CPU.
    `config_overrides`: `seg_layers=`, `wplus=` or any `InversionConfig` field."""
    cfg = inversion_config(variant, preset, generator.cfg, generator.layer_shapes(), generator_sha256,
                           **config_overrides)
    return InversionNet(cfg, generator.layer_shapes())
