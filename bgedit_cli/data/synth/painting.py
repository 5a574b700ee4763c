"""Painting: colour a `Layout` in a style (`paint`), and `render(content, style, R)`, the two steps in one.

`render` is a pure function of its inputs: the annotation depends on `content` only, so
`render(content_a, style_b)` is the ground truth for "content of A in the style of B". Everything is vectorised
numpy without BLAS, so results do not depend on thread counts.
"""

from __future__ import annotations

import functools

import numpy as np

from bgedit_cli.data.synth.content import layout
from bgedit_cli.data.synth.geometry import CONIFER, LEAFY, MATERIALS, MOUNTAIN, SKY, UPRIGHT, WINDOW, Layout, is_water
from bgedit_cli.data.synth.noise import noise, smoothstep

# Per material: texture strength, relief (left/right shading) strength, and the most snow it takes (0..1):
# below 1 the material's own colour and texture show through the snow, so what lies under it (grass,
# earth, field, sand) can still be told apart, as its label requires.
_TEX = np.array([0, .55, .35, .25, .25, .25, .55, .5, .5, .35, .5, .6, .4, .12, .2, .05, .1, .25, .05, .6], np.float32)
_RELIEF = np.array([0, .55, .35, 0, 0, 0, 0, 0, 0, 0, .45, .5, .3, .35, .25, .1, 0, 0, 0, .6], np.float32)
_UPRIGHT = np.isin(np.arange(len(MATERIALS)), UPRIGHT)
_SNOW = np.array([0, 0, .8, 0, 0, 0, .8, .7, .62, .5, .55, .5, 0, 0, .9, 0, 0, .35, 0, .5], np.float32)


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
        snow = np.where(is_tree, cover * smoothstep(-0.3, 0.5, tex + 0.6 * lit_nx + 0.5 * L.elev - 0.3), cover)
    cap = style["snowcap"]
    if cap > 0 and hz > 0:
        m = mat[:hz] == MOUNTAIN
        snow[:hz][m] = smoothstep(0.0, 0.12, L.elev[:hz] + 0.25 * L.tex[:hz] - (1 - cap)
                                  - 0.25 * cap * np.abs(L.nx[:hz]))[m]
    shade = (1 + (style["texture"] * 0.35) * np.take(_TEX, mat) * (1 - 0.6 * snow) * tex
             + style["relief"] * np.take(_RELIEF, mat) * lit_nx)
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
        disc = smoothstep(style["sun_size"], style["sun_size"] * 0.8, d[:hz])
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
            alpha = smoothstep(thr, thr + 0.25, n1) * smoothstep(0.0, 0.15, height)
            dense = smoothstep(thr + 0.05, thr + 0.6, n1)
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
    wet = is_water(mat)
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
        path = np.exp(-(((xs - sx) / width) ** 2)) * smoothstep(0.1, 0.6, ripple)
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

