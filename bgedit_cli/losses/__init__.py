"""Training losses and where their pretrained weights come from.

- `weights`: lookup of the auxiliary files (AlexNet for LPIPS, MoCo v2), clear errors when missing.
- `lpips`: LPIPS-Alex v0.1 (`LPIPS`, `build_lpips`).
- `moco`: MoCo-v2 feature similarity (`MocoLoss`, `build_moco`).
- here: `InversionLoss`, the weighted sum used to train the inversion networks.

Inversion loss (HyperStyle's recipe for non-face domains): `l2 * MSE + lpips * LPIPS-Alex + moco * (1 - cos MoCo)`
with lambdas 1.0 / 0.8 / 0.5 (`HYPERSTYLE_LAMBDAS`), plus optional weight-free terms:
`ms_ssim * (1 - MS-SSIM)` (fewer scales below 161 px, see `bgedit_cli.metrics.pairwise`) and
`msl1 * multi-scale L1` (mean absolute error at full, 1/2 and 1/4 resolution, averaged).
A term with lambda 0 is not computed and its network is not loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.errors import InputError
from bgedit_cli.losses.lpips import MIN_SIZE, build_lpips
from bgedit_cli.losses.moco import build_moco
from bgedit_cli.metrics.pairwise import ms_ssim, ms_ssim_label

LOSS_NAMES = ("l2", "lpips", "moco", "ms_ssim", "msl1")


@dataclasses.dataclass(frozen=True)
class LossLambdas:
    """Weight of each inversion loss term (0 = off)."""

    l2: float = 1.0
    lpips: float = 0.8
    moco: float = 0.5
    ms_ssim: float = 0.0
    msl1: float = 0.0

    def __post_init__(self) -> None:
        for name in LOSS_NAMES:
            value = getattr(self, name)
            if not value >= 0:
                raise InputError(f"--{name.replace('_', '-')}-lambda {value}: must be >= 0.")
        if not any(getattr(self, n) > 0 for n in LOSS_NAMES):
            raise InputError("every loss lambda is 0: nothing to train on; give at least one a positive weight.")

    def active(self) -> dict[str, float]:
        return {n: getattr(self, n) for n in LOSS_NAMES if getattr(self, n) > 0}

    def needs_weights(self) -> list[str]:
        return [n for n in ("lpips", "moco") if getattr(self, n) > 0]


HYPERSTYLE_LAMBDAS = LossLambdas(l2=1.0, lpips=0.8, moco=0.5)


def multiscale_l1(y_hat: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean absolute error at full, 1/2, 1/4 ... resolution (2x2 average pooling), averaged: [N]."""
    total = 0.0
    for i in range(scales):
        total = total + (y_hat - y).abs().flatten(1).mean(1)
        if i < scales - 1:
            if min(y.shape[-2:]) < 2:
                return total / (i + 1)
            y_hat, y = F.avg_pool2d(y_hat, 2), F.avg_pool2d(y, 2)
    return total / scales


class InversionLoss(nn.Module):
    """`loss(y_hat, y) -> (total scalar, {term: scalar})` for images in [-1, 1]; the dict holds every active
    term unweighted (means over the batch), for logging."""

    def __init__(self, lambdas: LossLambdas, lpips_net: nn.Module | None = None, moco_net: nn.Module | None = None
                 ) -> None:
        super().__init__()
        if lambdas.lpips > 0 and lpips_net is None or lambdas.moco > 0 and moco_net is None:
            raise ValueError("an LPIPS/MoCo network is needed for a positive lpips/moco lambda")
        self.lambdas = lambdas
        self.lpips_net = lpips_net if lambdas.lpips > 0 else None
        self.moco_net = moco_net if lambdas.moco > 0 else None

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y_hat, y = y_hat.float(), y.float()
        lam = self.lambdas
        terms: dict[str, torch.Tensor] = {}
        if lam.l2 > 0:
            terms["l2"] = F.mse_loss(y_hat, y)
        if lam.lpips > 0:
            terms["lpips"] = self.lpips_net(y_hat, y).mean()
        if lam.moco > 0:
            terms["moco"] = self.moco_net(y_hat, y).mean()
        if lam.ms_ssim > 0:
            terms["ms_ssim"] = 1 - ms_ssim(y_hat, y).mean()
        if lam.msl1 > 0:
            terms["msl1"] = multiscale_l1(y_hat, y).mean()
        total = sum(getattr(lam, k) * v for k, v in terms.items())
        return total, terms

    def describe(self, resolution: int) -> dict[str, Any]:
        """What this loss computes, for run logs and checkpoint provenance."""
        out: dict[str, Any] = {"lambdas": self.lambdas.active()}
        if self.lambdas.ms_ssim > 0:
            out["ms_ssim_variant"] = ms_ssim_label(resolution)
        if self.lpips_net is not None:
            out["lpips"] = {"net": "alex", "version": "0.1", "alexnet": str(self.lpips_net.alexnet_path),
                            "linear_layers": str(self.lpips_net.linear_path)}
        if self.moco_net is not None:
            out["moco"] = {"file": str(self.moco_net.path), "input": "nearest resize to 224, [-1, 1]"}
        return out


def build_inversion_loss(lambdas: LossLambdas, *, alexnet: str | Path | None = None, moco: str | Path | None = None,
                         resolution: int | None = None, device: str | torch.device = "cpu") -> InversionLoss:
    """Load what the active terms need (MissingWeightsError naming the file when absent); check sizes."""
    lpips_net = moco_net = None
    if lambdas.lpips > 0:
        if resolution is not None and resolution < MIN_SIZE:
            raise InputError(f"the LPIPS loss needs images of at least {MIN_SIZE} px, this model is {resolution} px; "
                             "use --lpips-lambda 0.")
        lpips_net = build_lpips(alexnet, device, purpose="the LPIPS loss (torchvision's ImageNet AlexNet; "
                                                           "--lpips-lambda 0 trains without it, as presets tiny and "
                                                           "demo do)")
    if lambdas.moco > 0:
        moco_net = build_moco(moco, device, purpose="the MoCo loss (facebookresearch/moco's MoCo v2 ResNet-50; "
                                                    "--moco-lambda 0 trains without it, as presets tiny and demo do)")
    if lambdas.ms_ssim > 0 and resolution is not None and resolution <= 10:
        raise InputError(f"the MS-SSIM loss needs images larger than 10 px, this model is {resolution} px; "
                         "use --ms-ssim-lambda 0.")
    return InversionLoss(lambdas, lpips_net, moco_net).to(device)
