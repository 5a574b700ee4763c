"""Sliced Wasserstein distance between image sets on Laplacian-pyramid patches (Karras et al. 2018, ProGAN).

The metric as in ProGAN's `metrics/sliced_wasserstein.py`, in pure torch:

1. features: images are quantized to uint8 levels (what a PNG holds), read as floats in 0..255, and split
   into a Laplacian pyramid (5x5 binomial filter, mirror borders) with one level per resolution
   R, R/2, ..., 16. From every level, `patches_per_image` random 7x7 neighbourhoods per image are taken
   (descriptors of C*49 values).
2. statistics: each set's descriptors of a level are normalized per colour channel by their own mean and
   standard deviation (ProGAN's `finalize_descriptors`; so SWD compares local structure and relative colour,
   not absolute brightness).
3. metric: `dir_repeats` x `dirs_per_repeat` random unit directions; both sets are projected, sorted, and the
   mean absolute difference of the sorted projections is the 1-D Wasserstein-1 distance; SWD is its mean
   over directions. Reported x 1e3 per level (`swd/64`, `swd/32`, `swd/16`) and their mean (`swd/avg`),
   as in the ProGAN paper's tables. Lower is better; identical sets give exactly 0.

Everything random (patch positions, directions) comes from explicit `torch.Generator`s seeded by `seed`, so a
result is a pure function of (images, settings, seed). Both sets need the same number of descriptors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

SWD_SCALE = 1e3


@dataclasses.dataclass(frozen=True)
class SWDSettings:
    """What a reported SWD depends on (logged with every result)."""

    patches_per_image: int = 8
    nhood_size: int = 7
    min_resolution: int = 16
    dir_repeats: int = 4
    dirs_per_repeat: int = 128
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
# Features: Laplacian pyramid and patch descriptors.


def _binomial_5x5(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    f = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    return torch.outer(f, f) / 256.0


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-channel 5x5 convolution with mirror borders (scipy.ndimage 'mirror' == torch 'reflect')."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n * c, 1, h, w), [2, 2, 2, 2], mode="reflect")  # channels as batch: one plain conv
    return F.conv2d(x, kernel[None, None]).reshape(n, c, h, w)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur then keep every second pixel: [N, C, H, W] -> [N, C, H/2, W/2]."""
    return _blur(x, _binomial_5x5(x.device, x.dtype))[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Zero-insertion upsampling then blur (x4 gain): [N, C, H, W] -> [N, C, 2H, 2W]."""
    n, c, h, w = x.shape
    up = torch.zeros(n, c, h * 2, w * 2, device=x.device, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    return _blur(up, _binomial_5x5(x.device, x.dtype) * 4.0)


def laplacian_pyramid(img: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Finest level first; the last level is the coarsest Gaussian level itself (so the pyramid sums back)."""
    levels = [img]
    for _ in range(num_levels - 1):
        levels.append(pyr_down(levels[-1]))
    for i in range(num_levels - 1):
        levels[i] = levels[i] - pyr_up(levels[i + 1])
    return levels


def swd_resolutions(img_resolution: int, min_resolution: int = 16) -> list[int]:
    """R, R/2, ..., min_resolution (ProGAN: every resolution >= 16)."""
    res, out = img_resolution, []
    while res >= min_resolution:
        out.append(res)
        res //= 2
    if not out:
        raise ValueError(f"images of {img_resolution} px are smaller than min_resolution {min_resolution}")
    return out


def to_uint8_levels(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> floats holding the uint8 values 0..255 an image file would store."""
    return ((img.float().clamp(-1, 1) + 1) * 127.5).round()


def patch_descriptors(level: torch.Tensor, patches_per_image: int, nhood_size: int,
                      generator: torch.Generator) -> torch.Tensor:
    """Random `nhood_size`^2 neighbourhoods: [N, C, H, W] -> [N * patches_per_image, C, k, k]."""
    n, c, h, w = level.shape
    k = nhood_size
    ys = torch.randint(0, h - k + 1, (n, patches_per_image), generator=generator).to(level.device)
    xs = torch.randint(0, w - k + 1, (n, patches_per_image), generator=generator).to(level.device)
    offs = torch.arange(k, device=level.device)
    iy = (ys[:, :, None] + offs)[:, :, :, None]  # (N, P, k, 1)
    ix = (xs[:, :, None] + offs)[:, :, None, :]  # (N, P, 1, k)
    ib = torch.arange(n, device=level.device)[:, None, None, None]
    patches = level.permute(0, 2, 3, 1)[ib, iy, ix]  # (N, P, k, k, C)
    return patches.reshape(n * patches_per_image, k, k, c).permute(0, 3, 1, 2)


def image_descriptors(images: torch.Tensor, settings: SWDSettings, *, batch_size: int = 256) -> list[torch.Tensor]:
    """Raw descriptors per pyramid level (finest first) for images [N, C, R, R] in [-1, 1]."""
    num_levels = len(swd_resolutions(images.shape[-1], settings.min_resolution))
    gen = torch.Generator().manual_seed(settings.seed)
    out: list[list[torch.Tensor]] = [[] for _ in range(num_levels)]
    for start in range(0, images.shape[0], batch_size):
        chunk = to_uint8_levels(images[start:start + batch_size])
        for i, level in enumerate(laplacian_pyramid(chunk, num_levels)):
            out[i].append(patch_descriptors(level, settings.patches_per_image, settings.nhood_size, gen).cpu())
    return [torch.cat(d) for d in out]


# ----------------------------------------------------------------------------------------------------------
# Statistics and metric.


def normalize_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """Per-channel standardization over the whole set: [M, C, k, k] -> [M, C*k*k] (ProGAN)."""
    desc = desc.double()
    mean = desc.mean(dim=[0, 2, 3], keepdim=True)
    std = desc.std(dim=[0, 2, 3], keepdim=True, unbiased=False)
    return ((desc - mean) / std.clamp_min(1e-12)).reshape(desc.shape[0], -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, *, dir_repeats: int = 4, dirs_per_repeat: int = 128,
                       generator: torch.Generator | None = None) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance of the projections of a, b: [M, D]."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two [M, D] sets of equal size, got {list(a.shape)} and {list(b.shape)}")
    a, b = a.double(), b.double()
    results = []
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=generator, dtype=torch.float64).to(a.device)
        dirs = dirs / dirs.square().sum(dim=0, keepdim=True).sqrt()
        proj_a = (a @ dirs).sort(dim=0).values
        proj_b = (b @ dirs).sort(dim=0).values
        results.append((proj_a - proj_b).abs().mean())
    return float(torch.stack(results).mean())


class SWDReference:
    """The real side computed once: `ref = SWDReference(real_images, settings)`, then `ref(fake_images)`."""

    def __init__(self, real_images: torch.Tensor, settings: SWDSettings | None = None) -> None:
        self.settings = settings or SWDSettings()
        self.resolutions = swd_resolutions(real_images.shape[-1], self.settings.min_resolution)
        self.num_images = real_images.shape[0]
        self.real = [normalize_descriptors(d) for d in image_descriptors(real_images, self.settings)]

    def __call__(self, fake_images: torch.Tensor) -> dict[str, float]:
        if fake_images.shape[0] != self.num_images:
            raise ValueError(f"SWD needs as many fake images as real ones ({self.num_images}), got "
                             f"{fake_images.shape[0]}")
        fake = [normalize_descriptors(d) for d in image_descriptors(fake_images, self.settings)]
        return swd_from_descriptors(self.real, fake, self.resolutions, self.settings)


def swd_from_descriptors(real: list[torch.Tensor], fake: list[torch.Tensor], resolutions: list[int],
                         settings: SWDSettings) -> dict[str, float]:
    s = settings
    result: dict[str, float] = {}
    for i, (res, a, b) in enumerate(zip(resolutions, real, fake)):
        gen = torch.Generator().manual_seed(s.seed * 1000 + i + 1)
        result[f"swd/{res}"] = SWD_SCALE * sliced_wasserstein(a, b, dir_repeats=s.dir_repeats,
                                                              dirs_per_repeat=s.dirs_per_repeat, generator=gen)
    result["swd/avg"] = sum(result.values()) / len(resolutions)
    return result


def sliced_wasserstein_distance(real_images: torch.Tensor, fake_images: torch.Tensor,
                                settings: SWDSettings | None = None) -> dict[str, float]:
    """SWD x 1e3 per level and averaged, for two sets of [N, C, R, R] images in [-1, 1] (same N)."""
    return SWDReference(real_images, settings)(fake_images)
