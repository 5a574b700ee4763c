"""Pairwise metrics: closed forms, value ranges, MS-SSIM parity with pytorch_msssim and its small-image rule."""

from __future__ import annotations

import math

import pytest
import torch

from bgedit_cli.metrics import pairwise as pm


def pair(size: int = 64, n: int = 3, noise: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return x, (x + noise * torch.randn(x.shape, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("size", [16, 32, 64, 176])
def test_identical_images(size):
    x, _ = pair(size)
    out = pm.pairwise_metrics(x, x)
    assert torch.equal(out["l2"], torch.zeros(3))
    assert torch.isinf(out["psnr"]).all() and (out["psnr"] > 0).all()
    torch.testing.assert_close(out["ms_ssim"], torch.ones(3), atol=1e-6, rtol=0)


def test_closed_forms_l2_psnr():
    x = torch.full((1, 3, 8, 8), -1.0)
    y = torch.full((1, 3, 8, 8), 1.0)
    assert pm.l2(x, y).item() == 4.0  # on [-1, 1]
    assert pm.psnr(x, y).item() == 0.0  # on [0, 1]: MSE 1
    y = x + 0.2  # 0.1 on [0, 1] -> MSE 0.01 -> 20 dB
    assert pm.psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)
    assert pm.l2(x, y).item() == pytest.approx(0.04, abs=1e-6)
    # Values outside [-1, 1] are clamped for PSNR (what a saved PNG would hold).
    assert pm.psnr(x - 5, x).item() == math.inf


def test_ms_ssim_equals_pytorch_msssim():
    from pytorch_msssim import ms_ssim, ssim

    x, y = pair(176, n=2)
    a, b = pm.to_unit(x), pm.to_unit(y)
    ref = ms_ssim(a, b, data_range=1.0, size_average=False)
    torch.testing.assert_close(pm.ms_ssim(x, y), ref)
    torch.testing.assert_close(pm._ms_ssim(a, b, 5), ref, atol=1e-6, rtol=1e-5)  # the small-image code path
    x, y = pair(16, n=2)  # one scale is SSIM
    torch.testing.assert_close(pm.ms_ssim(x, y), ssim(pm.to_unit(x), pm.to_unit(y), data_range=1.0,
                                                      size_average=False), atol=1e-6, rtol=1e-5)


def test_ms_ssim_scales_and_labels():
    assert [pm.ms_ssim_scales(s) for s in (10, 11, 16, 32, 64, 128, 160, 161, 256)] == [0, 1, 1, 2, 3, 4, 4, 5, 5]
    assert pm.ms_ssim_label(256) == "ms_ssim" and pm.ms_ssim_label(64) == "ms_ssim[3 scales]"
    assert pm.ms_ssim_label(16) == "ssim"
    with pytest.raises(ValueError, match="larger than 10 px"):
        pm.ms_ssim(*pair(8))


def test_metrics_order_with_noise_and_gradients():
    x, small = pair(64, noise=0.05)
    _, large = pair(64, noise=0.4)
    assert (pm.l2(x, small) < pm.l2(x, large)).all()
    assert (pm.psnr(x, small) > pm.psnr(x, large)).all()
    assert (pm.ms_ssim(x, small) > pm.ms_ssim(x, large)).all()
    y = large.clone().requires_grad_(True)
    (1 - pm.ms_ssim(x, y)).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_shape_mismatch_is_refused():
    x, _ = pair(32)
    with pytest.raises(ValueError, match="expected shape"):
        pm.l2(x, x[:, :, :16])
