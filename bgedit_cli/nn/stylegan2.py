"""StyleGAN2 generator and residual discriminator (Karras et al. 2020), plain PyTorch.

Layout of a generator with resolution R (log2 R = L):
- `mapping`: PixelNorm(z) then `mapping_layers` equalized-lr linear layers with lrelu; buffer `w_avg`.
- `synthesis.const` [C4, 4, 4]; `synthesis.convs.j` (j = 0 .. 2L-4): the 4x4 conv, then per resolution an
  upsampling conv and a conv; `synthesis.torgbs.k` (k = 0 .. L-2): one skip ToRGB per resolution.
- W+ rows: `convs.j` reads `ws[:, j]`, `torgbs.k` reads `ws[:, 2k + 1]`; `num_ws = 2L - 2`.

HyperStyle-style per-sample weight deltas plug into `synthesis(ws, weight_deltas={"convs.j": delta})`
with `delta: [N, C_out, C_in, k, k]`; the conv then runs with `weight * (1 + delta)` per sample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.config import Config
from bgedit_cli.errors import ConfigError
from bgedit_cli.nn.ops import (
    LRELU_GAIN,
    assert_shape,
    bias_lrelu,
    full_precision,
    fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upfirdn2d,
    upsample2d,
)

NoiseMode = Literal["const", "random", "none"]
CPU_TILE_BYTES = 48 * 2**20  # activations per tile on CPU (see SynthesisNetwork.forward)
NOISE_MODES = ("const", "random", "none")


# ----------------------------------------------------------------------------------------------------------
# Configs and presets.


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(Config):
    """Everything needed to rebuild a generator. `channels[i]` is the width at resolution 4 * 2**i."""

    img_resolution: int = 256
    img_channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128)
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        res = self.img_resolution
        if res < 4 or res > 1024 or res & (res - 1):
            raise ConfigError(f"img_resolution must be a power of two in 4..1024, got {res}.")
        want = int(math.log2(res)) - 1
        if len(self.channels) != want:
            raise ConfigError(
                f"channels must list one width per resolution 4..{res} ({want} values), got {len(self.channels)}."
            )
        if min(self.channels) < 1 or min(self.z_dim, self.w_dim, self.mapping_layers, self.img_channels) < 1:
            raise ConfigError("channels, z_dim, w_dim, mapping_layers and img_channels must be positive.")

    @property
    def resolutions(self) -> list[int]:
        return [4 * 2**i for i in range(len(self.channels))]

    @property
    def num_ws(self) -> int:
        return 2 * len(self.channels)

    @property
    def num_convs(self) -> int:
        return 2 * len(self.channels) - 1


def _paper_channels(res: int, cmult: int = 2) -> tuple[int, ...]:
    """rosinality's config-f table: 512 up to 32 px, then 256*cm, 128*cm, ... (capped at 512)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cmult, 128: 128 * cmult, 256: 64 * cmult,
             512: 32 * cmult, 1024: 16 * cmult}
    return tuple(table[4 * 2**i] for i in range(int(math.log2(res)) - 1))


GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "tiny": GeneratorConfig(img_resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channels=(32, 32, 16)),
    "demo": GeneratorConfig(
        img_resolution=64, z_dim=128, w_dim=128, mapping_layers=4, channels=(128, 128, 64, 32, 32)
    ),
    "paper-256": GeneratorConfig(img_resolution=256, z_dim=512, w_dim=512, mapping_layers=8,
                                 channels=_paper_channels(256)),
}


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig(Config):
    """Residual StyleGAN2 discriminator; `channels[i]` is the width at resolution 4 * 2**i."""

    img_resolution: int = 256
    img_channels: int = 3
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128)
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        GeneratorConfig(img_resolution=self.img_resolution, channels=self.channels)  # same validation

    @classmethod
    def matching(cls, g: GeneratorConfig, **overrides) -> "DiscriminatorConfig":
        return cls(img_resolution=g.img_resolution, img_channels=g.img_channels, channels=g.channels, **overrides)


# ----------------------------------------------------------------------------------------------------------
# Layers.


class FullyConnected(nn.Module):
    """Equalized-lr linear layer: `y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul`, optional lrelu."""

    def __init__(self, in_dim: int, out_dim: int, *, activation: bool = False, lr_mul: float = 1.0,
                 bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_dim], float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_dim)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain
        if self.activation:
            return bias_lrelu(x @ w.t(), b)
        return torch.addmm(b.unsqueeze(0), x, w.t())


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]; keeps the running/average latent `w_avg` for truncation."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.num_layers = cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", FullyConnected(dims[i], dims[i + 1], activation=True, lr_mul=cfg.mapping_lr_mul))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        with full_precision(z):  # small and sensitive: w stays fp32 under bf16 autocast
            x = normalize_2nd_moment(z.float())
            for i in range(self.num_layers):
                x = getattr(self, f"fc{i}")(x)
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), noise, bias and lrelu."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, *, up: bool,
                 conv_clamp: float | None) -> None:
        super().__init__()
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.weight_gain = 1.0 / math.sqrt(in_ch * 9)

    def forward(self, x: torch.Tensor, w: torch.Tensor, resample_filter: torch.Tensor, *,
                noise_mode: NoiseMode = "const", weight_delta: torch.Tensor | None = None,
                fused: bool | None = None) -> torch.Tensor:
        with full_precision(w):  # styles feed the demodulation: fp32 under bf16 autocast
            styles = self.affine(w.float()) * self.weight_gain  # the weight's gain, folded into the styles
        # lrelu(g * y) = g * lrelu(y) for g > 0: the activation gain is folded into the conv's output scale,
        # so after the conv only the noise add and the in-place activation touch the activations.
        x = modulated_conv2d(x, self.weight, styles, weight_delta=weight_delta, up=self.up,
                             resample_filter=resample_filter, bias=self.bias, gain=LRELU_GAIN, fused=fused)
        if noise_mode == "const":
            x = x.add_((self.noise_const * (self.noise_strength * LRELU_GAIN)).to(x.dtype))
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x.add_(noise * (self.noise_strength * LRELU_GAIN))
        x = F.leaky_relu(x, 0.2, inplace=True)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation."""

    def __init__(self, in_ch: int, img_channels: int, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        with full_precision(w):
            styles = self.affine(w.float()) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, bias=self.bias)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, C, R, R] with skip ToRGB outputs summed across resolutions."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.const = nn.Parameter(torch.randn(ch[0], 4, 4))
        convs = [SynthesisLayer(ch[0], ch[0], cfg.w_dim, 4, up=False, conv_clamp=cfg.conv_clamp)]
        torgbs = [ToRGB(ch[0], cfg.img_channels, cfg.w_dim, cfg.conv_clamp)]
        for i, res in enumerate(cfg.resolutions[1:], start=1):
            convs.append(SynthesisLayer(ch[i - 1], ch[i], cfg.w_dim, res, up=True, conv_clamp=cfg.conv_clamp))
            convs.append(SynthesisLayer(ch[i], ch[i], cfg.w_dim, res, up=False, conv_clamp=cfg.conv_clamp))
            torgbs.append(ToRGB(ch[i], cfg.img_channels, cfg.w_dim, cfg.conv_clamp))
        self.convs = nn.ModuleList(convs)
        self.torgbs = nn.ModuleList(torgbs)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> weight shape [C_out, C_in, k, k] of every non-ToRGB conv (the layers deltas may tune)."""
        return {f"convs.{j}": tuple(conv.weight.shape) for j, conv in enumerate(self.convs)}

    def forward(self, ws: torch.Tensor, *, noise_mode: NoiseMode = "const",
                weight_deltas: Mapping[str, torch.Tensor] | None = None,
                fused: bool | None = None) -> torch.Tensor:
        cfg = self.cfg
        assert_shape(ws, [None, cfg.num_ws, cfg.w_dim], "ws")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        deltas = dict(weight_deltas or {})
        unknown = set(deltas) - {f"convs.{j}" for j in range(len(self.convs))}
        if unknown:
            raise ValueError(f"weight_deltas has unknown layer(s): {sorted(unknown)}")
        n = ws.shape[0]
        f = self.resample_filter
        x = self.const.unsqueeze(0).expand(n, -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], f, noise_mode=noise_mode, weight_delta=deltas.get("convs.0"), fused=fused)
        img = self.torgbs[0](x, ws[:, 1])
        opts = dict(noise_mode=noise_mode, fused=fused)
        start, chunk = self._cpu_tiling(n, x.device)
        x, img = self._blocks(x, img, ws, deltas, range(1, start), **opts)
        if start == len(self.torgbs):
            return img
        # On CPU the high-resolution blocks are memory-bound: from the first block whose activations for the
        # whole batch outgrow a cache-sized tile, the rest runs on slices of the batch (weights shared, never
        # copied; each slice is still a batch). On CUDA the whole batch always goes at once.
        return torch.cat([
            self._blocks(x[i:i + chunk], img[i:i + chunk], ws[i:i + chunk],
                         {name: d[i:i + chunk] for name, d in deltas.items()}, range(start, len(self.torgbs)),
                         **opts)[1]
            for i in range(0, n, chunk)
        ])

    def _blocks(self, x: torch.Tensor, img: torch.Tensor, ws: torch.Tensor, deltas: Mapping[str, torch.Tensor],
                ks: range, *, noise_mode: NoiseMode, fused: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.resample_filter
        for k in ks:
            for j in (2 * k - 1, 2 * k):
                x = self.convs[j](x, ws[:, j], f, noise_mode=noise_mode, weight_delta=deltas.get(f"convs.{j}"),
                                  fused=fused)
            img = upsample2d(img, f) + self.torgbs[k](x, ws[:, 2 * k + 1])
        return x, img

    def _cpu_tiling(self, n: int, device: torch.device) -> tuple[int, int]:
        """(first block to run in slices, slice size); (number of blocks, n) when no tiling applies."""
        num_blocks = len(self.torgbs)
        if device.type != "cpu" or n == 1:
            return num_blocks, n
        per_sample = [4 * ch * res * res for ch, res in zip(self.cfg.channels, self.cfg.resolutions)]
        for k in range(1, num_blocks):
            if n * per_sample[k] > CPU_TILE_BYTES:
                return k, max(1, CPU_TILE_BYTES // max(per_sample[k:]))
        return num_blocks, n


class Generator(nn.Module):
    """StyleGAN2 generator. `impl="compile"` runs synthesis through torch.compile on CUDA (lazily, on the first
    CUDA call); `impl="ref"` (default, and always on CPU) is the plain-PyTorch path."""

    def __init__(self, cfg: GeneratorConfig, impl: Literal["ref", "compile"] = "ref") -> None:
        super().__init__()
        if impl not in ("ref", "compile"):
            raise ValueError(f"impl must be 'ref' or 'compile', got {impl!r}")
        self.cfg = cfg
        self.impl = impl
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        self._compiled_synthesis = None

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.synthesis.layer_shapes()

    def truncate(self, ws: torch.Tensor, psi: float) -> torch.Tensor:
        """Move W or W+ codes toward `w_avg`: `w_avg + psi * (ws - w_avg)`."""
        return ws if psi == 1 else self.w_avg.lerp(ws, psi)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """[N, w_dim] -> [N, num_ws, w_dim]; W+ input passes through (shape-checked)."""
        if w.ndim == 2:
            w = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        assert_shape(w, [None, self.num_ws, self.cfg.w_dim], "ws")
        return w

    def synthesize(self, ws: torch.Tensor, **kwargs) -> torch.Tensor:
        """Run synthesis with the implementation chosen by `impl` (see class doc)."""
        if self.impl == "compile" and ws.is_cuda:
            if self._compiled_synthesis is None:
                self._compiled_synthesis = torch.compile(self.synthesis, dynamic=False)
            return self._compiled_synthesis(ws, **kwargs)
        return self.synthesis(ws, **kwargs)

    def forward(self, z: torch.Tensor | None = None, *, ws: torch.Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: NoiseMode = "const", weight_deltas: Mapping[str, torch.Tensor] | None = None,
                fused: bool | None = None) -> torch.Tensor:
        """Images [N, C, R, R] from exactly one of `z: [N, z_dim]` or `ws: [N, w_dim] | [N, num_ws, w_dim]`."""
        if (z is None) == (ws is None):
            raise ValueError("pass exactly one of z or ws")
        if z is not None:
            assert_shape(z, [None, self.cfg.z_dim], "z")
            ws = self.mapping(z, truncation_psi=truncation_psi)
        else:
            ws = self.truncate(ws, truncation_psi)
        return self.synthesize(self.broadcast(ws), noise_mode=noise_mode, weight_deltas=weight_deltas, fused=fused)

    @torch.no_grad()
    def update_w_avg(self, num_samples: int = 10_000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
        """Set `w_avg` to the mean of mapping(z) over `num_samples` seeded z (for files that lack one)."""
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.cfg.w_dim, dtype=torch.float64)
        done = 0
        while done < num_samples:
            b = min(batch_size, num_samples - done)
            z = torch.randn(b, self.cfg.z_dim, generator=gen).to(self.w_avg.device)
            total += self.mapping(z).double().sum(0).cpu()
            done += b
        self.mapping.w_avg.copy_((total / num_samples).float())
        return self.w_avg


# ----------------------------------------------------------------------------------------------------------
# Discriminator.


class Conv2dLayer(nn.Module):
    """Equalized-lr conv with optional FIR-then-stride-2 downsampling, bias and lrelu."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, down: bool = False, bias: bool = True,
                 activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.down = down
        self.activation = activation

    def forward(self, x: torch.Tensor, resample_filter: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        k = w.shape[-1]
        if self.down:
            p = (resample_filter.shape[-1] - 2) + (k - 1)
            x = upfirdn2d(x, resample_filter, pad=((p + 1) // 2, p // 2))
            x = torch.nn.functional.conv2d(x, w, stride=2)
        else:
            x = torch.nn.functional.conv2d(x, w, padding=k // 2)
        if self.activation:
            return bias_lrelu(x, self.bias)
        return x if self.bias is None else x + self.bias.reshape(1, -1, 1, 1)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = Conv2dLayer(in_ch, in_ch, 3)
        self.conv1 = Conv2dLayer(in_ch, out_ch, 3, down=True)
        self.skip = Conv2dLayer(in_ch, out_ch, 1, down=True, bias=False, activation=False)

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        y = self.skip(x, f)
        x = self.conv1(self.conv0(x, f), f)
        return (x + y) * (1 / math.sqrt(2))


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append `num_channels` feature maps holding the std over groups of samples (ProGAN/StyleGAN2)."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)  # (G, N/G, F, C/F, H, W)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (N/G, F)
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # (N, F, H, W)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """img [N, C, R, R] -> logits [N, 1]."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        if ch[0] % cfg.mbstd_num_channels:
            raise ConfigError("the 4x4 width must be divisible by mbstd_num_channels")
        self.fromrgb = Conv2dLayer(cfg.img_channels, ch[-1], 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch[i], ch[i - 1]) for i in range(len(ch) - 1, 0, -1))
        self.conv = Conv2dLayer(ch[0] + cfg.mbstd_num_channels, ch[0], 3)
        self.fc = FullyConnected(ch[0] * 16, ch[0], activation=True)
        self.out = FullyConnected(ch[0], 1)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        assert_shape(img, [None, cfg.img_channels, cfg.img_resolution, cfg.img_resolution], "img")
        f = self.resample_filter
        x = self.fromrgb(img, f)
        for block in self.blocks:
            x = block(x, f)
        x = minibatch_stddev(x, cfg.mbstd_group_size, cfg.mbstd_num_channels)
        x = self.conv(x, f)
        return self.out(self.fc(x.flatten(1)))

