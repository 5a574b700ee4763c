"""HyperStyle hypernetwork (Alaluf et al. 2022): predicts per-sample residuals for the generator's conv weights.

`HyperNetwork(cfg, layer_shapes)` is built for the tuned layers of one generator: `layer_shapes` maps each
conv name (`"convs.j"`) to its weight shape [C_out, C_in, k, k], taken from `Generator.layer_shapes()` and
checked again against the generator the deltas are used with (`check_layer_shapes`).

    x: [N, in_channels, R, R]  (cat(image, y_hat): 6 channels; cat(one-hot seg, y_hat): 151 + 3)
    -> ResNet-34-style backbone (stem conv7x7/stem_stride + BN/GN + PReLU, no max-pool; four BasicBlock stages,
       stride 1, 2, 2, 2) -> features [N, C, R/16, R/16] at the default stem stride 2 (16x16 at 256 px)
    -> one refinement head per layer -> {"convs.j": delta [N, C_out, C_in, k, k]}

Refinement heads (HyperStyle's design, sizes are config values):
- every head starts with its own conv stack: conv3x3 (stride 1) to `head_channels`, stride-2 convs down to
  1x1, LeakyReLU after each, then global average pooling -> a code [N, code_dim];
- **shared heads** (`share_heads`): layers whose shape is the generator's widest square conv (512 x 512 at
  paper size; 9 of the 13 convs at 256 px) each own the conv stack plus an equalized linear code -> code, but
  share one factorized output (HyperStyle's SharedWeightsHypernet): `h = code @ W_in + b_in` reshaped to
  [N, C_in, shared_rank], then `h @ W_out + b_out` -> [N, C_in, C_out * k * k] -- a delta per kernel tap
  (the codes of all shared layers go through it as one batch, so its large weights are read once per pass);
- **per-layer heads** (the other layers): conv stack with `dense_head_channels`, then a linear layer
  code -> C_out * C_in (HyperStyle's RefinementBlock 1x1 conv): one delta per channel pair, repeated over
  the k x k taps (returned as an expanded view, no copy). With `dense_rank > 0` the output is factorized
  like the shared head instead (C_in x dense_rank, then dense_rank x C_out) for a smaller network.

Output layers start small (`init_scale`) so a fresh hypernetwork barely changes the generator.
The generator then runs with `weight * (1 + delta)` per sample (see `bgedit_cli.nn.stylegan2`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.errors import CheckpointError, ConfigError
from bgedit_cli.nn.encoders import NORMS, make_norm
from bgedit_cli.nn.ops import assert_shape

EMBED_BLOCK = 16  # rows of W_in per step of FactorizedDelta's blocked product (see FactorizedDelta._embed)
EMBED_BLOCK_MAX_CODES = 24  # up to this many codes at once; more make the plain product the faster one


@dataclasses.dataclass(frozen=True)
class HyperNetConfig(Config):
    """A HyperStyle hypernetwork. Backbone: `stage_channels[i]` wide, `stage_blocks[i]` BasicBlocks."""

    in_channels: int = 6
    stem_channels: int = 64
    stem_stride: int = 2
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    norm: str = "batch"
    head_channels: int = 128
    dense_head_channels: int = 256
    code_dim: int = 512
    share_heads: bool = True
    shared_rank: int = 512
    dense_rank: int = 0
    init_scale: float = 0.1

    def __post_init__(self) -> None:
        if len(self.stage_channels) != 4 or len(self.stage_blocks) != 4:
            raise ConfigError("hypernetwork stage_channels and stage_blocks must list 4 stages.")
        sizes = (self.in_channels, self.stem_channels, self.stem_stride, self.head_channels,
                 self.dense_head_channels, self.code_dim, self.shared_rank) + self.stage_channels + self.stage_blocks
        if min(sizes) < 1 or self.dense_rank < 0:
            raise ConfigError("hypernetwork sizes must be positive (dense_rank >= 0).")
        if self.norm not in NORMS:
            raise ConfigError(f"hypernetwork norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")

    @property
    def feature_stride(self) -> int:
        """Input size / feature map size."""
        return self.stem_stride * 8


def normalize_layer_shapes(layer_shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int, int, int]]:
    """Validate `{"convs.j": [C_out, C_in, k, k]}` and return it with tuple values, in conv order."""
    out = {}
    for name, shape in layer_shapes.items():
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or shape[2] != shape[3] or min(shape) < 1:
            raise ConfigError(f"layer {name}: expected a weight shape [C_out, C_in, k, k], got {list(shape)}.")
        out[str(name)] = shape
    if not out:
        raise ConfigError("a hypernetwork needs at least one layer to tune.")
    return dict(sorted(out.items(), key=lambda kv: _layer_order(kv[0])))


def _layer_order(name: str) -> tuple[str, int]:
    prefix, _, idx = name.rpartition(".")
    return (prefix, int(idx)) if idx.isdigit() else (name, -1)


def check_layer_shapes(expected: Mapping[str, Sequence[int]], actual: Mapping[str, Sequence[int]],
                       what: str = "this hypernetwork") -> None:
    """CheckpointError unless `actual` (a generator's `layer_shapes()`) equals `expected` exactly."""
    exp = {k: tuple(v) for k, v in expected.items()}
    act = {k: tuple(v) for k, v in actual.items()}
    if exp == act:
        return
    problems = []
    for name in sorted(set(exp) | set(act), key=_layer_order):
        if name not in act:
            problems.append(f"{name} missing in the generator")
        elif name not in exp:
            problems.append(f"{name} {list(act[name])} not tuned by {what}")
        elif exp[name] != act[name]:
            problems.append(f"{name} is {list(act[name])}, expected {list(exp[name])}")
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    raise CheckpointError(f"{what} was built for another generator: {'; '.join(problems[:3])}{more}. "
                          "Use the generator it was trained with, or retrain it for this one.")


# ----------------------------------------------------------------------------------------------------------
# Backbone.


class BasicBlock(nn.Module):
    """ResNet BasicBlock: conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm, plus (projected) identity."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = make_norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = make_norm(norm, out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)), inplace=True)


class ResNetBackbone(nn.Module):
    """x [N, C_in, R, R] -> features [N, stage_channels[-1], R / feature_stride, R / feature_stride]."""

    def __init__(self, cfg: HyperNetConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, cfg.stem_channels, 7, cfg.stem_stride, 3, bias=False),
                                  make_norm(cfg.norm, cfg.stem_channels), nn.PReLU(cfg.stem_channels))
        blocks, prev = [], cfg.stem_channels
        for i, (width, num) in enumerate(zip(cfg.stage_channels, cfg.stage_blocks)):
            for b in range(num):
                blocks.append(BasicBlock(prev, width, 2 if (b == 0 and i > 0) else 1, cfg.norm))
                prev = width
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x: the whole input, or with `cond` (from `condition`) only its last channels."""
        if cond is None:
            return self.body(self.stem(x))
        conv = self.stem[0]
        x = F.conv2d(x, conv.weight[:, conv.in_channels - x.shape[1]:], None, conv.stride, conv.padding) + cond
        return self.body(self.stem[1:](x))

    def condition(self, x_cond: torch.Tensor) -> torch.Tensor:
        """The stem convolution's response to the first `x_cond.shape[1]` input channels alone."""
        conv = self.stem[0]
        return F.conv2d(x_cond, conv.weight[:, :x_cond.shape[1]], None, conv.stride, conv.padding)


# ----------------------------------------------------------------------------------------------------------
# Heads.


def conv_to_code(in_ch: int, inner: int, out_ch: int, spatial: int) -> nn.Sequential:
    """conv3x3 s1 -> (stride-2 conv3x3)* down to 1x1 -> global average pool; LeakyReLU after each conv."""
    num_down = max(int(math.log2(spatial)), 0) if spatial > 1 else 0
    layers: list[nn.Module] = [nn.Conv2d(in_ch, inner, 3, 1, 1), nn.LeakyReLU(0.01)]
    for i in range(num_down):
        last = i == num_down - 1
        layers += [nn.Conv2d(inner, out_ch if last else inner, 3, 2, 1), nn.LeakyReLU(0.01)]
    if num_down == 0:
        layers += [nn.Conv2d(inner, out_ch, 1), nn.LeakyReLU(0.01)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class FactorizedDelta(nn.Module):
    """code [M, D] -> delta [M, C_out, C_in, t, t] through a per-input-channel embedding of size `rank`:
    `h = (code @ W_in + b_in).view(M, C_in, rank)`, `delta = h @ W_out + b_out` (HyperStyle's shared hypernet).
    The delta is a transposed view of a contiguous [M, C_in, C_out, t, t] tensor (no copy)."""

    def __init__(self, code_dim: int, out_ch: int, in_ch: int, rank: int, taps: int, init_scale: float) -> None:
        super().__init__()
        self.out_ch, self.in_ch, self.rank, self.taps = out_ch, in_ch, rank, taps
        self.w_in = nn.Parameter(torch.randn(code_dim, in_ch * rank) / math.sqrt(code_dim))
        self.b_in = nn.Parameter(torch.zeros(in_ch * rank))
        self.w_out = nn.Parameter(torch.randn(rank, out_ch * taps * taps) * (init_scale / math.sqrt(rank)))
        self.b_out = nn.Parameter(torch.zeros(out_ch * taps * taps))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        m, t = code.shape[0], self.taps
        h = self._embed(code).view(m * self.in_ch, self.rank)
        k = torch.addmm(self.b_out, h, self.w_out)  # (M*I, O*t*t)
        return k.view(m, self.in_ch, self.out_ch, t, t).transpose(1, 2)  # (M, O, I, t, t)

    def _embed(self, code: torch.Tensor) -> torch.Tensor:
        """`code @ W_in + b_in` -> [M, C_in * rank]. W_in is wide (512 x 262144 at paper size) and its rows are
        1 MiB apart: for a few codes in fp32 inference, BLAS's small-M product runs at a fraction of the machine's
        rate (measured 173 ms for 9 codes on an AMD EPYC, 1 thread, vs 22 ms for one), while accumulating over
        blocks of EMBED_BLOCK rows of W_in streams it once (64 ms). Training and autocast take the plain product."""
        m = code.shape[0]
        if (m == 1 or m > EMBED_BLOCK_MAX_CODES or torch.is_grad_enabled() or code.dtype != torch.float32
                or torch.is_autocast_enabled(code.device.type)):
            return torch.addmm(self.b_in, code, self.w_in)
        b = EMBED_BLOCK
        h = torch.addmm(self.b_in, code[:, :b], self.w_in[:b])
        for k in range(b, self.w_in.shape[0], b):
            h.addmm_(code[:, k:k + b], self.w_in[k:k + b])
        return h


class DenseDelta(nn.Module):
    """code [N, D] -> delta [N, C_out, C_in, 1, 1] with one linear layer (HyperStyle's RefinementBlock output)."""

    def __init__(self, code_dim: int, out_ch: int, in_ch: int, init_scale: float) -> None:
        super().__init__()
        self.out_ch, self.in_ch = out_ch, in_ch
        self.weight = nn.Parameter(torch.randn(out_ch * in_ch, code_dim) * (init_scale / math.sqrt(code_dim)))
        self.bias = nn.Parameter(torch.zeros(out_ch * in_ch))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return F.linear(code, self.weight, self.bias).view(-1, self.out_ch, self.in_ch, 1, 1)


class SharedHead(nn.Module):
    """Own conv stack + linear -> a code [N, code_dim]; the `FactorizedDelta` shared by all layers of this shape
    turns the codes of every such layer into deltas in one product (`HyperNetwork.forward`)."""

    def __init__(self, cfg: HyperNetConfig, spatial: int) -> None:
        super().__init__()
        self.convs = conv_to_code(cfg.stage_channels[-1], cfg.head_channels, cfg.code_dim, spatial)
        self.linear = nn.Linear(cfg.code_dim, cfg.code_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(feats))


class LayerHead(nn.Module):
    """Own conv stack and own output (dense per channel pair, or factorized with `dense_rank`)."""

    def __init__(self, cfg: HyperNetConfig, spatial: int, out_ch: int, in_ch: int) -> None:
        super().__init__()
        self.convs = conv_to_code(cfg.stage_channels[-1], cfg.dense_head_channels, cfg.code_dim, spatial)
        if cfg.dense_rank > 0:
            self.output: nn.Module = FactorizedDelta(cfg.code_dim, out_ch, in_ch, cfg.dense_rank, 1, cfg.init_scale)
        else:
            self.output = DenseDelta(cfg.code_dim, out_ch, in_ch, cfg.init_scale)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.output(self.convs(feats))


def shared_shape(layer_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The widest square conv shape if at least two layers have it (512x512x3x3 at paper size), else None."""
    square = [s for s in layer_shapes.values() if s[0] == s[1]]
    if not square:
        return None
    widest = max(square, key=lambda s: (s[0], s[2]))
    return widest if sum(s == widest for s in layer_shapes.values()) >= 2 else None


class HyperNetwork(nn.Module):
    """`forward(x [N, in_channels, R, R]) -> {"convs.j": delta [N, C_out, C_in, k, k]}` for every tuned layer.

    Build with the generator's real `layer_shapes()`; the input resolution must be a multiple of
    `cfg.feature_stride`. Per-channel deltas are expanded views over the k x k taps (no copy).
    """

    def __init__(self, cfg: HyperNetConfig, layer_shapes: Mapping[str, Sequence[int]], img_resolution: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer_shapes = normalize_layer_shapes(layer_shapes)
        self.img_resolution = img_resolution
        if img_resolution % cfg.feature_stride:
            raise ConfigError(f"hypernetwork input size {img_resolution} must be a multiple of its feature stride "
                              f"{cfg.feature_stride} (stem_stride * 8).")
        spatial = img_resolution // cfg.feature_stride
        self.backbone = ResNetBackbone(cfg)
        self.shared_shape = shared_shape(self.layer_shapes) if cfg.share_heads else None
        self.shared = None
        if self.shared_shape is not None:
            o, i, k, _ = self.shared_shape
            self.shared = FactorizedDelta(cfg.code_dim, o, i, cfg.shared_rank, k, cfg.init_scale)
        heads = {}
        for name, (o, i, k, _) in self.layer_shapes.items():
            key = name.replace(".", "_")
            if self.shared is not None and (o, i, k, k) == self.shared_shape:
                heads[key] = SharedHead(cfg, spatial)
            else:
                heads[key] = LayerHead(cfg, spatial, o, i)
        self.heads = nn.ModuleDict(heads)

    def check_layer_shapes(self, actual: Mapping[str, Sequence[int]]) -> None:
        check_layer_shapes(self.layer_shapes, actual)

    def condition(self, x_cond: torch.Tensor) -> torch.Tensor:
        """For `forward(y, cond)`: the stem's response to the input's fixed leading channels `x_cond`
        [N, C, R, R] (the image, or the one-hot map), C < in_channels. The refinement steps of one inversion
        feed cat(x_cond, y_t) with the same x_cond; the stem convolution is linear, so its response to x_cond
        is computed once and each step convolves y_t alone (the 151-channel map made the seg hypernetwork's stem
        the most expensive layer of its backbone)."""
        r = self.img_resolution
        assert_shape(x_cond, [None, None, r, r], "hypernetwork condition")
        if x_cond.shape[1] >= self.cfg.in_channels:
            raise ValueError(f"a condition has fewer than {self.cfg.in_channels} channels, got {x_cond.shape[1]}")
        return self.backbone.condition(x_cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x: [N, in_channels, R, R]; or, with `cond = condition(x_cond)`, the remaining channels only (the same
        deltas as for cat(x_cond, x), up to rounding)."""
        r = self.img_resolution
        if cond is None:
            assert_shape(x, [None, self.cfg.in_channels, r, r], "hypernetwork input")
        else:
            assert_shape(x, [cond.shape[0], None, r, r], "hypernetwork input")
        feats = self.backbone(x, cond)
        heads = {name: self.heads[name.replace(".", "_")] for name in self.layer_shapes}
        shared = [name for name, head in heads.items() if isinstance(head, SharedHead)]
        deltas = {}
        if shared:  # one factorized product for the codes of every shared layer (its weights read once)
            codes = torch.stack([heads[name](feats) for name in shared])  # (S, N, D)
            out = self.shared(codes.flatten(0, 1)).unflatten(0, codes.shape[:2])  # (S, N, O, I, k, k)
            deltas.update(zip(shared, out.unbind(0)))
        for name, shape in self.layer_shapes.items():
            delta = deltas[name] if name in deltas else heads[name](feats)
            deltas[name] = delta.expand(-1, *shape)  # (N, O, I, k, k)
        return {name: deltas[name] for name in self.layer_shapes}
