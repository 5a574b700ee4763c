"""Import NVlabs stylegan2-ada-pytorch `network-snapshot-*.pkl` generators without running their code.

A snapshot is a pickle of `{training_set_kwargs, G, D, G_ema, augment_pipe}` whose networks are
"persistent objects": `torch_utils.persistence._reconstruct_persistent_obj(meta)` with the module's source
text in `meta["module_src"]` and its `__dict__` in `meta["state"]`. A restricted unpickler resolves only the
globals below; the persistence hook returns `meta` as a dict (the source text is never executed), tensors are
rebuilt by torch's own weights-only loader, and numpy scalars/dtypes by small checked stand-ins.
"""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bgedit_cli.convert.common import ConvertedGenerator, infer_mapping, require
from bgedit_cli.errors import CheckpointError
from bgedit_cli.nn.stylegan2 import GeneratorConfig


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""


def _persistent_obj(meta: Any) -> dict:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("malformed persistent object")
    return {"class_name": meta.get("class_name"), "state": meta["state"]}


def _load_tensor_bytes(data: bytes) -> Any:
    # Each storage is an embedded torch stream; torch's weights-only loader admits only tensor types.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _numpy_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtypes are not allowed")
    return dt


def _numpy_scalar(dtype: np.dtype, data: bytes = b"") -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only plain numeric numpy scalars are allowed")
    return np.frombuffer(data, dtype=dtype)[0]


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_tensor_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("dnnlib.util", "EasyDict"): EasyDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_snapshot(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f).load()
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if msg.startswith("refusing global"):
            raise CheckpointError(f"{path}: the pickle {msg} (only StyleGAN2 network snapshots are read; "
                                  "nothing in it was run).") from None
        raise CheckpointError(f"{path}: not a readable NVIDIA network pickle ({msg[:160]}).") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError,
            MemoryError, OverflowError) as exc:
        raise CheckpointError(f"{path}: damaged or truncated pickle ({type(exc).__name__}: {str(exc)[:120]}).") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict, found {type(obj).__name__}.")
    return obj


def module_state_dict(node: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk a persistent-object tree like nn.Module.state_dict(): parameters, persistent buffers, children."""
    state = node["state"]
    out: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, t in (state.get("_parameters") or {}).items():
        if t is not None:
            out[prefix + name] = t.detach()
    for name, t in (state.get("_buffers") or {}).items():
        if t is not None and name not in skip:
            out[prefix + name] = t.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, prefix + name + "."))
    return out


def convert_nvidia(path: Path, which: str = "g_ema") -> ConvertedGenerator:
    snap = load_snapshot(path)
    key = {"g_ema": "G_ema", "g": "G"}.get(which, which)
    node = snap.get(key)
    if not isinstance(node, dict) or "state" not in node:
        found = ", ".join(sorted(map(str, snap))) or "nothing"
        raise CheckpointError(f"{path}: no '{key}' network in this snapshot (found: {found}).")
    state = node["state"]
    init = dict(state.get("_init_kwargs") or {})
    if int(init.get("c_dim", 0) or 0) > 0:
        raise CheckpointError(f"{path}: conditional generators (c_dim > 0) are not supported.")
    src = {k: v.float() for k, v in module_state_dict(node).items()}
    synth_kwargs = dict(init.get("synthesis_kwargs") or {})
    arch = synth_kwargs.get("architecture", "skip")
    if arch != "skip":
        raise CheckpointError(f"{path}: synthesis architecture '{arch}' is not supported (only 'skip').")

    # Shapes -> config.
    num_mapping, z_dim, w_dim = infer_mapping(src, "mapping.fc{}.weight", start=0, path=path)
    res_list = []
    r = 4
    while f"synthesis.b{r}.torgb.weight" in src:
        res_list.append(r)
        r *= 2
    if not res_list:
        raise CheckpointError(f"{path}: no synthesis blocks found; not a StyleGAN2 generator.")
    channels = [require(src, f"synthesis.b{res}.conv1.weight", path).shape[0] for res in res_list]
    lr_mul = float((init.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01))
    conv_clamp = synth_kwargs.get("conv_clamp")
    cfg = GeneratorConfig(
        img_resolution=res_list[-1], img_channels=src[f"synthesis.b{res_list[-1]}.torgb.weight"].shape[0],
        z_dim=z_dim, w_dim=w_dim, mapping_layers=num_mapping, mapping_lr_mul=lr_mul,
        channels=tuple(channels), conv_clamp=None if conv_clamp is None else float(conv_clamp),
    )

    # Tensors -> our names.
    out: dict[str, torch.Tensor] = {}
    for i in range(num_mapping):
        out[f"mapping.fc{i}.weight"] = src[f"mapping.fc{i}.weight"]
        out[f"mapping.fc{i}.bias"] = src[f"mapping.fc{i}.bias"]
    out["synthesis.const"] = require(src, "synthesis.b4.const", path)
    layers = [("b4", "conv1")] + [(f"b{res}", c) for res in res_list[1:] for c in ("conv0", "conv1")]
    for j, (block, conv) in enumerate(layers):
        name = f"synthesis.{block}.{conv}"
        dst = f"synthesis.convs.{j}"
        out[f"{dst}.weight"] = require(src, f"{name}.weight", path)
        out[f"{dst}.bias"] = require(src, f"{name}.bias", path)
        out[f"{dst}.affine.weight"] = require(src, f"{name}.affine.weight", path)
        out[f"{dst}.affine.bias"] = require(src, f"{name}.affine.bias", path)
        out[f"{dst}.noise_strength"] = require(src, f"{name}.noise_strength", path).reshape([])
        out[f"{dst}.noise_const"] = require(src, f"{name}.noise_const", path)
    for k, res in enumerate(res_list):
        name = f"synthesis.b{res}.torgb"
        dst = f"synthesis.torgbs.{k}"
        for part in ("weight", "bias", "affine.weight", "affine.bias"):
            out[f"{dst}.{part}"] = require(src, f"{name}.{part}", path)
    notes = {"mapping_lr_mul": f"{lr_mul}"}
    if "mapping.w_avg" in src:
        out["mapping.w_avg"] = src["mapping.w_avg"]
        notes["w_avg"] = "from mapping.w_avg"
    else:
        notes["w_avg"] = "computed: mean of mapping(z) over 10000 z (seed 0); the file has no w_avg"
    return ConvertedGenerator(config=cfg, state_dict=out, source_format="nvidia-pkl", which=key, notes=notes)
