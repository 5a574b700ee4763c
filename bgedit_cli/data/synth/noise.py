"""Noise fields and random draws of the renderer.

Fractal value noise (`fbm1`, `fbm2`), windows of a few large periodic fBm textures built once per process from
fixed seeds (`noise`, `bank_at`; `warm_up` builds them before worker processes fork), an integer hash
(`hash01`), `smoothstep`, and `pick` (a weighted choice that draws exactly one uniform number).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=128)
def _lerp_index(n_out: int, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell index and smoothstep weight of n_out samples spread over n_cells cells."""
    t = (np.arange(n_out, dtype=np.float32) + 0.5) * (n_cells / n_out)
    i = np.minimum(t.astype(np.intp), n_cells - 1)
    f = t - i
    return i, (f * f * (3 - 2 * f)).astype(np.float32)


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Smooth value-noise upsampling of a [gh+1, gw+1] grid to [h, w] (separable, gathers only)."""
    iy, fy = _lerp_index(h, grid.shape[0] - 1)
    ix, fx = _lerp_index(w, grid.shape[1] - 1)
    rows = grid[iy] + (grid[iy + 1] - grid[iy]) * fy[:, None]
    return rows[:, ix] + (rows[:, ix + 1] - rows[:, ix]) * fx[None, :]


def fbm2(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int] = (4, 4), octaves: int = 4,
         gain: float = 0.5) -> np.ndarray:
    """Fractal value noise [h, w] in about [-1, 1]; `cells` = (rows, cols) of the coarsest octave."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    cy, cx = cells
    for _ in range(octaves):
        cy_, cx_ = min(cy, h), min(cx, w)
        grid = rng.uniform(-1, 1, (cy_ + 1, cx_ + 1)).astype(np.float32)
        out += amp * _upsample(grid, h, w)
        total += amp
        amp *= gain
        cy, cx = cy * 2, cx * 2
    return out / total


def fbm1(rng: np.random.Generator, n: int, cells: int = 4, octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    return fbm2(rng, 1, n, (1, cells), octaves, gain)[0]


# A few large periodic fBm textures, made once per process from fixed seeds. A scene's noise fields are
# windows of them at offsets drawn from its seed: far cheaper than fresh fBm per scene, and just as deterministic.
BANK_SIZE = 1024  # texels; an image is BANK_SIZE / 2 texels wide at zoom 1
_BANK_PAD = 768  # wrapped margin, so that windows up to zoom 1.5 are plain strided slices
_BANK_SPECS = {"iso": ((8, 8), 7, 0.5), "fine": ((24, 24), 5, 0.5), "gully": ((6, 18), 5, 0.55),
               "cloud": ((10, 4), 6, 0.55)}


def _subdivide(g: np.ndarray) -> np.ndarray:
    """[h+1, w+1] grid -> [2h+1, 2w+1] with the old points kept and linear midpoints."""
    out = np.empty((2 * g.shape[0] - 1, 2 * g.shape[1] - 1), g.dtype)
    out[::2, ::2] = g
    out[1::2, ::2] = (g[:-1] + g[1:]) * 0.5
    out[:, 1::2] = (out[:, :-1:2] + out[:, 2::2]) * 0.5
    return out


@functools.lru_cache(maxsize=None)
def _bank(kind: str) -> np.ndarray:
    """[N + pad, N + pad] periodic fBm texture (fixed seed), values in about [-1, 1]."""
    (cy, cx), octaves, gain = _BANK_SPECS[kind]
    rng = np.random.default_rng([20240611, list(_BANK_SPECS).index(kind)])
    # Octaves are summed on the finest grid (coarse ones refined by midpoint subdivision, which keeps the grid
    # periodic), then upsampled to the bank once.
    acc = np.zeros((cy + 1, cx + 1), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        if o:
            acc = _subdivide(acc)
        grid = rng.uniform(-1, 1, ((cy << o) + 1, (cx << o) + 1)).astype(np.float32)
        grid[-1], grid[:, -1] = grid[0], grid[:, 0]  # periodic
        acc += amp * grid
        total += amp
        amp *= gain
    out = _upsample(acc, BANK_SIZE, BANK_SIZE)
    out = np.ascontiguousarray(np.pad(out / total, ((0, _BANK_PAD), (0, _BANK_PAD)), mode="wrap"))
    out.setflags(write=False)
    return out


def noise(rng: np.random.Generator, h: int, w: int, R: int, kind: str = "iso", zoom: float = 1.0) -> np.ndarray:
    """[h, w] window of a noise bank at a random offset/orientation; feature size scales with R (zoom > 1: finer)."""
    n, bank = BANK_SIZE, _bank(kind)
    step = n / 2 / R * zoom
    oy, ox = (int(o) for o in rng.integers(0, n, 2))
    flip = bool(rng.random() < 0.5)
    k = int(round(step))
    if k >= 1 and abs(step - k) < 1e-6 and max(h, w) * k <= _BANK_PAD:  # fast path: a strided view
        out = bank[oy:oy + h * k:k, ox:ox + w * k:k]
    else:
        iy = (oy + (np.arange(h) * step).astype(np.intp)) & (n - 1)
        ix = (ox + (np.arange(w) * step).astype(np.intp)) & (n - 1)
        out = bank[iy][:, ix]
    return (out[:, ::-1] if flip else out).copy()


def bank_at(kind: str, u: np.ndarray, v: np.ndarray, scale: tuple[float, float], off: tuple[int, int]) -> np.ndarray:
    """Nearest-texel bank lookup at float coordinates (u: columns, v: rows), periodic."""
    n = BANK_SIZE
    shift = float(n * 64)  # keeps coordinates positive (a multiple of n: the pattern is unchanged)
    iy = (v * scale[1] + (shift + off[0])).astype(np.intp) & (n - 1)
    ix = (u * scale[0] + (shift + off[1])).astype(np.intp) & (n - 1)
    return _bank(kind)[iy, ix]


def warm_up() -> None:
    """Build the noise banks now (before forking workers, so they share them)."""
    for kind in _BANK_SPECS:
        _bank(kind)


def smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def hash01(*ints: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) from integer arrays (integer hash, no float tricks)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for k, a in enumerate(ints):
        a = np.asarray(a).astype(np.int64).astype(np.uint64)
        h = (h ^ (a + np.uint64(0x632BE59BD9B4E019 + k))) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return ((h >> np.uint64(40)).astype(np.float64) / float(1 << 24)).astype(np.float32)


def pick(rng: np.random.Generator, options: tuple, p: tuple):
    """One of `options` with probabilities `p` (a quicker rng.choice for small lists)."""
    u, acc = float(rng.random()), 0.0
    for option, q in zip(options, p):
        acc += q
        if u < acc:
            return option
    return options[-1]

