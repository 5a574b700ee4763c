"""Sliced Wasserstein distance (ProGAN): pyramid, descriptors, closed forms, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bgedit_cli.metrics.swd import (SWDReference, SWDSettings, image_descriptors, laplacian_pyramid,
                                    normalize_descriptors, patch_descriptors, pyr_up, sliced_wasserstein,
                                    sliced_wasserstein_distance, swd_resolutions)


def smooth_images(n: int, seed: int, cells: int = 8, size: int = 32) -> torch.Tensor:
    """Random low-frequency images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, cells, cells, generator=g) * 0.5
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)


def test_laplacian_pyramid_sums_back_to_the_image():
    x = torch.rand(2, 3, 64, 64) * 255
    levels = laplacian_pyramid(x, 3)
    assert [lvl.shape[-1] for lvl in levels] == [64, 32, 16]
    rebuilt = levels[-1]
    for lvl in reversed(levels[:-1]):
        rebuilt = pyr_up(rebuilt) + lvl
    assert torch.allclose(rebuilt, x, atol=1e-3)
    # A constant image has no detail: all Laplacian levels but the coarsest are 0 (mirror borders).
    const = laplacian_pyramid(torch.full((1, 3, 32, 32), 7.0), 2)
    assert const[0].abs().max() < 1e-5 and torch.allclose(const[1], torch.full_like(const[1], 7.0))


def test_resolutions_and_descriptor_shapes():
    assert swd_resolutions(256) == [256, 128, 64, 32, 16] and swd_resolutions(16) == [16]
    with pytest.raises(ValueError):
        swd_resolutions(8)
    level = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10)
    d = patch_descriptors(level, 5, 7, torch.Generator().manual_seed(0))
    assert d.shape == (10, 3, 7, 7)
    # Every descriptor is a contiguous 7x7 window of its own image.
    for i in range(10):
        n = i // 5
        y, x = divmod(int(d[i, 0, 0, 0].item()) - n * 300, 10)
        assert torch.equal(d[i], level[n, :, y:y + 7, x:x + 7])
    descs = image_descriptors(smooth_images(4, 0), SWDSettings(patches_per_image=3))
    assert [t.shape for t in descs] == [(12, 3, 7, 7), (12, 3, 7, 7)]
    z = normalize_descriptors(descs[0])
    assert z.shape == (12, 147)
    per_channel = z.reshape(12, 3, 49)
    assert torch.allclose(per_channel.mean(dim=[0, 2]), torch.zeros(3, dtype=z.dtype), atol=1e-9)
    assert torch.allclose(per_channel.std(dim=[0, 2], unbiased=False), torch.ones(3, dtype=z.dtype), atol=1e-9)


def test_sliced_wasserstein_of_a_shift_is_the_mean_projected_shift():
    # B = A + s: each sorted projection moves by d.s, so SW1 = mean_d |d.s| exactly, ~ |s| sqrt(2 / (pi D)).
    a = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = torch.zeros(16, dtype=torch.float64)
    s[0] = 3.0
    got = sliced_wasserstein(a, a + s, dir_repeats=4, dirs_per_repeat=256, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    dirs = torch.cat([torch.randn(16, 256, generator=g, dtype=torch.float64) for _ in range(4)], dim=1)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    assert got == pytest.approx(float((dirs.T @ s).abs().mean()), rel=1e-9)
    assert got == pytest.approx(3.0 * math.sqrt(2 / (math.pi * 16)), rel=0.1)
    assert sliced_wasserstein(a, a.flip(0), generator=torch.Generator().manual_seed(1)) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError):
        sliced_wasserstein(a, a[:10])


def test_swd_identical_sets_zero_same_distribution_small_other_distribution_large():
    real = smooth_images(128, seed=1)
    settings = SWDSettings(patches_per_image=64)
    same = sliced_wasserstein_distance(real, real.clone(), settings)
    assert set(same) == {"swd/32", "swd/16", "swd/avg"}
    assert all(v == 0.0 for v in same.values())

    other_sample = sliced_wasserstein_distance(real, smooth_images(128, seed=2), settings)
    sharper = sliced_wasserstein_distance(real, smooth_images(128, seed=2, cells=32), settings)  # more detail
    # With 8192 descriptors per level, two samples of one distribution still differ by ~30 (sampling noise).
    assert other_sample["swd/avg"] < 40
    assert sharper["swd/avg"] > 2.5 * other_sample["swd/avg"]
    assert sharper["swd/32"] > sharper["swd/16"]  # the fine level sees the extra detail most
    assert other_sample["swd/avg"] == pytest.approx((other_sample["swd/32"] + other_sample["swd/16"]) / 2)


def test_swd_is_deterministic_given_the_seed_and_reuses_the_real_side():
    real, fake = smooth_images(64, 3), smooth_images(64, 4, cells=16)
    ref = SWDReference(real, SWDSettings(patches_per_image=8, seed=7))
    first, second = ref(fake), ref(fake)
    assert first == second
    assert first == sliced_wasserstein_distance(real, fake, SWDSettings(patches_per_image=8, seed=7))
    assert first != sliced_wasserstein_distance(real, fake, SWDSettings(patches_per_image=8, seed=8))
    with pytest.raises(ValueError, match="as many fake images"):
        ref(fake[:10])
