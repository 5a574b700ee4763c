"""Plot SWD against wall-clock minutes (or kimg) from generator run logs, as a PNG drawn with Pillow.

    python scripts/plot_swd.py BUNDLE/runs/generator-*/log.jsonl --out swd.png [--x minutes|kimg]
        [--floor 26] [--mark 60 "60-min budget"] [--label NAME ...]

One run: one line per pyramid level (`swd/64`, `swd/32`, ...) and `swd/avg` in black. Several runs: `swd/avg`
of each, one colour per run (`--label` names them, in order). `--floor` draws a dashed horizontal line (the
real-vs-real value), `--mark X TEXT` a vertical one. A resumed run's snapshot lines carry their minutes since
the run began (earlier sessions included), so a resumed log plots as one continuous curve.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bgedit_cli.io import save_png

PALETTE = [(200, 50, 50), (40, 140, 40), (40, 80, 200), (230, 140, 20), (130, 60, 170), (20, 150, 160)]
W, H = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 60


def read_snapshots(path: Path) -> list[dict]:
    """The snapshot lines (those with `swd/avg`) of a log.jsonl, in order."""
    rows = []
    for line in path.read_text().splitlines():
        if '"swd/avg"' in line:
            rows.append(json.loads(line))
    if not rows:
        raise SystemExit(f"Error: {path} has no snapshot lines with swd/avg; is it a generator run's log.jsonl?")
    return rows


def nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def dashed_line(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], fill, dash: int = 6) -> None:
    length = math.dist(a, b)
    n = max(1, int(length // dash))
    for i in range(0, n, 2):
        t0, t1 = i / n, min(1.0, (i + 1) / n)
        draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                   (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=fill, width=1)


def plot(series: list[tuple[str, tuple[int, int, int], list[tuple[float, float]]]], out: Path, xlabel: str,
         title: str, floor: float | None, marks: list[tuple[float, str]]) -> None:
    xs = [x for _, _, pts in series for x, _ in pts] + [m for m, _ in marks]
    ys = [y for _, _, pts in series for _, y in pts] + ([floor] if floor is not None else [])
    xmax = max(xs) * 1.05
    ystep = nice_step(max(ys))
    ymax = math.ceil(max(ys) * 1.05 / ystep) * ystep
    xstep = nice_step(xmax)
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float, y: float) -> tuple[float, float]:
        return LEFT + pw * x / xmax, TOP + ph * (1 - y / ymax)

    for i in range(int(ymax / ystep) + 1):
        y = i * ystep
        draw.line([px(0, y), px(xmax, y)], fill=(225, 225, 225))
        draw.text((LEFT - 8, px(0, y)[1]), f"{y:g}", fill="black", anchor="rm")
    for i in range(int(xmax / xstep) + 1):
        x = i * xstep
        draw.text((px(x, 0)[0], TOP + ph + 8), f"{x:g}", fill="black", anchor="mt")
    draw.line([px(0, 0), px(xmax, 0)], fill="black")
    draw.line([px(0, 0), px(0, ymax)], fill="black")
    if floor is not None:
        dashed_line(draw, px(0, floor), px(xmax, floor), (90, 90, 90))
        draw.text((px(xmax, floor)[0] + 6, px(0, floor)[1]), f"real vs real {floor:g}", fill=(90, 90, 90),
                  anchor="lm")
    for x, text in marks:
        draw.line([px(x, 0), px(x, ymax)], fill=(150, 150, 150))
        draw.text((px(x, ymax)[0] + 4, TOP + 4), text, fill=(90, 90, 90))
    for k, (name, colour, pts) in enumerate(series):
        coords = [px(x, y) for x, y in pts]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for cx, cy in coords:
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        ly = TOP + 10 + 22 * k
        draw.line([(W - RIGHT + 15, ly), (W - RIGHT + 40, ly)], fill=colour, width=3)
        draw.text((W - RIGHT + 46, ly), name, fill="black", anchor="lm")
    draw.text((LEFT, 12), title, fill="black")
    draw.text((LEFT + pw / 2, H - 22), xlabel, fill="black", anchor="mm")
    save_png(out, np.asarray(img), force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", type=Path, help="log.jsonl files (or run folders holding one)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--x", choices=["minutes", "kimg"], default="minutes")
    ap.add_argument("--xlabel", default=None)
    ap.add_argument("--title", default="SWD x1e3 (lower is better), G_ema vs real images")
    ap.add_argument("--floor", type=float, default=None, help="real-vs-real SWD, drawn dashed")
    ap.add_argument("--mark", nargs=2, action="append", default=[], metavar=("X", "TEXT"))
    ap.add_argument("--label", action="append", default=[], help="name of each run, in order (several runs)")
    args = ap.parse_args()

    logs = [p / "log.jsonl" if p.is_dir() else p for p in args.logs]
    runs = [read_snapshots(p) for p in logs]
    series = []
    if len(runs) == 1:
        rows = runs[0]
        levels = sorted({k for r in rows for k in r if k.startswith("swd/") and k != "swd/avg"},
                        key=lambda k: -int(k.split("/")[1]))
        for i, key in enumerate(levels + ["swd/avg"]):
            colour = (0, 0, 0) if key == "swd/avg" else PALETTE[i % len(PALETTE)]
            series.append((key, colour, [(r[args.x], r[key]) for r in rows if key in r]))
    else:
        for i, rows in enumerate(runs):
            name = args.label[i] if i < len(args.label) else logs[i].parent.name
            series.append((name, PALETTE[i % len(PALETTE)], [(r[args.x], r["swd/avg"]) for r in rows]))
    xlabel = args.xlabel or ("wall-clock minutes" if args.x == "minutes" else "kimg (thousands of real images)")
    plot(series, args.out, xlabel, args.title, args.floor, [(float(x), t) for x, t in args.mark])
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
