"""Pairwise image metrics as pure functions: `metric(x, y) -> [N]`, one value per image pair.

Inputs are images in [-1, 1] (what the networks produce), shape [N, C, H, W]; each function states the value
range it measures in, following HyperInverter's evaluation:

- `l2`: mean squared error on [-1, 1] (per image; HyperInverter's "L2").
- `psnr`: `10 log10(1 / MSE)` on [0, 1] per image; identical images give `inf`.
- `ms_ssim`: MS-SSIM (Wang et al. 2003) on [0, 1], Gaussian window 11 / sigma 1.5, K = (0.01, 0.03), the standard
  five-scale weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). At >= 161 px it is `pytorch_msssim.ms_ssim`
  itself. Smaller images cannot hold four 2x downsamplings with an 11-px window, so `ms_ssim_scales(size)`
  keeps the first L scales that fit (`size > 10 * 2**(L-1)`: L = 3 at 64 px, 2 at 32 px, 1 at 16 px) and
  renormalises their weights to sum 1; at L = 1 this is plain SSIM. `ms_ssim_label(size)` names what was
  computed ("ms_ssim", "ms_ssim[3 scales]", "ssim") and every report carries it. Same code, same numbers as
  pytorch_msssim wherever both apply (tested). Differentiable (`1 - ms_ssim` is a loss).
- `lpips`: LPIPS-Alex v0.1 on [-1, 1]: pass an `LPIPS` module (bgedit_cli.losses.lpips), which needs the AlexNet
  weights; without them there is no number (`build_lpips` raises `MissingWeightsError`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as reference_ms_ssim

from bgedit_cli.nn.ops import assert_shape

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE, WIN_SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    assert_shape(x, [None, None, None, None], "x")
    assert_shape(y, list(x.shape), "y")


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image on [-1, 1]: [N]."""
    _check(x, y)
    return (x.float() - y.float()).square().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image on [0, 1] (inputs in [-1, 1], clamped): [N]; `inf` where the images are equal."""
    _check(x, y)
    mse = (to_unit(x) - to_unit(y)).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)  # 1/0 -> inf


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def ms_ssim_scales(size: int, win_size: int = WIN_SIZE) -> int:
    """How many of the five MS-SSIM scales fit an image whose smaller side is `size` (0 if none)."""
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and size > (win_size - 1) * 2 ** scales:
        scales += 1
    return scales


def ms_ssim_label(size: int) -> str:
    """What `ms_ssim` computes at this image size: "ms_ssim", "ms_ssim[L scales]" or "ssim"."""
    scales = ms_ssim_scales(size)
    return "ms_ssim" if scales == len(MS_SSIM_WEIGHTS) else "ssim" if scales == 1 else f"ms_ssim[{scales} scales]"


def _gauss_window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(WIN_SIZE, dtype=torch.float32) - WIN_SIZE // 2
    g = torch.exp(-coords.square() / (2 * WIN_SIGMA**2))
    g = (g / g.sum()).to(device, dtype)
    return g.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)  # (C, 1, 1, k)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure terms per image and channel ([N, C] each), data range 1, valid filtering."""
    c = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, win, groups=c)  # along W
        return F.conv2d(t, win.transpose(2, 3), groups=c)  # along H

    c1, c2 = K1**2, K2**2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x.square()
    syy = blur(y * y) - mu_y.square()
    sxy = blur(x * y) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image on [0, 1] (inputs in [-1, 1], clamped): [N]. Fewer scales below 161 px (module doc)."""
    _check(x, y)
    size = min(x.shape[-2:])
    scales = ms_ssim_scales(size)
    if scales == 0:
        raise ValueError(f"ms_ssim needs images larger than {WIN_SIZE - 1} px, got {x.shape[-1]}x{x.shape[-2]}")
    a, b = to_unit(x), to_unit(y)
    if scales == len(MS_SSIM_WEIGHTS):
        return reference_ms_ssim(a, b, data_range=1.0, size_average=False, win_size=WIN_SIZE, win_sigma=WIN_SIGMA,
                         weights=list(MS_SSIM_WEIGHTS), K=(K1, K2))
    return _ms_ssim(a, b, scales)


def _ms_ssim(a: torch.Tensor, b: torch.Tensor, scales: int) -> torch.Tensor:
    """MS-SSIM over the first `scales` scales (weights renormalised) of images in [0, 1]: [N]."""
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=a.device, dtype=a.dtype)
    weights = weights / weights.sum()
    win = _gauss_window(a.shape[1], a.device, a.dtype)
    terms = []
    for i in range(scales):
        ssim, cs = _ssim_cs(a, b, win)
        if i < scales - 1:
            terms.append(torch.relu(cs))
            pad = [s % 2 for s in a.shape[2:]]
            a, b = F.avg_pool2d(a, 2, padding=pad), F.avg_pool2d(b, 2, padding=pad)
    terms.append(torch.relu(ssim))
    stacked = torch.stack(terms)  # (L, N, C)
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(1)

def lpips(x: torch.Tensor, y: torch.Tensor, net: "torch.nn.Module") -> torch.Tensor:
    """LPIPS per image on [-1, 1] with a loaded `bgedit_cli.losses.lpips.LPIPS` network: [N]."""
    _check(x, y)
    return net(x, y)


def pairwise_metrics(x: torch.Tensor, y: torch.Tensor, lpips_net: "torch.nn.Module | None" = None
                     ) -> dict[str, torch.Tensor]:
    """All metrics per image ([N] each) under their report names; `lpips` only with a network."""
    out = {"l2": l2(x, y), "psnr": psnr(x, y), "ms_ssim": ms_ssim(x, y)}
    if lpips_net is not None:
        out["lpips"] = lpips(x, y, lpips_net)
    return out

