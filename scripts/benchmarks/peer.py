"""Peer implementations for the generator bench: rosinality/stylegan2-pytorch's generator (CPU path).

`python scripts/bench.py --only generator --peer-rosinality DIR` times that library's `Generator` on the same
random-weight generator as our rows. DIR is a checkout of github.com/rosinality/stylegan2-pytorch (tested at
commit bef283a, 2021-11-24); nothing of it is copied into this repository.

Its `op/fused_act.py` and `op/upfirdn2d.py` JIT-compile CUDA extensions at import (module-level
`torch.utils.cpp_extension.load(...)`). `load_rosinality` imports `model.py` with that function replaced by one
returning None, so nothing compiles (the same edit the fixtures in ../shared/fixtures/rosinality describe);
the library then runs its own pure-PyTorch paths (`upfirdn2d_native`, leaky_relu(x + b, 0.2) * sqrt 2,
torch.nn.functional convolutions), which it takes for CPU tensors and, after `_plain_ops`, on CUDA too.
`load_rosinality(..., compile_ops=True)` lets the import compile the CUDA ops (nvcc and ninja needed; the build is
cached in TORCH_EXTENSIONS_DIR), which the library then uses for CUDA tensors (scripts/gpu_check.py tries this
and falls back to the plain path). The checkout itself is not modified.

Weights go from our generator into rosinality's names by `to_rosinality_state_dict`, the inverse of
`bgedit_cli.convert.rosinality.convert_rosinality` (the importer behind `bgedit convert`; there is no exporter).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from bgedit_cli.nn.stylegan2 import Generator, GeneratorConfig

_LOADED: dict[tuple[Path, bool], ModuleType] = {}


class PeerError(RuntimeError):
    """The peer checkout is missing, incomplete, or cannot build a generator matching ours."""


def check_checkout(path: str | Path) -> Path:
    """The resolved checkout directory, or a PeerError saying what is missing."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise PeerError(f"--peer-rosinality {path}: no such directory.")
    missing = [name for name in ("model.py", "op/__init__.py", "op/fused_act.py", "op/upfirdn2d.py")
               if not (root / name).is_file()]
    if missing:
        raise PeerError(f"--peer-rosinality {path}: not a rosinality/stylegan2-pytorch checkout "
                        f"(missing {', '.join(missing)}).")
    return root


def load_rosinality(path: str | Path, *, compile_ops: bool = False) -> ModuleType:
    """Import the checkout's `model.py` (as module `rosinality_model`) without compiling its CUDA ops (with
    `compile_ops`: compiling them, as the library itself does).

    For the import only: `torch.utils.cpp_extension.load` returns None (unless `compile_ops`), the checkout is
    first on sys.path, and any `op` / `model` modules already imported are set aside; all three are restored
    afterwards (the loaded modules keep their own references to the checkout's `op`)."""
    root = check_checkout(path)
    if (root, compile_ops) in _LOADED:
        return _LOADED[root, compile_ops]
    import torch.utils.cpp_extension as cpp_extension

    def is_ours(name: str) -> bool:
        return name in ("op", "model") or name.startswith("op.")

    saved_modules = {name: mod for name, mod in sys.modules.items() if is_ours(name)}
    for name in saved_modules:
        del sys.modules[name]
    saved_load = cpp_extension.load
    if not compile_ops:
        cpp_extension.load = lambda *args, **kwargs: None
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.spec_from_file_location("rosinality_model", root / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one clear message
        raise PeerError(f"--peer-rosinality {path}: importing model.py failed: {type(exc).__name__}: {exc}") from exc
    finally:
        cpp_extension.load = saved_load
        try:
            sys.path.remove(str(root))
        except ValueError:
            pass
        for name in [n for n in sys.modules if is_ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
    if not hasattr(module, "Generator"):
        raise PeerError(f"--peer-rosinality {path}: model.py has no Generator class.")
    if not compile_ops:
        _plain_ops(module)
    _LOADED[root, compile_ops] = module
    return module


def _plain_ops(module: ModuleType) -> None:
    """Route the loaded model's `upfirdn2d` and `fused_leaky_relu` to the library's own CPU branches on every
    device (they pick the compiled ops for CUDA tensors, which are not built here)."""
    upfirdn2d, leaky = module.upfirdn2d, module.fused_leaky_relu
    native = upfirdn2d.__globals__["upfirdn2d_native"]

    def plain_upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
        up = up if isinstance(up, (tuple, list)) else (up, up)
        down = down if isinstance(down, (tuple, list)) else (down, down)
        pad = (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else pad
        return native(input, kernel, *up, *down, *pad)

    def plain_leaky(input, bias=None, negative_slope=0.2, scale=2 ** 0.5):
        if input.device.type == "cpu":
            return leaky(input, bias, negative_slope, scale)
        return _cpu_branch_leaky(input, bias, scale)

    module.upfirdn2d = plain_upfirdn2d
    module.fused_leaky_relu = plain_leaky
    module.FusedLeakyReLU.forward.__globals__["fused_leaky_relu"] = plain_leaky


def _cpu_branch_leaky(input: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """rosinality's `fused_leaky_relu` CPU branch (slope 0.2, as it hard-codes), for any device."""
    if bias is not None:
        input = input + bias.view(1, bias.shape[0], *([1] * (input.ndim - bias.ndim - 1)))
    return torch.nn.functional.leaky_relu(input, negative_slope=0.2) * scale


def stock_channel_multiplier(cfg: GeneratorConfig) -> int:
    """The `channel_multiplier` for which rosinality's fixed width table (512 up to 32 px, then 256*cm at 64 px,
    128*cm at 128 px, ...) gives exactly `cfg.channels`; PeerError for configs it cannot build (e.g. our demo
    and tiny presets). Our paper-256 preset is config-f, cm = 2."""
    problems = []
    if cfg.z_dim != cfg.w_dim:
        problems.append(f"z_dim {cfg.z_dim} != w_dim {cfg.w_dim} (rosinality has one style_dim)")
    if cfg.img_channels != 3:
        problems.append(f"img_channels {cfg.img_channels} (rosinality's ToRGB is RGB only)")
    if cfg.conv_clamp is not None:
        problems.append("conv_clamp is set (rosinality has no clamping)")
    if cfg.img_resolution < 8:
        problems.append("img_resolution < 8")
    cm = 2
    if cfg.img_resolution >= 64:
        cm = cfg.channels[4] // 256 if cfg.channels[4] % 256 == 0 else 0
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
             1024: 16 * cm}
    want = tuple(table[r] for r in cfg.resolutions)
    if cm < 1 or want != tuple(cfg.channels):
        problems.append(f"channels {tuple(cfg.channels)} are not rosinality's stock table for any "
                        "channel_multiplier (512 up to 32 px, then 256*cm, 128*cm, ...)")
    if problems:
        raise PeerError("rosinality's Generator cannot mirror this config: " + "; ".join(problems) + ".")
    return cm


def to_rosinality_state_dict(g: Generator, template: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Our generator's tensors under rosinality's names and shapes (inverse of `convert_rosinality`).

    The FIR kernels (`*.blur.kernel`, `*.upsample.kernel`) are fixed buffers we do not store; they are taken
    from `template` (a freshly built rosinality Generator's state_dict) when given."""
    cfg = g.cfg
    src = {k: v.detach().float().cpu() for k, v in g.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = src[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = src[f"mapping.fc{i}.bias"]
    out["input.input"] = src["synthesis.const"].unsqueeze(0)
    for j in range(cfg.num_convs):
        name = "conv1" if j == 0 else f"convs.{j - 1}"
        s = f"synthesis.convs.{j}"
        out[f"{name}.conv.weight"] = src[f"{s}.weight"].unsqueeze(0)
        out[f"{name}.conv.modulation.weight"] = src[f"{s}.affine.weight"]
        out[f"{name}.conv.modulation.bias"] = src[f"{s}.affine.bias"]
        out[f"{name}.noise.weight"] = src[f"{s}.noise_strength"].reshape(1)
        out[f"{name}.activate.bias"] = src[f"{s}.bias"]
        out[f"noises.noise_{j}"] = src[f"{s}.noise_const"][None, None]
    for k in range(len(cfg.channels)):
        name = "to_rgb1" if k == 0 else f"to_rgbs.{k - 1}"
        s = f"synthesis.torgbs.{k}"
        out[f"{name}.conv.weight"] = src[f"{s}.weight"].unsqueeze(0)
        out[f"{name}.conv.modulation.weight"] = src[f"{s}.affine.weight"]
        out[f"{name}.conv.modulation.bias"] = src[f"{s}.affine.bias"]
        out[f"{name}.bias"] = src[f"{s}.bias"].reshape(1, -1, 1, 1)
    if template is not None:
        for key, value in template.items():
            if key.endswith(".kernel"):
                out[key] = value
    return out


def peer_generator(path: str | Path, ours: Generator, *, compile_ops: bool = False) -> nn.Module:
    """rosinality's `Generator` built for `ours.cfg` and holding `ours`'s weights (CPU, eval, no grad; its
    compiled CUDA ops with `compile_ops`, see `load_rosinality`).

    The state_dict is loaded strictly, so every tensor of rosinality's model is accounted for."""
    module = load_rosinality(path, compile_ops=compile_ops)
    cfg = ours.cfg
    cm = stock_channel_multiplier(cfg)
    peer = module.Generator(cfg.img_resolution, cfg.z_dim, cfg.mapping_layers, channel_multiplier=cm,
                            lr_mlp=cfg.mapping_lr_mul)
    state = to_rosinality_state_dict(ours, template=peer.state_dict())
    wrong = {k: (tuple(v.shape), tuple(state[k].shape)) for k, v in peer.state_dict().items()
             if k in state and v.shape != state[k].shape}
    if wrong:
        raise PeerError(f"rosinality Generator shapes differ from ours: {wrong}")
    peer.load_state_dict(state, strict=True)
    return peer.eval().requires_grad_(False)


class PeerForward(nn.Module):
    """Call adapter so the bench's `time_forward` can time the peer as it times ours: `peer(z)` is
    `G([z], randomize_noise=False)` (the stored noise buffers, as our `noise_mode="const"`), image only."""

    def __init__(self, peer: nn.Module, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.peer = peer
        self.cfg = cfg

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.peer([z], randomize_noise=False)[0]


@torch.no_grad()
def parity(ours: Generator, peer: nn.Module, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Max abs differences of the images from the same z (const noise), the same W (no noise at all), and
    the same W+ (const noise), plus the image scale (max abs of ours) for context."""
    cfg = ours.cfg
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, cfg.z_dim, generator=gen)
    w = ours.mapping(z)
    wplus = ours.mapping(torch.randn(batch * cfg.num_ws, cfg.z_dim, generator=gen)).reshape(batch, cfg.num_ws, -1)
    zeros = [torch.zeros_like(getattr(peer.noises, f"noise_{i}")) for i in range(peer.num_layers)]
    a_z = ours(z, noise_mode="const")
    b_z = peer([z], randomize_noise=False)[0]
    a_w = ours(ws=w, noise_mode="none")
    b_w = peer([w], input_is_latent=True, noise=zeros)[0]
    a_p = ours(ws=wplus, noise_mode="const")
    b_p = peer([wplus], input_is_latent=True, randomize_noise=False)[0]
    return {
        "max_abs_diff_z_const_noise": float((a_z - b_z).abs().max()),
        "max_abs_diff_w_no_noise": float((a_w - b_w).abs().max()),
        "max_abs_diff_wplus_const_noise": float((a_p - b_p).abs().max()),
        "image_max_abs": float(a_z.abs().max()),
    }


def max_parity_diff(result: dict[str, float]) -> float:
    return max(v for k, v in result.items() if k.startswith("max_abs_diff"))


__all__ = ["PeerError", "PeerForward", "check_checkout", "load_rosinality", "max_parity_diff", "parity",
           "peer_generator", "stock_channel_multiplier", "to_rosinality_state_dict"]
