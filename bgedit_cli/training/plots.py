"""Curves of a metric from training runs' `log.jsonl`, drawn with Pillow (no plotting library): `bgedit runs plot`.

    plot_runs([Path("BUNDLE/runs/generator-20261127-081028")], Path("swd.png"), metric="swd", x="minutes",
              floor=25, marks=[(60, "budget")])

One run: one line per key under the metric (`swd/64`, `swd/32`, ...), its summary (`swd/avg`, or the metric
itself, e.g. `val/miou`) in black. Several runs: the summary of each, one colour per run (`labels` names them, in
order; default: the run folder's name). `floor` draws a dashed horizontal line (e.g. SWD's real-vs-real value),
`marks` vertical ones with a label. `x` is any key every record carries: `minutes` (wall-clock since the run
began, earlier sessions of a resumed run included, so a resumed log plots as one curve), `step`, or `kimg`
(generator runs).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from bgedit_cli.errors import InputError
from bgedit_cli.fileio import check_writable
from bgedit_cli.io import save_png

PALETTE = [(200, 50, 50), (40, 140, 40), (40, 80, 200), (230, 140, 20), (130, 60, 170), (20, 150, 160)]
WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 60
TITLES = {"swd": "SWD x1e3 (lower is better), G_ema vs real images"}
XLABELS = {"minutes": "wall-clock minutes", "kimg": "kimg (thousands of real images)", "step": "step"}

Colour = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    colour: Colour
    points: list[tuple[float, float]]


def log_path(run: Path) -> Path:
    """A run folder's log.jsonl (or the log file itself)."""
    path = Path(run) / "log.jsonl" if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise InputError(f"{run}: no run log there; give a run folder (BUNDLE/runs/<stage>-<time>) or its "
                         "log.jsonl.")
    return path


def summary_key(metric: str, keys: set[str]) -> str:
    """`metric/avg` when the log has per-part values (SWD's levels), else the metric itself."""
    return f"{metric}/avg" if f"{metric}/avg" in keys else metric


def read_records(path: Path, metric: str) -> list[dict]:
    """The records of a log that hold `metric` (or `metric/...` values), in order."""
    needle = f'"{metric}'
    rows = []
    with open(path) as f:
        for line in f:
            if needle in line:  # cheap filter: a generator log has a line per step, a few with SWD
                record = json.loads(line)
                if any(k == metric or k.startswith(metric + "/") for k in record):
                    rows.append(record)
    if not rows:
        raise InputError(f"{path}: no records with {metric}; is it the log of a run that evaluates {metric}?")
    return rows


def run_series(runs: Sequence[Path], *, metric: str = "swd", x: str = "minutes",
               labels: Sequence[str] = ()) -> list[Series]:
    """The curves to draw (see the module doc)."""
    logs = [log_path(r) for r in runs]
    records = [read_records(p, metric) for p in logs]
    for path, rows in zip(logs, records):
        if not all(x in r for r in rows):
            raise InputError(f"{path}: the {metric} records have no {x!r}; use --x minutes or --x step.")
    if len(records) == 1:
        rows = records[0]
        keys = {k for r in rows for k in r if k == metric or k.startswith(metric + "/")}
        total = summary_key(metric, keys)
        parts = sorted(keys - {total}, key=_part_order)
        return [Series(key, (0, 0, 0) if key == total else PALETTE[i % len(PALETTE)],
                       [(r[x], r[key]) for r in rows if key in r]) for i, key in enumerate(parts + [total])]
    series = []
    for i, (path, rows) in enumerate(zip(logs, records)):
        total = summary_key(metric, {k for r in rows for k in r})
        name = labels[i] if i < len(labels) else path.parent.name
        series.append(Series(name, PALETTE[i % len(PALETTE)], [(r[x], r[total]) for r in rows if total in r]))
    return series


def _part_order(key: str) -> tuple:
    """SWD levels from the finest (`swd/64`) down; other parts by name."""
    last = key.rsplit("/", 1)[-1]
    return (0, -int(last), key) if last.isdigit() else (1, 0, key)


def plot_runs(runs: Sequence[Path], out: Path, *, metric: str = "swd", x: str = "minutes",
              labels: Sequence[str] = (), title: str | None = None, xlabel: str | None = None,
              floor: float | None = None, marks: Sequence[tuple[float, str]] = (), force: bool = False
              ) -> list[Series]:
    """Draw `metric` against `x` for the runs into the PNG `out`; returns the curves drawn."""
    check_writable(out, force)
    series = run_series(runs, metric=metric, x=x, labels=labels)
    image = draw(series, xlabel=xlabel or XLABELS.get(x, x), title=title or TITLES.get(metric, metric),
                 floor=floor, marks=marks)
    save_png(out, np.asarray(image), force=force)
    return series


# ----------------------------------------------------------------------------------------------------------
# Drawing.


def nice_step(span: float, ticks: int = 6) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving about `ticks` ticks over `span`."""
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def dashed_line(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], fill: Colour,
                dash: int = 6) -> None:
    n = max(1, int(math.dist(a, b) // dash))
    for i in range(0, n, 2):
        t0, t1 = i / n, min(1.0, (i + 1) / n)
        draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                   (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=fill, width=1)


def draw(series: Sequence[Series], *, xlabel: str, title: str, floor: float | None = None,
         marks: Sequence[tuple[float, str]] = ()) -> Image.Image:
    """The chart: axes from 0 with round ticks, a legend on the right, a title above and the x label below."""
    xs = [px for s in series for px, _ in s.points] + [m for m, _ in marks]
    ys = [py for s in series for _, py in s.points] + ([floor] if floor is not None else [])
    if not xs or not ys:
        raise InputError("nothing to plot: the runs have no values of the metric.")
    xmax = max(max(xs) * 1.05, 1e-9)
    ystep = nice_step(max(max(ys), 1e-9))
    ymax = math.ceil(max(ys) * 1.05 / ystep) * ystep or ystep
    xstep = nice_step(xmax)
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    pen = ImageDraw.Draw(img)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return LEFT + pw * x / xmax, TOP + ph * (1 - y / ymax)

    for i in range(int(ymax / ystep) + 1):
        y = i * ystep
        pen.line([at(0, y), at(xmax, y)], fill=(225, 225, 225))
        pen.text((LEFT - 8, at(0, y)[1]), f"{y:g}", fill="black", anchor="rm")
    for i in range(int(xmax / xstep) + 1):
        pen.text((at(i * xstep, 0)[0], TOP + ph + 8), f"{i * xstep:g}", fill="black", anchor="mt")
    pen.line([at(0, 0), at(xmax, 0)], fill="black")
    pen.line([at(0, 0), at(0, ymax)], fill="black")
    if floor is not None:
        dashed_line(pen, at(0, floor), at(xmax, floor), (90, 90, 90))
        pen.text((at(xmax, floor)[0] + 6, at(0, floor)[1]), f"real vs real {floor:g}", fill=(90, 90, 90),
                 anchor="lm")
    for x, text in marks:
        pen.line([at(x, 0), at(x, ymax)], fill=(150, 150, 150))
        pen.text((at(x, ymax)[0] + 4, TOP + 4), text, fill=(90, 90, 90))
    for k, s in enumerate(series):
        coords = [at(x, y) for x, y in s.points]
        if len(coords) > 1:
            pen.line(coords, fill=s.colour, width=2)
        for cx, cy in coords:
            pen.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=s.colour)
        ly = TOP + 10 + 22 * k
        pen.line([(WIDTH - RIGHT + 15, ly), (WIDTH - RIGHT + 40, ly)], fill=s.colour, width=3)
        pen.text((WIDTH - RIGHT + 46, ly), s.name, fill="black", anchor="lm")
    pen.text((LEFT, 12), title, fill="black")
    pen.text((LEFT + pw / 2, HEIGHT - 22), xlabel, fill="black", anchor="mm")
    return img
