"""Content: the layout factors of a scene (`sample_content`) and their rasterisation (`layout`).

A scene's content is a JSON-serialisable dict: horizon, mountain/hill ridges, water (lake, pond, sea, river),
ground (grass, field, earth, sand), a forest band, foreground trees, buildings (village or skyline), a road,
rocks, and a `seed` from which every geometric detail (ridgelines, tree positions, shorelines, window grids) is
drawn at render time. `layout(content, R)` is deterministic in (content, R) and independent of the style.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from bgedit_cli.data.synth import objects
from bgedit_cli.data.synth.geometry import (CLASS_IDS, EARTH, FIELD, GRASS, HILL, LAKE, MARKING, MOUNTAIN, RIVER,
                                            ROAD, SAND, SEA, SKY, Layout, is_water)
from bgedit_cli.data.synth.noise import BANK_SIZE, bank_at, fbm1, hash01, noise, pick, smoothstep

# The categorical content factors and the values `sample_content` draws them from (ridges: their kinds).
CONTENT_VALUES: dict[str, tuple] = {
    "ridges": ("mountain", "hill"),
    "water": ("none", "lake", "pond", "sea", "river"),
    "ground": ("grass", "field", "earth", "sand"),
    "forest": ("none", "conifer", "leafy", "mixed"),
    "trees": (0, 1, 2, 3, 5),
    "buildings": ("none", "village", "skyline"),
    "road": (False, True),
    "rocks": (0, 2, 4),
}


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def sample_content(rng: np.random.Generator) -> dict:
    """Random layout factors (JSON-serialisable). Geometric detail comes from `content["seed"]` at render time."""
    values = CONTENT_VALUES
    c: dict = {"seed": int(rng.integers(0, 2**31 - 1))}
    c["horizon"] = _r(rng.uniform(0.36, 0.66))
    n_ridges = pick(rng, (0, 1, 2), (0.15, 0.4, 0.45))
    ridges = []
    for k in range(n_ridges):
        near = k == 1 or (n_ridges == 1 and rng.random() < 0.3)
        kind = "hill" if near and rng.random() < 0.5 else "mountain"
        lo, hi = ((0.15, 0.45) if near else (0.45, 0.95)) if kind == "mountain" else (0.12, 0.35)
        ridges.append({"kind": kind, "height": _r(rng.uniform(lo, hi)), "near": bool(near)})
    c["ridges"] = ridges
    c["water"] = pick(rng, values["water"], (0.3, 0.22, 0.12, 0.2, 0.16))
    c["ground"] = pick(rng, values["ground"], (0.5, 0.2, 0.15, 0.15) if c["water"] != "sea" else (0.5, 0.1, 0.1, 0.3))
    c["forest"] = pick(rng, values["forest"], (0.35, 0.25, 0.2, 0.2))
    c["trees"] = pick(rng, values["trees"], (0.4, 0.2, 0.15, 0.15, 0.1))
    c["buildings"] = pick(rng, values["buildings"], (0.6, 0.25, 0.15))
    c["road"] = bool(rng.random() < 0.35) and c["water"] != "sea"
    c["rocks"] = pick(rng, values["rocks"], (0.6, 0.25, 0.15))
    return c


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
    g_off = [(int(a), int(b)) for a, b in rng.integers(0, BANK_SIZE, (4, 2))]
    gtex = bank_at("iso", u, v, (60.0, 60.0), g_off[0]) * 0.7 + bank_at("iso", u, v, (230.0, 230.0), g_off[1]) * 0.3
    gtex = gtex * (0.35 + 0.65 * smoothstep(0.0, 0.2, dy)) + 0.35 * L.tex[gnd] * smoothstep(0.0, 0.1, dy)
    ground = content["ground"]
    L.mat[gnd] = {"grass": GRASS, "field": FIELD, "earth": EARTH, "sand": SAND}[ground]
    L.seg[gnd] = CLASS_IDS[ground]
    L.tex[gnd] = gtex
    if ground == "field":  # parcels with crop rows converging on the vanishing point
        tone = hash01(np.floor(u * 1.2 + 0.3), np.floor(np.log(v) * 3.0), seed % 9973)
        stripes = np.where(tone > 0.5, np.sin(u * 40.0), np.sin(v * 6.0))
        L.tex[gnd] = 0.55 * stripes * smoothstep(0.0, 0.25, dy) + 0.35 * gtex
        L.obj[gnd] = tone
    elif ground in ("grass", "earth"):  # patches of the other ground kind
        pmask = bank_at("iso", u, v, (12.0, 12.0), g_off[3]) + 0.15 * gtex > 0.3
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
    wet = is_water(L.mat[gnd])
    if wet.any():
        L.tex[gnd][wet] = bank_at("iso", u, v, (25.0, 900.0), g_off[2])[wet]

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
        items.append((base, lambda base=base: objects.forest(L, content["forest"], base, rng)))
    if content["buildings"] == "skyline":
        base = hz + 1.0 + (0 if water == "sea" else rng.uniform(0, 0.04) * (R - hz))
        items.append((base, lambda base=base: objects.skyline(L, base, rng)))
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
            items.append((base, lambda base=base, bx=bx: objects.house(L, bx, base, rng)))
    for _ in range(int(content["trees"])):
        base = hz + rng.uniform(0.2, 1.1) * (R - hz)
        tx = rng.uniform(-0.05, 1.05) * R
        kind = "conifer" if content["forest"] == "conifer" or rng.random() < 0.3 else "leafy"
        items.append((base, lambda base=base, tx=tx, kind=kind: objects.tree(L, tx, base, kind, rng)))
    for _ in range(int(content["rocks"])):
        base = hz + rng.uniform(0.3, 1.0) * (R - hz)
        rx = rng.uniform(0, 1) * R
        items.append((base, lambda base=base, rx=rx: objects.rock(L, rx, base, rng)))
    for _, draw in sorted(items, key=lambda item: item[0]):
        draw()
    return L

