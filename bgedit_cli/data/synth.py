"""Synthetic landscape scenes in the ADE20K SceneParsing layout (`bgedit data synth`).

A scene is two independent, JSON-serialisable factor dicts:

- **content** (layout only): horizon, mountain/hill ridges, water (lake, pond, sea, river), ground (grass, field,
  earth, sand), a forest band, foreground trees, buildings (village or skyline), a road, rocks, and a `seed`
  from which every geometric detail (ridgelines, tree positions, shorelines, window grids) is drawn;
- **style** (appearance only): a named look (`day, sunset, night, snow, fog, autumn`), its palette, sun/moon,
  clouds, stars, haze, snow cover, lit windows, texture strength, colour grade, and a `seed` for clouds/stars.

`render(content, style, R)` is a pure function of its inputs: the annotation depends on `content` only, so
`render(content_a, style_b)` is the ground truth for "content of A in the style of B". It runs in two steps:
`layout(content, R)` (geometry: material, class id, depth, surface orientation, texture coordinates) and
`paint(layout, style)` (colours). Everything is vectorised numpy without BLAS (so results do not depend on
thread counts). Noise fields are windows of a few large periodic fBm textures built once per process from fixed
seeds, at offsets drawn from the scene's seeds; they are sized for R <= 512 (larger images magnify them).

Named looks: `sample_style(rng)` jitters a look's palette and scalars; `canonical_style(name)` returns the
look's un-jittered parameters with `seed = 0` (used for the text-edit ground truth).

`synthesize(out, ...)` writes the dataset:
`images/{training,validation}/synth_XXXXXXXX.png` (RGB), `annotations/{split}/synth_XXXXXXXX.png` (mode L,
ADE20K class ids, 0 = other), `metadata.jsonl` (one line per scene, index order), and for the first
`mixing_pairs` validation scenes `mixing/validation/{a}__{b}.png` = render(content a, style b) for every ordered
pair and `textedit/validation/{a}__{name}.png` = scene a in each canonical named look.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import struct
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from bgedit_cli.errors import InputError, OutputExistsError

# ADE20K SceneParsing class ids (objectInfo150 order, 0 = other).
CLASS_IDS = {"building": 2, "sky": 3, "tree": 5, "road": 7, "grass": 10, "earth": 14, "mountain": 17,
             "water": 22, "house": 26, "sea": 27, "field": 30, "rock": 35, "sand": 47, "river": 61, "hill": 69}
STYLE_NAMES = ("day", "sunset", "night", "snow", "fog", "autumn")
SPLITS = ("training", "validation")
PNG_LEVEL = 1  # zlib level: PNG encoding otherwise dominates the run time

# Materials: what a pixel is made of (its colour rule). Several materials share an ADE20K class.
(SKY, MOUNTAIN, HILL, SEA, LAKE, RIVER, GRASS, FIELD, EARTH, SAND, CONIFER, LEAFY, TRUNK, WALL, ROOF, WINDOW,
 DOOR, ROAD, MARKING, ROCK) = range(20)
MATERIALS = ("sky", "mountain", "hill", "sea", "lake", "river", "grass", "field", "earth", "sand", "conifer",
             "leafy", "trunk", "wall", "roof", "window", "door", "road", "marking", "rock")
# Per material: texture strength, relief (left/right shading) strength, and the most snow it takes (0..1):
# below 1 the material's own colour and texture show through the snow, so what lies under it (grass,
# earth, field, sand) can still be told apart, as its label requires.
_TEX = np.array([0, .55, .35, .25, .25, .25, .55, .5, .5, .35, .5, .6, .4, .12, .2, .05, .1, .25, .05, .6], np.float32)
_RELIEF = np.array([0, .55, .35, 0, 0, 0, 0, 0, 0, 0, .45, .5, .3, .35, .25, .1, 0, 0, 0, .6], np.float32)
_UPRIGHT = np.isin(np.arange(len(MATERIALS)), (CONIFER, LEAFY, TRUNK, WALL, ROOF, WINDOW, DOOR, ROCK))
_SNOW = np.array([0, 0, .8, 0, 0, 0, .8, .7, .62, .5, .55, .5, 0, 0, .9, 0, 0, .35, 0, .5], np.float32)


def _is_water(mat: np.ndarray) -> np.ndarray:
    return (mat >= SEA) & (mat <= RIVER)  # SEA, LAKE, RIVER are consecutive (np.isin is slow)


# ----------------------------------------------------------------------------------------------------------------
# Noise.

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
_BANK_SIZE = 1024  # texels; an image is _BANK_SIZE / 2 texels wide at zoom 1
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
    out = _upsample(acc, _BANK_SIZE, _BANK_SIZE)
    out = np.ascontiguousarray(np.pad(out / total, ((0, _BANK_PAD), (0, _BANK_PAD)), mode="wrap"))
    out.setflags(write=False)
    return out


def noise(rng: np.random.Generator, h: int, w: int, R: int, kind: str = "iso", zoom: float = 1.0) -> np.ndarray:
    """[h, w] window of a noise bank at a random offset/orientation; feature size scales with R (zoom > 1: finer)."""
    n, bank = _BANK_SIZE, _bank(kind)
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


def _bank_at(kind: str, u: np.ndarray, v: np.ndarray, scale: tuple[float, float], off: tuple[int, int]) -> np.ndarray:
    """Nearest-texel bank lookup at float coordinates (u: columns, v: rows), periodic."""
    n = _BANK_SIZE
    shift = float(n * 64)  # keeps coordinates positive (a multiple of n: the pattern is unchanged)
    iy = (v * scale[1] + (shift + off[0])).astype(np.intp) & (n - 1)
    ix = (u * scale[0] + (shift + off[1])).astype(np.intp) & (n - 1)
    return _bank(kind)[iy, ix]


def warm_up() -> None:
    """Build the noise banks now (before forking workers, so they share them)."""
    for kind in _BANK_SPECS:
        _bank(kind)


def _smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def _hash01(*ints: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) from integer arrays (integer hash, no float tricks)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for k, a in enumerate(ints):
        a = np.asarray(a).astype(np.int64).astype(np.uint64)
        h = (h ^ (a + np.uint64(0x632BE59BD9B4E019 + k))) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return ((h >> np.uint64(40)).astype(np.float64) / float(1 << 24)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Content: layout factors.

def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def _pick(rng: np.random.Generator, options: tuple, p: tuple):
    """One of `options` with probabilities `p` (a quicker rng.choice for small lists)."""
    u, acc = float(rng.random()), 0.0
    for option, q in zip(options, p):
        acc += q
        if u < acc:
            return option
    return options[-1]


def sample_content(rng: np.random.Generator) -> dict:
    """Random layout factors (JSON-serialisable). Geometric detail comes from `content["seed"]` at render time."""
    c: dict = {"seed": int(rng.integers(0, 2**31 - 1))}
    c["horizon"] = _r(rng.uniform(0.36, 0.66))
    n_ridges = _pick(rng, (0, 1, 2), (0.15, 0.4, 0.45))
    ridges = []
    for k in range(n_ridges):
        near = k == 1 or (n_ridges == 1 and rng.random() < 0.3)
        kind = "hill" if near and rng.random() < 0.5 else "mountain"
        lo, hi = ((0.15, 0.45) if near else (0.45, 0.95)) if kind == "mountain" else (0.12, 0.35)
        ridges.append({"kind": kind, "height": _r(rng.uniform(lo, hi)), "near": bool(near)})
    c["ridges"] = ridges
    c["water"] = _pick(rng, ("none", "lake", "pond", "sea", "river"), (0.3, 0.22, 0.12, 0.2, 0.16))
    c["ground"] = _pick(rng, ("grass", "field", "earth", "sand"),
                        (0.5, 0.2, 0.15, 0.15) if c["water"] != "sea" else (0.5, 0.1, 0.1, 0.3))
    c["forest"] = _pick(rng, ("none", "conifer", "leafy", "mixed"), (0.35, 0.25, 0.2, 0.2))
    c["trees"] = _pick(rng, (0, 1, 2, 3, 5), (0.4, 0.2, 0.15, 0.15, 0.1))
    c["buildings"] = _pick(rng, ("none", "village", "skyline"), (0.6, 0.25, 0.15))
    c["road"] = bool(rng.random() < 0.35) and c["water"] != "sea"
    c["rocks"] = _pick(rng, (0, 2, 4), (0.6, 0.25, 0.15))
    return c


@dataclass
class Layout:
    """Geometry of one scene at resolution R (all arrays [R, R]); style-independent."""

    R: int
    horizon: int
    vanish_x: float
    mat: np.ndarray    # uint8 material id
    seg: np.ndarray    # uint8 ADE20K class id
    depth: np.ndarray  # float32, 0 near .. 1 far (fog, reflections)
    nx: np.ndarray     # float32 surface orientation left (-1) .. right (+1)
    tex: np.ndarray    # float32 texture of ground, ridges and water (ripples), about [-1, 1]
    obj: np.ndarray    # float32 per-object tone in [0, 1]
    elev: np.ndarray   # float32 relative height within an upright object (snow caps, forest shade)
    aux: np.ndarray    # float32 window "lit rank" in [0, 1]
    fine: np.ndarray   # float32 texture of upright objects (foliage, rock, walls): materials in _UPRIGHT


def layout(content: dict, R: int) -> Layout:
    """Rasterise the content factors at resolution R. Deterministic in (content, R)."""
    seed = int(content["seed"])
    rng = np.random.default_rng(seed)  # one stream, drawn in a fixed order (a generator costs ~40 us to make)
    hz = int(round(content["horizon"] * R))
    ys = np.arange(R, dtype=np.float32)[:, None]
    xs = np.arange(R, dtype=np.float32)[None, :]
    L = Layout(R=R, horizon=hz, vanish_x=float(rng.uniform(0.25, 0.75) * R),
               mat=np.full((R, R), SKY, np.uint8), seg=np.full((R, R), CLASS_IDS["sky"], np.uint8),
               depth=np.ones((R, R), np.float32), nx=np.zeros((R, R), np.float32),
               tex=noise(rng, R, R, R), obj=np.full((R, R), 0.5, np.float32),
               elev=np.zeros((R, R), np.float32), aux=np.zeros((R, R), np.float32), fine=noise(rng, R, R, R, "fine"))
    L.fine = 0.4 * L.tex + 0.6 * L.fine

    sky, gnd = slice(0, hz), slice(hz, R)  # rows above / below the horizon

    def put(rows: slice, mask: np.ndarray, mat: int, cls: str) -> None:
        L.mat[rows][mask] = mat
        L.seg[rows][mask] = CLASS_IDS[cls]

    # Ridges, far to near: a ridgeline from a few peaks plus fBm detail; shading from its slope and gullies.
    if content["ridges"] and hz > 0:
        ys_s = ys[sky]
        gully = noise(rng, hz, R, R, "gully")
        gully_nx = np.tanh(np.gradient(gully, axis=1) * (R / 8.0))
        rock_tex = 0.75 * L.tex[sky] + 0.35 * gully
    for k, ridge in enumerate(sorted(content["ridges"], key=lambda r: r["near"])):
        is_mtn = ridge["kind"] == "mountain"
        height = max(ridge["height"] * hz, 1.0)
        x = np.arange(R, dtype=np.float32)
        prof = np.zeros(R, np.float32)
        for _ in range(int(rng.integers(1, 4 if is_mtn else 3))):
            c, w, h = rng.uniform(-0.15, 1.15) * R, rng.uniform(0.2, 0.6) * R, rng.uniform(0.5, 1.0)
            if is_mtn:
                prof = np.maximum(prof, h * np.clip(1 - np.abs(x - c) / w, 0, 1) ** rng.uniform(0.8, 1.3))
            else:
                prof = np.maximum(prof, h * np.exp(-2.5 * ((x - c) / w) ** 2))
        detail = fbm1(rng, R, 6, 5, 0.55) * (0.14 if is_mtn else 0.04)
        prof = np.clip(0.12 + 0.88 * prof + detail, 0.03, 1.0)
        if hz == 0:
            continue
        top = hz - height * prof
        mask = ys_s >= top[None, :]
        put(sky, mask, MOUNTAIN if is_mtn else HILL, ridge["kind"])
        L.depth[sky][mask] = 0.93 - 0.13 * k - (0.08 if ridge["near"] else 0.0)
        slope = np.tanh(-np.gradient(prof) * 6.0)[None, :]
        L.nx[sky][mask] = np.clip(slope * 0.85 + (0.35 if is_mtn else 0.1) * gully_nx, -1, 1)[mask]
        rel = (hz - ys_s) / np.maximum(hz - top[None, :], 1.0)
        L.elev[sky][mask] = (0.55 * rel + (0.45 / height) * (hz - ys_s))[mask]
        L.tex[sky][mask] = rock_tex[mask]

    # Ground coordinates for rows below the horizon: dy is a row's distance below the horizon (fraction of R);
    # (u, v) are lateral position and distance on the ground plane, in camera heights.
    yg = ys[gnd]
    dy = (yg - hz + 0.5) / R
    u = (xs - L.vanish_x) / R / dy
    v = 1.0 / dy  # [rows, 1]: functions of distance alone are computed once per row
    L.depth[gnd] = 1.0 / (1.0 + dy * 22.0)

    # Ground: perspective texture (two octaves of noise on the ground plane, fading toward the horizon).
    g_off = [(int(a), int(b)) for a, b in rng.integers(0, _BANK_SIZE, (4, 2))]
    gtex = _bank_at("iso", u, v, (60.0, 60.0), g_off[0]) * 0.7 + _bank_at("iso", u, v, (230.0, 230.0), g_off[1]) * 0.3
    gtex = gtex * (0.35 + 0.65 * _smoothstep(0.0, 0.2, dy)) + 0.35 * L.tex[gnd] * _smoothstep(0.0, 0.1, dy)
    ground = content["ground"]
    L.mat[gnd] = {"grass": GRASS, "field": FIELD, "earth": EARTH, "sand": SAND}[ground]
    L.seg[gnd] = CLASS_IDS[ground]
    L.tex[gnd] = gtex
    if ground == "field":  # parcels with crop rows converging on the vanishing point
        tone = _hash01(np.floor(u * 1.2 + 0.3), np.floor(np.log(v) * 3.0), seed % 9973)
        stripes = np.where(tone > 0.5, np.sin(u * 40.0), np.sin(v * 6.0))
        L.tex[gnd] = 0.55 * stripes * _smoothstep(0.0, 0.25, dy) + 0.35 * gtex
        L.obj[gnd] = tone
    elif ground in ("grass", "earth"):  # patches of the other ground kind
        pmask = _bank_at("iso", u, v, (12.0, 12.0), g_off[3]) + 0.15 * gtex > 0.3
        if ground == "grass":
            put(gnd, pmask, EARTH, "earth")
        else:
            put(gnd, pmask, GRASS, "grass")

    # Water, flat on the ground.
    water = content["water"]
    near_limit = float(hz)  # the road starts below this row (the shore)
    if water == "sea":
        shore = hz + rng.uniform(0.15, 0.7) * (R - hz) + fbm1(rng, R, 3, 3) * 0.06 * R
        beach = shore + (rng.uniform(0.05, 0.25) * (R - hz)) * (1 + 0.3 * fbm1(rng, R, 4, 2))
        if rng.random() < 0.2:
            shore = beach = np.full(R, R + 1.0, np.float32)
        put(gnd, yg < shore[None, :], SEA, "sea")
        if ground != "sand":
            put(gnd, (yg >= shore[None, :]) & (yg < beach[None, :]), SAND, "sand")
        near_limit = float(beach.max())
    elif water == "lake":
        # A lake always shows its far shore (at least ~2 px at 64 px): water that reaches the horizon is the sea.
        far = hz + max(0.035 * R, rng.uniform(0.04, 0.14) * (R - hz)) \
            + np.abs(fbm1(rng, R, 4, 3)) * 0.03 * R * (rng.random() < .6)
        near = hz + rng.uniform(0.3, 0.75) * (R - hz) + fbm1(rng, R, 3, 4) * 0.07 * R
        put(gnd, (yg >= far[None, :]) & (yg < near[None, :]), LAKE, "water")
        near_limit = float(near.max())
    elif water == "pond":
        cx, cy = rng.uniform(0.2, 0.8) * R, hz + rng.uniform(0.25, 0.6) * (R - hz)
        rx = rng.uniform(0.2, 0.45) * R
        ry = max(rx * (cy - hz) / R * 0.9, 2.0)
        put(gnd, ((xs - cx) / rx) ** 2 + ((yg - cy) / ry) ** 2 + 0.35 * L.tex[gnd] < 1, LAKE, "water")
    elif water == "river":
        off, amp = rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.6)
        freq, phase, river_hw = rng.uniform(0.2, 0.6), rng.uniform(0, 6.3), rng.uniform(0.15, 0.35)
        meander = off + amp * np.sin(freq * v + phase)
        put(gnd, np.abs(u - meander) < river_hw * (1 + 0.15 * L.tex[gnd]), RIVER, "river")

    # Ripples on all water: streaks stretched across the view, finer with distance.
    wet = _is_water(L.mat[gnd])
    if wet.any():
        L.tex[gnd][wet] = _bank_at("iso", u, v, (25.0, 900.0), g_off[2])[wet]

    # Road: straight or curving in depth (centre line linear in distance -> a bend in the image), dashed
    # markings; it starts at the shore of a lake or sea, and keeps to the other side of a river.
    if content["road"]:
        off_r, curve, hw = rng.uniform(-0.6, 0.6), rng.uniform(-0.05, 0.05), rng.uniform(0.2, 0.35)
        if water == "river":  # straight, beside the river (never across it)
            away = 1.0 if off < 0 else -1.0
            off_r, curve = off + away * (amp + river_hw + hw + rng.uniform(0.05, 0.4)), 0.0
        d = np.abs(u - (off_r + curve * v))
        road = (d < hw) & (yg >= near_limit)
        put(gnd, road, ROAD, "road")
        put(gnd, road & (d < hw * 0.05) & (np.mod(np.log(v) * 6.0, 1.0) < 0.5) & (dy > 0.03), MARKING, "road")
        L.tex[gnd][road] = gtex[road] * 0.5

    # Upright things, far to near (sorted by the row they stand on).
    items: list[tuple[float, Callable[[], None]]] = []
    if content["forest"] != "none":
        if water == "lake":
            base = float(hz + (far.min() - hz) * 0.5 + 1)
        else:
            base = hz + rng.uniform(0.0, 0.08) * (R - hz) + 1
        items.append((base, lambda base=base: _forest(L, content["forest"], base, rng)))
    if content["buildings"] == "skyline":
        base = hz + 1.0 + (0 if water == "sea" else rng.uniform(0, 0.04) * (R - hz))
        items.append((base, lambda base=base: _skyline(L, base, rng)))
    elif content["buildings"] == "village":
        vy = hz + rng.uniform(0.04, 0.35) * (R - hz)
        if water == "lake":
            vy = max(vy, near_limit + 0.05 * (R - hz))
        if water == "sea":
            vy = max(vy, near_limit + 0.02 * (R - hz))
        vx = rng.uniform(0.1, 0.9) * R
        for _ in range(int(rng.integers(2, 6))):
            base = min(vy + rng.uniform(-0.03, 0.06) * (R - hz), R + 2.0)
            bx = vx + rng.normal(0, 0.13) * R
            items.append((base, lambda base=base, bx=bx: _house(L, bx, base, rng)))
    for _ in range(int(content["trees"])):
        base = hz + rng.uniform(0.2, 1.1) * (R - hz)
        tx = rng.uniform(-0.05, 1.05) * R
        kind = "conifer" if content["forest"] == "conifer" or rng.random() < 0.3 else "leafy"
        items.append((base, lambda base=base, tx=tx, kind=kind: _tree(L, tx, base, kind, rng)))
    for _ in range(int(content["rocks"])):
        base = hz + rng.uniform(0.3, 1.0) * (R - hz)
        rx = rng.uniform(0, 1) * R
        items.append((base, lambda base=base, rx=rx: _rock(L, rx, base, rng)))
    for _, draw in sorted(items, key=lambda item: item[0]):
        draw()
    return L


def _box(L: Layout, x0: float, x1: float, y0: float, y1: float):
    """Integer window clipped to the frame, plus the pixel-centre coordinates inside it (or None if empty)."""
    R = L.R
    i0, i1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, R)
    j0, j1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, R)
    if i0 >= i1 or j0 >= j1:
        return None
    ys = np.arange(i0, i1, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(j0, j1, dtype=np.float32)[None, :] + 0.5
    return (slice(i0, i1), slice(j0, j1)), ys, xs


def _scale(L: Layout, base: float) -> float:
    """Apparent size of an object standing on row `base` (perspective), as a fraction of R."""
    return max((base - L.horizon) / L.R, 0.02)


def _put_local(L: Layout, box, mask, mat: int, cls: str, depth: float, nx=None, tone=None, elev=None) -> None:
    L.mat[box][mask] = mat
    L.seg[box][mask] = CLASS_IDS[cls]
    L.depth[box][mask] = depth
    for arr, val in ((L.nx, nx), (L.obj, tone), (L.elev, elev)):
        if val is not None:
            arr[box][mask] = val if np.isscalar(val) else np.broadcast_to(val, mask.shape)[mask]


def _forest(L: Layout, kind: str, base: float, rng: np.random.Generator) -> None:
    """A band of trees standing on row `base`: a per-column skyline from many triangles/discs."""
    R = L.R
    h_mean = rng.uniform(0.04, 0.11) * R
    a, b = sorted(rng.uniform(-0.3, 1.3, 2))
    if rng.random() < 0.5:
        a, b = -0.1, 1.1
    n = max(int((b - a) * R / (h_mean * 0.35)), 1)
    cx = np.linspace(a * R, b * R, n, dtype=np.float32) + rng.uniform(-0.2, 0.2, n).astype(np.float32) * h_mean
    h = (h_mean * rng.uniform(0.7, 1.3, n)).astype(np.float32)
    conifer = rng.random(n) < {"conifer": 1.0, "leafy": 0.0, "mixed": 0.5}[kind]
    x = np.arange(R, dtype=np.float32)[None, :] + 0.5
    dx = x - cx[:, None]
    hw = np.where(conifer, 0.3, 0.45)[:, None] * h[:, None]
    cone = (base - h[:, None]) + np.abs(dx) * (h[:, None] / hw) * 0.9
    r = hw
    disc = (base - h[:, None] + r) - np.sqrt(np.maximum(r * r - dx * dx, 0))
    tops = np.where(conifer[:, None], np.where(np.abs(dx) < hw, cone, np.inf), np.where(np.abs(dx) < r, disc, np.inf))
    idx = np.argmin(tops, axis=0)
    top = tops[idx, np.arange(R)]
    hit = np.isfinite(top)
    top = np.where(hit, top, np.inf)
    got = _box(L, 0, R, float(np.min(top[hit])) if hit.any() else base, base + 0.01 * R)
    if got is None:
        return
    box, ys, xs = got
    mask = (ys >= top[None, :]) & (ys < base + 0.006 * R * (1 + L.fine[box]))
    tone = rng.uniform(0, 1, n).astype(np.float32)[idx][None, :]
    nxv = np.clip(dx[idx, np.arange(R)] / hw[idx, 0], -1, 1)[None, :]
    elev = np.clip((base - ys) / h[idx][None, :], 0, 1)
    depth = float(1.0 / (1.0 + (base - L.horizon) / R * 22.0))
    mats = np.where(conifer[idx], CONIFER, LEAFY)[None, :]
    for mat in (CONIFER, LEAFY):
        m = mask & (mats == mat)
        _put_local(L, box, m, mat, "tree", depth, nx=nxv, tone=tone, elev=elev)


def _tree(L: Layout, tx: float, base: float, kind: str, rng: np.random.Generator) -> None:
    """A foreground tree: trunk plus a blobby canopy (leafy) or stacked tiers (conifer)."""
    R = L.R
    s = _scale(L, base)
    h = s * rng.uniform(1.1, 1.8) * R
    depth = float(1.0 / (1.0 + s * 22.0))
    tone = float(rng.uniform(0, 1))
    got = _box(L, tx - h * 0.45, tx + h * 0.45, base - h, base)
    if got is None:
        return
    box, ys, xs = got
    tex = L.fine[box]
    tw = max(h * 0.035, 0.6)
    trunk = (np.abs(xs - tx) < tw) & (ys > base - h * 0.55) & (ys < base)
    _put_local(L, box, trunk, TRUNK, "tree", depth, nx=np.clip((xs - tx) / tw, -1, 1), tone=tone)
    if kind == "leafy":
        canopy = np.zeros(trunk.shape, bool)
        nxv = np.zeros(trunk.shape, np.float32)
        reach = (1 - 0.3 * tex) ** 2
        for _ in range(int(rng.integers(3, 6))):
            r = h * rng.uniform(0.16, 0.26)
            cx, cy = tx + rng.uniform(-0.18, 0.18) * h, base - h * rng.uniform(0.5, 0.75)
            blob = (xs - cx) ** 2 + (ys - cy) ** 2 < reach * (r * r)  # distance / r + 0.3 tex < 1
            nxv = np.where(blob, np.clip((xs - cx) / r, -1, 1), nxv)
            canopy |= blob
        elev = np.clip((base - ys) / h, 0, 1)
        _put_local(L, box, canopy, LEAFY, "tree", depth, nx=nxv, tone=tone, elev=elev)
    else:
        t = np.clip((ys - (base - h)) / (h * 0.85), 0, 1)  # 0 at the tip, 1 at the lowest branches
        tiers = 0.75 + 0.25 * np.mod(t * rng.uniform(3.5, 6), 1.0)
        hw = h * 0.25 * t * tiers * (1 + 0.1 * tex)
        canopy = (np.abs(xs - tx) < hw) & (ys < base - h * 0.12)
        _put_local(L, box, canopy, CONIFER, "tree", depth, nx=np.clip((xs - tx) / np.maximum(hw, 1e-3), -1, 1),
                   tone=tone, elev=1 - t)


def _rock(L: Layout, rx: float, base: float, rng: np.random.Generator) -> None:
    s = _scale(L, base)
    w = s * rng.uniform(0.12, 0.35) * L.R
    hgt = w * rng.uniform(0.5, 0.9)
    got = _box(L, rx - w, rx + w, base - hgt, base + hgt * 0.2)
    if got is None:
        return
    box, ys, xs = got
    mask = (((xs - rx) / w) ** 2 + ((ys - base) / hgt) ** 2 + 0.35 * L.fine[box] < 1) & (ys < base + hgt * 0.15)
    _put_local(L, box, mask, ROCK, "rock", float(1.0 / (1.0 + s * 22.0)), nx=np.clip((xs - rx) / w, -1, 1),
               tone=float(rng.uniform(0, 1)), elev=np.clip((base - ys) / hgt, 0, 1))


def _windows(L: Layout, box, ys, xs, x0, y0, cw, ch, fill, bid: int) -> np.ndarray:
    """Window grid mask inside a wall; writes each window's lit rank into L.aux."""
    lx, ly = (xs - x0) / cw, (ys - y0) / ch
    col, row = np.floor(lx), np.floor(ly)
    win = (np.abs(lx - col - 0.5) < fill / 2) & (np.abs(ly - row - 0.5) < fill / 2)
    rank = _hash01(col + 1000 * row, np.full_like(col, bid))
    L.aux[box] = np.where(win, rank, L.aux[box])
    return win


def _house(L: Layout, bx: float, base: float, rng: np.random.Generator) -> None:
    """A house (gable roof) or, sometimes, a taller flat-roofed building, standing on row `base`."""
    R = L.R
    s = _scale(L, base)
    tall = rng.random() < 0.25
    w = s * R * rng.uniform(0.3, 0.55) * (0.8 if tall else 1.0)
    wall_h = w * (rng.uniform(1.1, 2.0) if tall else rng.uniform(0.45, 0.75))
    roof_h = 0 if tall else w * rng.uniform(0.25, 0.5)
    depth = float(1.0 / (1.0 + s * 22.0))
    tone = float(rng.uniform(0, 1))
    got = _box(L, bx - w / 2 - 0.1 * w, bx + w / 2 + 0.1 * w, base - wall_h - roof_h, base)
    if got is None:
        return
    box, ys, xs = got
    cls = "building" if tall else "house"
    wall = (np.abs(xs - bx) < w / 2) & (ys >= base - wall_h) & (ys < base)
    _put_local(L, box, wall, WALL, cls, depth, nx=-0.3, tone=tone)
    bid = int(rng.integers(0, 1 << 30))
    if w > 6:
        cw = w / max(int(round(w / max(w * (0.22 if tall else 0.3), 3))), 1)
        win = wall & _windows(L, box, ys, xs, bx - w / 2, base - wall_h, cw, cw * 1.2, 0.5, bid)
        if not tall:
            win &= ys < base - wall_h * 0.35
            door = (np.abs(xs - (bx + w * 0.2)) < w * 0.08) & (ys >= base - wall_h * 0.55) & (ys < base)
            _put_local(L, box, door, DOOR, cls, depth, tone=tone)
        _put_local(L, box, win, WINDOW, cls, depth)
    if roof_h:
        over = 0.08 * w
        ry = (ys - (base - wall_h - roof_h)) / roof_h  # 0 at the ridge, 1 at the eaves
        roof = (ry >= 0) & (ry < 1) & (np.abs(xs - bx) < (w / 2 + over) * ry)
        _put_local(L, box, roof, ROOF, cls, depth, nx=np.sign(xs - bx) * 0.7, tone=tone, elev=1 - ry)


def _skyline(L: Layout, base: float, rng: np.random.Generator) -> None:
    """A row of tall buildings standing on row `base` (near the horizon)."""
    R = L.R
    x = rng.uniform(-0.1, 0.5) * R
    end = min(x + rng.uniform(0.3, 0.9) * R, R)
    depth = float(1.0 / (1.0 + (base - L.horizon) / R * 22.0)) * 0.95
    while x < end:
        w, h = rng.uniform(0.035, 0.09) * R, rng.uniform(0.06, 0.32) * R
        tone, bid = float(rng.uniform(0, 1)), int(rng.integers(0, 1 << 30))
        got = _box(L, x, x + w, base - h, base)
        if got is not None:
            box, ys, xs = got
            wall = (xs >= x) & (xs < x + w) & (ys >= base - h) & (ys < base)
            _put_local(L, box, wall, WALL, "building", depth, nx=0.0, tone=tone, elev=0.0)
            if w >= 5:
                cell = max(w / 4, 2.5)
                win = wall & _windows(L, box, ys, xs, x, base - h, cell, cell * 1.3, 0.5, bid)
                _put_local(L, box, win, WINDOW, "building", depth)
        x += w * rng.uniform(0.85, 1.3)


# ----------------------------------------------------------------------------------------------------------------
# Style: appearance factors. A look's canonical parameters; sampling jitters them.

_DAY_PALETTE = {  # material: (tone 0 colour, tone 1 colour), sRGB in [0, 1]
    "sky": ((.5, .5, .5), (.5, .5, .5)), "mountain": ((.40, .41, .46), (.50, .46, .42)),
    "hill": ((.30, .47, .21), (.42, .52, .25)), "sea": ((.08, .27, .42), (.08, .27, .42)),
    "lake": ((.10, .30, .36), (.10, .30, .36)), "river": ((.14, .33, .38), (.14, .33, .38)),
    "grass": ((.27, .50, .17), (.40, .57, .21)), "field": ((.72, .63, .30), (.40, .57, .21)),
    "earth": ((.48, .37, .24), (.58, .46, .32)), "sand": ((.86, .78, .58), (.79, .69, .50)),
    "conifer": ((.09, .25, .13), (.14, .33, .16)), "leafy": ((.17, .38, .11), (.33, .50, .15)),
    "trunk": ((.29, .20, .12), (.38, .28, .18)), "wall": ((.86, .81, .71), (.74, .46, .35)),
    "roof": ((.56, .21, .15), (.30, .30, .35)), "window": ((.20, .27, .35), (.20, .27, .35)),
    "door": ((.36, .22, .14), (.30, .24, .20)), "road": ((.32, .32, .33), (.38, .37, .35)),
    "marking": ((.92, .90, .80), (.92, .90, .80)), "rock": ((.44, .43, .41), (.56, .53, .48)),
}
_DAY = {
    "sky_top": (.20, .42, .84), "sky_horizon": (.68, .81, .95),
    "sun_x": .7, "sun_elevation": .75, "sun_size": .028, "sun_glow": .3, "sun_glow_radius": .14,
    "sun_strength": 1.0, "sun_color": (1.0, .97, .88),
    "cloud_cover": .4, "cloud_color": (1.0, 1.0, 1.0), "cloud_shade": (.70, .74, .83), "stars": 0.0,
    "light": 1.0, "tint": (1.0, 1.0, .97), "relief": .45, "texture": 1.0,
    "haze": .3, "haze_color": (.74, .83, .94), "snow": 0.0, "snowcap": .2, "snow_color": (.94, .95, .98),
    "lit_windows": 0.0, "window_lit": (1.0, .80, .45), "reflect": .55,
    "saturation": 1.0, "exposure": 1.0,
}
_LOOKS = {
    "day": {},
    "sunset": {"sky_top": (.20, .20, .42), "sky_horizon": (1.0, .55, .25), "sun_elevation": .06, "sun_size": .04,
               "sun_glow": .9, "sun_glow_radius": .3, "sun_color": (1.0, .72, .35), "cloud_cover": .35,
               "cloud_color": (1.0, .58, .45), "cloud_shade": (.42, .28, .38), "light": .72, "tint": (1.0, .72, .55),
               "relief": .6, "haze": .35, "haze_color": (.95, .60, .42), "lit_windows": .25, "saturation": 1.1,
               "snowcap": .15},
    "night": {"sky_top": (.015, .02, .07), "sky_horizon": (.07, .11, .22), "sun_elevation": .65, "sun_size": .022,
              "sun_glow": .12, "sun_glow_radius": .1, "sun_color": (.95, .95, .86), "cloud_cover": .2,
              "cloud_color": (.10, .11, .16), "cloud_shade": (.05, .05, .08), "stars": 1.0, "light": .36, "exposure": 1.15,
              "tint": (.55, .68, 1.0), "haze": .25, "haze_color": (.05, .07, .14), "lit_windows": .55,
              "saturation": .75, "reflect": .7, "snowcap": .15},
    "snow": {"sky_top": (.42, .56, .78), "sky_horizon": (.82, .86, .92), "sun_elevation": .35, "cloud_cover": .55,
             "cloud_color": (.96, .97, .99), "cloud_shade": (.64, .67, .75), "tint": (.95, .98, 1.05),
             "haze": .45, "haze_color": (.84, .87, .93), "snow": 1.0, "snowcap": 1.0, "saturation": .85,
             "lit_windows": .1,
             "palette": {"sea": ((.10, .20, .28),) * 2, "lake": ((.16, .24, .30),) * 2,
                         "river": ((.14, .22, .28),) * 2}},
    "fog": {"sky_top": (.66, .68, .70), "sky_horizon": (.80, .81, .82), "sun_strength": .15, "sun_glow": .15,
            "sun_elevation": .5, "cloud_cover": 0.0, "light": .8, "tint": (.95, .97, 1.0), "haze": 1.6,
            "haze_color": (.80, .81, .82), "saturation": .7, "lit_windows": .1, "reflect": .4, "relief": .3},
    "autumn": {"sky_top": (.28, .46, .78), "sky_horizon": (.86, .84, .76), "sun_elevation": .35,
               "tint": (1.05, .95, .82), "haze": .3, "haze_color": (.86, .81, .70), "snowcap": .1,
               "palette": {"leafy": ((.78, .30, .07), (.90, .62, .12)), "grass": ((.50, .48, .20), (.58, .45, .18)),
                           "hill": ((.55, .42, .18), (.62, .50, .22)), "field": ((.76, .56, .25), (.56, .40, .20)),
                           "conifer": ((.12, .26, .12), (.20, .30, .14))}},
}


_COLOR_KEYS = ("sky_top", "sky_horizon", "sun_color", "cloud_color", "cloud_shade", "haze_color", "tint",
               "window_lit", "snow_color")


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return [_round(v) for v in x]
    if isinstance(x, float):
        return round(x, 3)
    return x


@functools.lru_cache(maxsize=None)
def _canonical_json(name: str) -> str:
    look = dict(_LOOKS[name])
    palette = dict(_DAY_PALETTE)
    palette.update(look.pop("palette", {}))
    return json.dumps(_round({"name": name, "seed": 0, **_DAY, **look, "palette": palette}))


def canonical_style(name: str) -> dict:
    """A named look's un-jittered parameters (seed 0): the text-edit ground truth."""
    if name not in _LOOKS:
        raise InputError(f"unknown style {name!r}; expected one of {', '.join(STYLE_NAMES)}.")
    return json.loads(_canonical_json(name))


def _jitter(rng: np.random.Generator, x: float, sd: float, lo: float = 0.0, hi: float = 1e9) -> float:
    return round(min(max(x * float(np.exp(rng.normal(0, sd))), lo), hi), 3)


def sample_style(rng: np.random.Generator, name: Optional[str] = None) -> dict:
    """A named look (random unless given) with jittered palette, light, sun, clouds, haze and texture."""
    name = name or STYLE_NAMES[int(rng.integers(len(STYLE_NAMES)))]
    s = canonical_style(name)
    s["seed"] = int(rng.integers(0, 2**31 - 1))
    colors = np.array([s[k] for k in _COLOR_KEYS])
    neutral = ("tint", "snow_color", "haze_color", "cloud_color")  # near-white: a small tint shift shows
    sd = np.array([0.015 if k in neutral else 0.08 for k in _COLOR_KEYS])[:, None]
    colors = np.clip(colors * np.exp(rng.normal(0, 1, colors.shape) * sd), 0, 1).round(3).tolist()
    s.update(zip(_COLOR_KEYS, colors))
    pal = np.array([s["palette"][m] for m in MATERIALS])  # [materials, 2 tones, 3]
    pal = np.clip(pal * np.exp(rng.normal(0, 0.07, pal.shape) + rng.normal(0, 0.05)), 0, 1).round(3).tolist()
    s["palette"] = dict(zip(MATERIALS, pal))
    s["sun_x"] = round(float(rng.uniform(0.08, 0.92)), 3)
    s["sun_elevation"] = _jitter(rng, s["sun_elevation"], 0.25, 0.02, 0.95)
    s["sun_size"] = _jitter(rng, s["sun_size"], 0.15)
    s["sun_glow"] = _jitter(rng, s["sun_glow"], 0.2)
    if s["cloud_cover"]:
        s["cloud_cover"] = round(min(max(s["cloud_cover"] + float(rng.normal(0, 0.15)), 0.0), 0.9), 3)
    s["light"] = _jitter(rng, s["light"], 0.08, 0.05, 1.3)
    s["relief"] = _jitter(rng, s["relief"], 0.2, 0.0, 1.0)
    s["texture"] = _jitter(rng, s["texture"], 0.2, 0.3, 1.8)
    s["haze"] = _jitter(rng, s["haze"], 0.25)
    s["snowcap"] = _jitter(rng, s["snowcap"], 0.3, 0.0, 1.0)
    s["lit_windows"] = _jitter(rng, s["lit_windows"], 0.3, 0.0, 1.0)
    s["saturation"] = _jitter(rng, s["saturation"], 0.08)
    s["exposure"] = _jitter(rng, s["exposure"], 0.05)
    s["reflect"] = _jitter(rng, s["reflect"], 0.15, 0.0, 0.95)
    return s


# ----------------------------------------------------------------------------------------------------------------
# Painting.

def _rgb(c) -> np.ndarray:
    return np.asarray(c, np.float32)[:, None, None]  # [3, 1, 1]: colours broadcast over [3, H, W]


@functools.lru_cache(maxsize=8)
def _vignette(R: int) -> np.ndarray:
    ys = np.arange(R, dtype=np.float32)[:, None]
    xs = np.arange(R, dtype=np.float32)[None, :]
    return 1 - 0.12 * ((xs - R / 2) ** 2 + (ys - R / 2) ** 2) * (2.0 / (R * R))


def paint(L: Layout, style: dict) -> np.ndarray:
    """Colour a layout in a style -> uint8 RGB [R, R, 3]. Never changes the layout.

    Works channel-first ([3, H, W]) so per-pixel maps broadcast over contiguous planes.
    """
    R, hz, mat = L.R, L.horizon, L.mat
    ys = np.arange(R, dtype=np.float32)[:, None]
    xs = np.arange(R, dtype=np.float32)[None, :]
    pal = style["palette"]
    col_a = np.array([pal[m][0] for m in MATERIALS], np.float32).T  # [3, num_materials]
    col_b = np.array([pal[m][1] for m in MATERIALS], np.float32).T

    # Materials: tone, texture, relief shading (lit from the sun's side), snow, light colour.
    base = np.empty((3, R, R), np.float32)
    for c in range(3):
        lo = np.take(col_a[c], mat)
        base[c] = lo + (np.take(col_b[c], mat) - lo) * L.obj
    side = float(np.clip((style["sun_x"] - 0.5) * 3, -1, 1))
    lit_nx = L.nx * side
    is_tree = (mat == CONIFER) | (mat == LEAFY)
    tex = np.where(np.take(_UPRIGHT, mat), L.fine, L.tex)
    # Snow: caps on mountains (above a style-dependent line, less on steep faces), and cover on the ground,
    # roofs, rocks and tree tops for snowy looks.
    snow = np.zeros((R, R), np.float32)
    if style["snow"] > 0:
        cover = np.clip(style["snow"] * (1.2 + 0.8 * tex) - 0.2, 0, 1) * np.take(_SNOW, mat)
        snow = np.where(is_tree, cover * _smoothstep(-0.3, 0.5, tex + 0.6 * lit_nx + 0.5 * L.elev - 0.3), cover)
    cap = style["snowcap"]
    if cap > 0 and hz > 0:
        m = mat[:hz] == MOUNTAIN
        snow[:hz][m] = _smoothstep(0.0, 0.12, L.elev[:hz] + 0.25 * L.tex[:hz] - (1 - cap) - 0.25 * cap * np.abs(L.nx[:hz]))[m]
    shade = 1 + (style["texture"] * 0.35) * np.take(_TEX, mat) * (1 - 0.6 * snow) * tex + style["relief"] * np.take(_RELIEF, mat) * lit_nx
    shade *= np.where(is_tree, 0.6 + 0.4 * np.sqrt(np.clip(L.elev, 0, 1)), 1.0)
    rows = slice(0, R) if style["snow"] > 0 else slice(0, hz)  # where snow can be
    snow_lum = 0.93 + 0.07 * np.clip(1 + 0.8 * lit_nx[rows], 0, 1.5)
    base[:, rows] += (_rgb(style["snow_color"]) * snow_lum - base[:, rows]) * snow[rows]
    col = base * (shade * style["light"]) * _rgb(style["tint"])

    # Windows: dark glass, or lit (emissive) for a fraction of them.
    lit = (mat == WINDOW) & (L.aux < style["lit_windows"])
    if lit.any():
        col[:, lit] = _rgb(style["window_lit"])[:, :, 0] * (0.75 + 0.25 * L.aux[lit] / max(style["lit_windows"], 1e-3))

    # Haze amount: toward the haze colour with distance (aerial perspective); rows below `hazy` get none.
    d2 = L.depth * L.depth
    amount = 1 - np.exp((-style["haze"] * 2.2) * (d2 * d2))
    hazy = int(np.flatnonzero(amount.max(axis=1) > 0.5 / 255)[-1]) + 1 if amount.max() > 0.5 / 255 else 0

    # Sky (rows above the horizon): gradient, sun (or moon) with glow, clouds, stars.
    sx, sy = style["sun_x"] * R, hz * (1 - style["sun_elevation"])
    top_rows = max(hz, hazy)
    d = np.sqrt((xs - sx) ** 2 + ((ys[:top_rows] - sy) * 1.4) ** 2) * (1.0 / R)
    glow = style["sun_glow"] * np.exp(-((d / style["sun_glow_radius"]) ** 2))  # rows [0, top_rows)
    sun_rgb = _rgb(style["sun_color"]) * style["sun_strength"]
    if hz > 0:
        rng = np.random.default_rng([int(style["seed"]), 7])  # stars and clouds
        top, hor = _rgb(style["sky_top"]), _rgb(style["sky_horizon"])
        t = (ys[:hz] / hz) ** 1.5
        sky_rgb = top + (hor - top) * t + sun_rgb * glow[:hz]
        disc = _smoothstep(style["sun_size"], style["sun_size"] * 0.8, d[:hz])
        if style["stars"] > 0:
            n = int(style["stars"] * R * R * 0.004)
            py, px = rng.integers(0, hz, n), rng.integers(0, R, n)
            star = np.zeros((hz, R), np.float32)
            star[py, px] = rng.uniform(0.25, 1.0, n) * style["stars"] * (1 - py / hz) ** 0.5
            sky_rgb += star
        if style["cloud_cover"] > 0:
            n1 = noise(rng, hz, R, R, "cloud")
            height = (hz - ys[:hz]) / hz
            n1 += 0.25 * height - 0.2
            thr = 0.35 - 0.7 * style["cloud_cover"]
            alpha = _smoothstep(thr, thr + 0.25, n1) * _smoothstep(0.0, 0.15, height)
            dense = _smoothstep(thr + 0.05, thr + 0.6, n1)
            light_c, dark_c = _rgb(style["cloud_color"]), _rgb(style["cloud_shade"])
            cloud = light_c + (dark_c - light_c) * dense + sun_rgb * (glow[:hz] * 0.6)
            sky_rgb += (cloud - sky_rgb) * alpha
            disc *= 1 - alpha
        sky_rgb += (sun_rgb * 1.1 - sky_rgb) * disc
        np.copyto(col[:, :hz], sky_rgb, where=mat[:hz] == SKY)

    # Haze / fog; sunlit haze glows near the sun.
    haze = _rgb(style["haze_color"]) + sun_rgb * (0.5 * glow[:hazy])
    col[:, :hazy] += (haze - col[:, :hazy]) * amount[:hazy]

    # Water: tinted mirror of what stands above its far edge, rippled; a glitter path under the sun.
    wet = _is_water(mat)
    rows_wet = np.flatnonzero(wet.any(axis=1))
    if rows_wet.size:
        r0, r1 = int(rows_wet[0]), int(rows_wet[-1]) + 1
        rows = np.arange(R)[:, None]
        last_dry = np.maximum.accumulate(np.where(wet, -1, rows), axis=0)[r0:r1]
        ripple, depth = L.tex[r0:r1], L.depth[r0:r1]
        ry = np.clip(2 * last_dry - rows[r0:r1] + 1 + (ripple * 1.5).astype(np.intp), 0, R - 1)
        rx = np.clip(np.arange(R)[None, :] + (ripple * 3 * (1 - depth)).astype(np.intp), 0, R - 1)
        refl = col[:, ry, rx]
        tint = base[:, r0:r1] * (style["light"] * (1 + 0.25 * ripple)) * _rgb(style["tint"])
        water = tint + (refl - tint) * (style["reflect"] * (0.45 + 0.55 * depth))
        width = (0.03 + 0.25 * np.clip(ys[r0:r1] - hz, 0, None) / R) * R
        path = np.exp(-(((xs - sx) / width) ** 2)) * _smoothstep(0.1, 0.6, ripple)
        path *= style["sun_strength"] * max(1.2 - style["sun_elevation"], 0.0) * float(style["sun_elevation"] < 0.8)
        water += sun_rgb * path
        h1 = min(r1, hazy)
        if h1 > r0:
            water[:, :h1 - r0] += (haze[:, r0:h1] - water[:, :h1 - r0]) * amount[r0:h1]
        np.copyto(col[:, r0:r1], water, where=wet[r0:r1])

    # Grade: saturation, exposure, a light vignette.
    sat = style["saturation"]
    grey = (col[0] + col[1] + col[2]) * ((1 - sat) / 3)
    col *= sat
    col += grey
    col *= (255.0 * style["exposure"]) * _vignette(R)
    col += 0.5
    np.clip(col, 0, 255, out=col)
    return np.ascontiguousarray(col.astype(np.uint8).transpose(1, 2, 0))


def render(content: dict, style: dict, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 [R, R, 3], seg uint8 [R, R]) of one scene; seg depends on `content` only."""
    L = layout(content, resolution)
    return paint(L, style), L.seg.copy()


# ----------------------------------------------------------------------------------------------------------------
# Captions.

# Captions carry the words people type. Each table lists phrases, the canonical one first (a caption made
# without an rng uses only those); `scene_record` draws the others from a caption rng of its own, seeded from
# (seed, index, 2), so captions vary with the scene but never change a pixel (pixels use streams 0 and 1).
# The *_WORDS constants say which typed word names which factor (prompt lists, zero-shot evaluation); every
# word occurs in the phrases of its factor (tests/test_synth_captions.py checks it).

STYLE_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {  # look -> (adjective before the subject, phrase after)
    "day": (("sunny", ""), ("", "on a sunny day"), ("", "in daylight"), ("bright", ""), ("", "on a clear day"),
            ("", "in the daytime")),
    "sunset": (("", "at sunset"), ("", "at dusk"), ("", "in the evening"), ("", "at golden hour"), ("sunset", "")),
    "night": (("", "at night"), ("dark", ""), ("moonlit", ""), ("", "by night"), ("", "under the stars")),
    "snow": (("snowy", "in winter"), ("", "in winter"), ("snowy", ""), ("snow-covered", ""), ("wintry", ""),
             ("", "covered in snow")),
    "fog": (("foggy", ""), ("misty", ""), ("", "in fog"), ("", "in the mist"), ("hazy", "")),
    "autumn": (("autumn", ""), ("", "in autumn"), ("", "in fall"), ("autumnal", ""), ("", "with fall colors")),
}
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "day": ("sunny", "day", "daylight", "bright", "clear", "daytime"),
    "sunset": ("sunset", "dusk", "evening", "golden hour"),
    "night": ("night", "dark", "moonlit", "stars"),
    "snow": ("snowy", "winter", "snow", "wintry"),
    "fog": ("foggy", "misty", "mist", "fog", "hazy"),
    "autumn": ("autumn", "fall", "autumnal"),
}
_SUBJECTS = {  # water (or, without water, ground) -> the caption's subject
    "sea": ("sea coast", "sea", "ocean", "coast", "seaside"), "lake": ("lake", "lakeside"),
    "pond": ("pond", "small pond"), "river": ("river", "riverside", "stream"),
    "grass": ("meadow", "grassland", "grassy meadow"), "field": ("farmland", "field", "crop field"),
    "earth": ("plain", "dirt plain", "bare plain"), "sand": ("desert", "sandy desert"),
    "beach": ("beach", "sandy beach", "seashore", "ocean beach"),  # sea + sand
}
_EXTRAS = {
    "village": ("a village", "a town", "houses", "a small town"),
    "skyline": ("a city skyline", "a city", "skyscrapers", "tall buildings"),
    "conifer": ("a pine forest", "pine trees", "conifers", "an evergreen forest"),
    "leafy": ("woods", "a deciduous forest", "leafy trees"), "mixed": ("a forest", "woodland", "a mixed forest"),
    "tree": ("a tree", "a lone tree", "a single tree"), "trees": ("trees", "a few trees", "some trees"),
    "road": ("a road", "a country road", "a paved road"), "rocks": ("rocks", "boulders", "stones"),
    "mountain": ("below mountains", "beneath mountain peaks", "in front of mountains", "in the mountains"),
    "hill": ("among hills", "among rolling hills", "in the hills", "in front of hills"),
}
CONTENT_WORDS: dict[str, dict[str, tuple[str, ...]]] = {  # factor -> value -> words
    "water": {"sea": ("sea", "ocean", "coast", "seaside", "seashore"), "lake": ("lake", "lakeside"),
              "pond": ("pond",), "river": ("river", "stream", "riverside")},
    "ground": {"grass": ("meadow", "grassland", "grassy"), "field": ("farmland", "field", "crop"),
               "earth": ("plain", "dirt", "bare"), "sand": ("desert", "sandy", "beach")},
    "buildings": {"village": ("village", "town", "houses"),
                  "skyline": ("city", "skyline", "skyscrapers", "buildings")},
    "forest": {"conifer": ("pine", "conifers", "evergreen"), "leafy": ("woods", "deciduous", "leafy"),
               "mixed": ("forest", "woodland")},
    "trees": {"trees": ("tree", "trees")},
    "road": {"road": ("road",)},
    "rocks": {"rocks": ("rocks", "boulders", "stones")},
    "ridges": {"mountain": ("mountains", "peaks"), "hill": ("hills",)},
}
CAPTION_PREFIXES = ("", "a photo of ", "an image of ", "a picture of ", "a view of ")
_DETAIL = (("full", "scene", "style"), (0.6, 0.25, 0.15))  # what a caption names: all, subject + style, style


def _choose(rng: Optional[np.random.Generator], options: tuple):
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(content: dict, style: dict, rng: Optional[np.random.Generator] = None) -> str:
    """E.g. 'a snowy lake with a pine forest below mountains in winter'. Without `rng` the canonical phrasing;
    with one, a template (everything, subject and look, or the look alone), a prefix and synonyms drawn from it."""
    water, ground = content["water"], content["ground"]
    kinds = {r["kind"] for r in content["ridges"]}
    detail = "full" if rng is None else _pick(rng, *_DETAIL)
    prefix = _choose(rng, CAPTION_PREFIXES)
    adj, when = _choose(rng, STYLE_PHRASES[style["name"]])
    if detail == "style":
        subject = _choose(rng, ("landscape", "scene"))
    else:
        key = "beach" if water == "sea" and ground == "sand" else water if water != "none" else ground
        subject = _choose(rng, _SUBJECTS[key])
    words = [_article(f"{adj} {subject}".strip())]
    if detail == "full":
        extras = []
        if content["buildings"] != "none":
            extras.append(_choose(rng, _EXTRAS[content["buildings"]]))
        if content["forest"] != "none":
            extras.append(_choose(rng, _EXTRAS[content["forest"]]))
        elif content["trees"]:
            extras.append(_choose(rng, _EXTRAS["trees" if content["trees"] > 1 else "tree"]))
        if content["road"]:
            extras.append(_choose(rng, _EXTRAS["road"]))
        if content["rocks"] and len(extras) < 2:
            extras.append(_choose(rng, _EXTRAS["rocks"]))
        if extras:
            words.append("with " + _join(extras))
    if detail != "style" and kinds:
        words.append(_choose(rng, _EXTRAS["mountain" if "mountain" in kinds else "hill"]))
    if when:
        words.append(when)
    return prefix + " ".join(words)


# ----------------------------------------------------------------------------------------------------------------
# Dataset writer.

def scene_name(index: int) -> str:
    return f"synth_{index:08d}"


def validation_indices(num: int, val_fraction: float) -> list[int]:
    """round(num * val_fraction) indices spread evenly over 0..num-1 (at least one when the fraction is > 0, and
    at least one training scene unless the fraction is 1: a held-out set, every scene in validation)."""
    if val_fraction >= 1:
        return list(range(num))
    if val_fraction <= 0 or num < 2:
        return []
    n_val = min(max(int(round(num * val_fraction)), 1), num - 1)
    return [int((k + 0.5) * num / n_val) for k in range(n_val)]


def scene_record(seed: int, index: int, split: str) -> dict:
    """Scene `index`'s metadata record; it depends only on (seed, index)."""
    content = sample_content(np.random.default_rng([seed, index, 0]))
    style = sample_style(np.random.default_rng([seed, index, 1]))
    text = caption(content, style, np.random.default_rng([seed, index, 2]))  # its own stream: pixels unchanged
    return {"file": scene_name(index), "split": split, "caption": text, "content": content, "style": style}


def encode_png(pixels: np.ndarray) -> bytes:
    """8-bit greyscale [H, W] or RGB [H, W, 3] -> PNG bytes: "up" filter on every row, zlib level PNG_LEVEL.

    About twice as fast as Pillow's encoder (which tries every filter per row) at the same size; the
    bytes depend only on the array (and zlib).
    """
    h, w = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    rows = np.ascontiguousarray(pixels, np.uint8).reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type "up": each byte minus the byte above it
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), PNG_LEVEL))
            + chunk(b"IEND", b""))


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """Atomic PNG write (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(encode_png(pixels))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _run_job(job: tuple) -> tuple[int, list[dict]]:
    """Sample, render and write one job (in a worker process) -> (images rendered, metadata records)."""
    kind, out, R = job[0], Path(job[1]), job[2]
    if kind == "scenes":  # ("scenes", out, R, seed, [(index, split), ...])
        records = []
        for index, split in job[4]:
            rec = scene_record(job[3], index, split)
            L = layout(rec["content"], R)
            _write_png(out / "images" / split / f"{rec['file']}.png", paint(L, rec["style"]))
            _write_png(out / "annotations" / split / f"{rec['file']}.png", L.seg)
            records.append(rec)
        return len(records), records
    # ("mix", out, R, a, content_a, [(b, style_b), ...], look names): one layout, many styles.
    a, content, styles, looks = job[3:7]
    L = layout(content, R)
    for b, style in styles:
        _write_png(out / "mixing" / "validation" / f"{a}__{b}.png", paint(L, style))
    for name in looks:
        _write_png(out / "textedit" / "validation" / f"{a}__{name}.png", paint(L, canonical_style(name)))
    return len(styles) + len(looks), []


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(f"{out} exists and is not empty; pass --force to overwrite it "
                                    "(earlier synth_* files there are removed) or choose another --out.")
        for sub in [f"{d}/{s}" for d in ("images", "annotations") for s in SPLITS] + \
                   ["mixing/validation", "textedit/validation"]:
            folder = out / sub
            if folder.is_dir():
                for f in folder.glob("synth_*.png"):
                    f.unlink()
    try:
        for sub in [f"{d}/{s}" for d in ("images", "annotations") for s in SPLITS]:
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}.") from None


def synthesize(out: Path, *, num: int, resolution: int = 256, seed: int = 0, val_fraction: float = 0.1,
               mixing_pairs: int = 8, workers: Optional[int] = None, force: bool = False,
               progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Write a synthetic dataset to `out` (layout in the module docstring); returns a summary dict.

    `progress(done, total)` counts rendered images (scenes plus mixing/text-edit renders); its first call,
    with done = 0, comes after the worker processes have started. Same arguments -> byte-identical files,
    whatever `workers` is. metadata.jsonl is written last, so an interrupted run has none.
    """
    if num < 1:
        raise InputError(f"--num {num}: need at least one scene.")
    if not 16 <= resolution <= 4096:
        raise InputError(f"--resolution {resolution}: expected 16..4096 pixels.")
    if seed < 0:
        raise InputError(f"--seed {seed}: expected a non-negative integer.")
    if not 0 <= val_fraction <= 1:
        raise InputError(f"--val-fraction {val_fraction}: expected a fraction in [0, 1] (1: every scene in "
                         "validation/).")
    if mixing_pairs < 0:
        raise InputError(f"--mixing-pairs {mixing_pairs}: expected 0 or more.")
    workers = workers or min(2, os.cpu_count() or 1)
    if workers < 1:
        raise InputError(f"--workers {workers}: expected 1 or more.")
    out = Path(out)
    start = time.perf_counter()
    _prepare_out(out, force)
    val = validation_indices(num, val_fraction)
    splits = [(i, "training") for i in range(num)]
    for i in val:
        splits[i] = (i, "validation")

    # Jobs: chunks of scenes, then one job per mixing scene (all its style and text-edit renders).
    chunk = max(1, min(16, -(-num // (workers * 8))))
    jobs: list[tuple] = [("scenes", str(out), resolution, seed, splits[i:i + chunk]) for i in range(0, num, chunk)]
    mix = [scene_record(seed, i, "validation") for i in val[:mixing_pairs]]
    if mix:
        for sub in ("mixing/validation", "textedit/validation"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        styles = [(r["file"], r["style"]) for r in mix]
        jobs += [("mix", str(out), resolution, r["file"], r["content"], styles, STYLE_NAMES) for r in mix]
    total = num + len(mix) * (len(mix) + len(STYLE_NAMES))
    report = progress or (lambda done, total: None)

    warm_up()  # forked workers inherit the noise banks
    done, records = 0, []
    if workers == 1 or len(jobs) == 1:
        report(0, total)
        for job in jobs:
            n, recs = _run_job(job)
            done += n
            records += recs
            report(done, total)
    else:
        ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(_run_job, job) for job in jobs]
            report(0, total)
            try:
                for fut in as_completed(futures):
                    n, recs = fut.result()
                    done += n
                    records += recs
                    report(done, total)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    records.sort(key=lambda r: r["file"])
    lines = "".join(json.dumps(r) + "\n" for r in records)
    tmp = out / f".metadata.jsonl.{os.getpid()}.tmp"
    tmp.write_text(lines, encoding="utf-8")
    os.replace(tmp, out / "metadata.jsonl")
    seconds = time.perf_counter() - start
    n_val = len(val)
    return {"out": str(out), "num": num, "training": num - n_val, "validation": n_val, "resolution": resolution,
            "seed": seed, "workers": workers, "mixing_scenes": len(mix), "mixing_images": len(mix) ** 2,
            "textedit_images": len(mix) * len(STYLE_NAMES), "seconds": round(seconds, 3),
            "scenes_per_s": round(num / seconds, 1)}
