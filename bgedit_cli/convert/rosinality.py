"""Import rosinality/stylegan2-pytorch generator checkpoints (`.pt`, also used by pSp, e4e, HyperStyle, StyleCLIP).

Two layouts occur in the wild: converted files `{g_ema, latent_avg}` and train.py checkpoints
`{g, d, g_ema, g_optim, d_optim, args, ...}`. Both are read with `torch.load(weights_only=True)`; the only
non-tensor global allowed is `argparse.Namespace` (train.py's `args`), so no pickled code can run.
"""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path

import torch

from bgedit_cli.convert.common import ConvertedGenerator, infer_mapping, require
from bgedit_cli.errors import CheckpointError
from bgedit_cli.nn.stylegan2 import GeneratorConfig

# rosinality's mapping lr multiplier (`lr_mlp`); it is not stored in the files.
DEFAULT_LR_MLP = 0.01


def load_rosinality_file(path: Path) -> dict:
    """torch.load with weights_only=True plus argparse.Namespace; any failure becomes a CheckpointError."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            KeyError, IndexError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Unsupported global" in str(exc) or "weights_only" in str(exc).lower():
            first = "it references Python objects that are not plain tensors (refused for safety)"
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint: {first[:200]}.") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of state dicts, found {type(obj).__name__}.")
    return obj


def convert_rosinality(path: Path, which: str = "g_ema") -> ConvertedGenerator:
    """Read a rosinality checkpoint and return our generator state dict and config."""
    ckpt = load_rosinality_file(path)
    if which not in ckpt:
        found = ", ".join(sorted(map(str, ckpt))) or "nothing"
        raise CheckpointError(f"{path}: no '{which}' generator in this file (found: {found}). Try --which g or g_ema.")
    src = ckpt[which]
    if not isinstance(src, dict) or not all(isinstance(v, torch.Tensor) for v in src.values()):
        raise CheckpointError(f"{path}: '{which}' is not a state dict of tensors.")
    src = {k: v.float() for k, v in src.items()}

    # Shapes -> config.
    num_mapping, z_dim, w_dim = infer_mapping(src, "style.{}.weight", start=1, path=path)
    const = require(src, "input.input", path)
    noise_keys = sorted((k for k in src if re.fullmatch(r"noises\.noise_\d+", k)), key=lambda k: int(k.split("_")[-1]))
    num_convs = 1 + 2 * sum(1 for k in src if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    channels = [const.shape[1]]
    for j in range(1, num_convs, 2):
        channels.append(require(src, f"convs.{j}.conv.weight", path).shape[1])
    cfg = GeneratorConfig(
        img_resolution=4 * 2 ** (len(channels) - 1),
        img_channels=require(src, "to_rgb1.conv.weight", path).shape[1],
        z_dim=z_dim, w_dim=w_dim, mapping_layers=num_mapping, mapping_lr_mul=DEFAULT_LR_MLP,
        channels=tuple(channels), conv_clamp=None,
    )

    # Tensors -> our names.
    out: dict[str, torch.Tensor] = {}
    for i in range(num_mapping):
        out[f"mapping.fc{i}.weight"] = src[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = src[f"style.{i + 1}.bias"]
    out["synthesis.const"] = const[0]
    if len(noise_keys) != num_convs:
        raise CheckpointError(f"{path}: expected {num_convs} noise buffers (noises.noise_*), found {len(noise_keys)}.")
    for j in range(num_convs):
        name = "conv1" if j == 0 else f"convs.{j - 1}"
        dst = f"synthesis.convs.{j}"
        out[f"{dst}.weight"] = require(src, f"{name}.conv.weight", path)[0]
        out[f"{dst}.bias"] = require(src, f"{name}.activate.bias", path)
        out[f"{dst}.affine.weight"] = require(src, f"{name}.conv.modulation.weight", path)
        out[f"{dst}.affine.bias"] = require(src, f"{name}.conv.modulation.bias", path)
        out[f"{dst}.noise_strength"] = require(src, f"{name}.noise.weight", path).reshape([])
        out[f"{dst}.noise_const"] = src[f"noises.noise_{j}"][0, 0]
    for k in range(len(channels)):
        name = "to_rgb1" if k == 0 else f"to_rgbs.{k - 1}"
        dst = f"synthesis.torgbs.{k}"
        out[f"{dst}.weight"] = require(src, f"{name}.conv.weight", path)[0]
        out[f"{dst}.bias"] = require(src, f"{name}.bias", path).reshape(-1)
        out[f"{dst}.affine.weight"] = require(src, f"{name}.conv.modulation.weight", path)
        out[f"{dst}.affine.bias"] = require(src, f"{name}.conv.modulation.bias", path)

    latent_avg = ckpt.get("latent_avg")
    notes = {}
    if isinstance(latent_avg, torch.Tensor):
        out["mapping.w_avg"] = latent_avg.float().reshape(-1)
        notes["w_avg"] = "from latent_avg"
    else:
        notes["w_avg"] = "computed: mean of mapping(z) over 10000 z (seed 0); the file has no latent_avg"
    notes["mapping_lr_mul"] = f"{DEFAULT_LR_MLP} (rosinality default; not stored in the file)"
    return ConvertedGenerator(config=cfg, state_dict=out, source_format="rosinality", which=which, notes=notes)
