"""Upright things drawn into a `Layout`, each standing on an image row: a forest band, foreground trees, rocks,
houses (with windows and doors) and a city skyline. Every detail is drawn from the scene's content rng."""

from __future__ import annotations

import numpy as np

from bgedit_cli.data.synth.geometry import (CLASS_IDS, CONIFER, DOOR, LEAFY, ROCK, ROOF, TRUNK, WALL, WINDOW,
                                            Layout)
from bgedit_cli.data.synth.noise import hash01


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


def forest(L: Layout, kind: str, base: float, rng: np.random.Generator) -> None:
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


def tree(L: Layout, tx: float, base: float, kind: str, rng: np.random.Generator) -> None:
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


def rock(L: Layout, rx: float, base: float, rng: np.random.Generator) -> None:
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
    rank = hash01(col + 1000 * row, np.full_like(col, bid))
    L.aux[box] = np.where(win, rank, L.aux[box])
    return win


def house(L: Layout, bx: float, base: float, rng: np.random.Generator) -> None:
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


def skyline(L: Layout, base: float, rng: np.random.Generator) -> None:
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

