"""Pieces the sections share: the metric networks, per-image values -> Table 1 cells, image conversions,
inverting files in batches, the library versions the numbers depend on."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import platform
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from bgedit_cli import __version__
from bgedit_cli.checkpoint import file_sha256
from bgedit_cli.errors import InputError, one_line
from bgedit_cli.io import to_uint8
from bgedit_cli.latent import Inversion
from bgedit_cli.losses.lpips import MIN_SIZE as LPIPS_MIN_SIZE, LPIPS, build_lpips
from bgedit_cli.metrics.distribution import MetricResult
from bgedit_cli.metrics.features import find_inception
from bgedit_cli.metrics.pairwise import ms_ssim_label, pairwise_metrics
from bgedit_cli.nn.clip_model import ClipEncoder
from bgedit_cli.pipelines.invert import load_item, run_inversion
from bgedit_cli.pipelines.models import Models, load_clip
from bgedit_cli.pipelines.evaluation.section import PAIRWISE
from bgedit_cli.weights import MissingWeightsError

Progress = Callable[[str, int, int], None]  # (stage, done, total)

VALUE_RANGES = {"l2": "[-1, 1]", "lpips": "[-1, 1]", "psnr": "[0, 1]", "ms_ssim": "[0, 1]"}
PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "scipy", "pillow", "lpips", "pytorch-msssim",
            "clip-anytorch")


def parse_names(text: str, known: Sequence[str], option: str) -> tuple[str, ...]:
    """`"ms-ssim, l2"` -> ("l2", "ms_ssim") (in the order of `known`: tables keep Table 1's column order),
    `"all"` -> `known`; unknown or no names are an InputError naming the known ones."""
    if text.strip().lower() == "all":
        return tuple(known)
    names = {n.strip().lower().replace("-", "_") for n in text.split(",") if n.strip()}
    unknown = sorted(n for n in names if n not in known)
    if unknown or not names:
        what = f"unknown {', '.join(unknown)}" if unknown else "no names"
        raise InputError(f"{option} {text!r}: {what}; choose from {', '.join(known)} (comma-separated) or all.")
    return tuple(n for n in known if n in names)


def library_versions() -> dict[str, str | None]:
    """Versions of what the numbers depend on (torch's with its build tag, e.g. +cu130)."""
    out: dict[str, str | None] = {"bgedit": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["torch"] = torch.__version__
    return out


@functools.lru_cache(maxsize=None)
def sha256(path: str) -> str:
    return file_sha256(Path(path))


def weight_info(path: Path) -> dict[str, str]:
    return {"file": str(path), "sha256": sha256(str(path))}


def to_u8(img: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, 3, H, W] (what a PNG of it holds)."""
    return torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2).contiguous()


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [N, 3, H, W] in [-1, 1]."""
    return img.float() / 127.5 - 1


# ----------------------------------------------------------------------------------------------------------
# Metric networks and per-image values.


@dataclasses.dataclass
class MetricNets:
    """The networks of the requested metrics, or why each is unavailable, and the weight files used."""

    lpips: LPIPS | None = None
    lpips_reason: str | None = None
    clip: ClipEncoder | None = None
    clip_reason: str | None = None
    weights: dict[str, Any] = dataclasses.field(default_factory=dict)


def metric_networks(metrics: Sequence[str], *, alexnet: Path | None, clip: Path | None, inception: Path | None,
                    bundle: Path, device: torch.device, resolution: int) -> MetricNets:
    """LPIPS network and CLIP for the requested metrics, or the reason each is unavailable; the weight files."""
    nets = MetricNets()
    if "lpips" in metrics:
        if resolution < LPIPS_MIN_SIZE:
            nets.lpips_reason = (f"LPIPS-Alex needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} px; "
                                 f"these are {resolution} px.")
        else:
            try:
                nets.lpips = build_lpips(alexnet, device)
                nets.weights["alexnet"] = weight_info(nets.lpips.alexnet_path)
                nets.weights["lpips_linear"] = weight_info(nets.lpips.linear_path)
            except MissingWeightsError as exc:
                nets.lpips_reason = one_line(exc)
    if "fd_clip" in metrics:
        try:
            nets.clip = load_clip(bundle, clip, device)
            nets.weights["clip"] = {"file": nets.clip.name, "sha256": nets.clip.sha256}
        except MissingWeightsError as exc:
            nets.clip_reason = one_line(exc)
    if {"fid", "kid"} & set(metrics):
        try:
            nets.weights["inception"] = weight_info(find_inception(inception))
        except MissingWeightsError:
            nets.weights["inception"] = None
    return nets


def score_pairs(x: torch.Tensor, y: torch.Tensor, lpips_net: LPIPS | None = None) -> dict[str, torch.Tensor]:
    """Per-image metrics of x against y, both [N, 3, R, R] in [-1, 1] -> {metric: [N]} on the CPU (LPIPS on the
    network's device)."""
    out = pairwise_metrics(x.float().cpu(), y.float().cpu())
    if lpips_net is not None:
        device = next(lpips_net.parameters()).device
        out["lpips"] = lpips_net(x.float().to(device), y.float().to(device)).cpu()
    return out


class PerImage:
    """Per-image values collected batch by batch under names ({name: {metric: [N]}}), joined once into tensors."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, list[torch.Tensor]]] = {}

    def add(self, name: str, values: Mapping[str, torch.Tensor]) -> None:
        group = self.parts.setdefault(name, {})
        for k, v in values.items():
            group.setdefault(k, []).append(v.detach().cpu())

    def tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {k: torch.cat(v) for k, v in group.items()} for name, group in self.parts.items()}


def means(values: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """{metric: per-image values [N]} -> {metric: mean}, in float64."""
    return {k: float(v.double().mean()) for k, v in values.items()}


def pairwise_results(values: Mapping[str, float], metrics: Sequence[str], resolution: int, num: int,
                     lpips_reason: str | None) -> dict[str, MetricResult]:
    """MetricResults of the requested pairwise metrics from their per-image means (lpips absent: its reason)."""
    out = {}
    for name in (m for m in PAIRWISE if m in metrics):
        settings: dict[str, Any] = {"value_range": VALUE_RANGES[name], "resolution": resolution, "num": num,
                                    "reduction": "mean over images"}
        if name == "ms_ssim":
            settings["computed"] = ms_ssim_label(resolution)
        if name in values:
            out[name] = MetricResult(name, float(values[name]), settings=settings)
        else:
            out[name] = MetricResult.unavailable(name, lpips_reason or "not computed", settings)
    return out


# ----------------------------------------------------------------------------------------------------------
# Inverting files.


def invert_paths(m: Models, images: Sequence[Path], segs: Sequence[Path | None], steps: int, batch_size: int
                 ) -> tuple[Inversion, torch.Tensor | None]:
    """Invert image files (maps where given, else predicted): (Inversion on the CPU, ids [N, R, R] or None)."""
    invs, ids = [], []
    for start in range(0, len(images), batch_size):
        items = [load_item(m, p, s) for p, s in zip(images[start:start + batch_size], segs[start:start + batch_size])]
        inv, seg = run_inversion(m, torch.stack([i[0] for i in items]), [i[1] for i in items],
                                 list(images[start:start + batch_size]), steps)
        invs.append(inv)
        ids.append(seg)
    return Inversion.cat(invs), None if ids[0] is None else torch.cat(ids)


def take(inv: Inversion, index: Sequence[int], device: torch.device | str) -> Inversion:
    """The items `index` of an Inversion, on `device`."""
    idx = torch.tensor(list(index), dtype=torch.long)
    return inv.apply(lambda x: x[idx]).to(device)
