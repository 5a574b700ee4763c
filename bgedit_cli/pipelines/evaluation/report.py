"""The report folder of `bgedit evaluate --report DIR`: index.html with the tables, notes and figures of an
`Evaluation`, the figures as PNGs, and every reconstruction.

    check_report_dir(DIR, force)         # before any work
    write_report(DIR, ev)                # DIR/index.html, DIR/<figure>.png, DIR/recon/<variant>/<name>.png

The tables are the evaluation's own (`ev.tables()`: Table 1 first, then each section's): the same as the
terminal shows. The page is plain HTML with a little CSS: images by relative path, so the folder can be moved
or opened from disk; no scripts. `bgedit evaluate` writes it through `pipelines.evaluation.run`.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from bgedit_cli.errors import OutputExistsError
from bgedit_cli.io import image_columns, save_png
from bgedit_cli.pipelines.evaluation.result import Evaluation
from bgedit_cli.pipelines.evaluation.section import Figure, Table

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}ol.notes,p.meta{font-size:.9em;color:#555}
figure{margin:1.4em 0}figcaption{font-size:.9em;color:#444;max-width:1100px}
img.grid{image-rendering:pixelated;border:1px solid #ddd;max-width:100%}img.thumb{image-rendering:pixelated;margin:2px}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}"""


# ----------------------------------------------------------------------------------------------------------
# The report folder.


def check_report_dir(out: Path, force: bool) -> None:
    """Before any work: the report folder must be new or empty, or --force given."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--report {out}: is a file; give a folder.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"--report {out}: the folder is not empty; pass --force to overwrite the report "
                                "there or choose another folder.")


def write_report(out: Path, ev: Evaluation) -> Path:
    """Write the figures, the reconstructions and index.html into `out`; returns the page's path."""
    out = Path(out)
    figures = []
    for name, fig in ev.figures.items():
        grid = image_columns(fig.columns)
        save_png(out / f"{name}.png", grid, force=True)
        figures.append((name, fig, grid.shape[1], fig.columns[0].shape[-1]))
    recon = {}
    for row, (names, pixels) in ev.images.items():
        folder = out / "recon" / row
        for name, img in zip(names, pixels):
            save_png(folder / f"{name}.png", img.permute(1, 2, 0).numpy(), force=True)
        recon[row] = names
    page = out / "index.html"
    page.write_text(render_html(ev, figures, recon), encoding="utf-8")
    return page


def _table_html(t: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in t.notes)
    return (f"<table><caption>{esc(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (f'<ol class="notes">{notes}</ol>' if notes else ""))


def render_html(ev: Evaluation, figures: list[tuple[str, Figure, int, int]], recon: dict[str, list[str]]) -> str:
    """index.html: tables, notes, figures (PNG files next to it), reconstructions, settings."""
    esc = html.escape
    tables = ev.tables()
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', "<title>bgedit evaluation</title>",
             f"<style>{CSS}</style></head><body>", "<h1>bgedit evaluation</h1>"]
    parts.append(f'<p class="meta">{esc(ev.source)}; {esc(time.strftime("%Y-%m-%d %H:%M"))}; bgedit '
                 f'{esc(ev.versions["bgedit"])}, torch {esc(str(ev.versions["torch"]))}, device '
                 f'{esc(ev.device)}. ↓ lower is better, ↑ higher is better.</p>')
    parts += ["<h2>Metrics</h2>", _table_html(tables[0])]
    notes = ev.all_notes()
    if notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    if figures:
        parts.append("<h2>Figures</h2>")
    for name, fig, width, cell in figures:
        scale = max(1, min(4, 128 // cell))
        labels = " | ".join(fig.column_labels)
        rows = ", ".join(r for r in fig.row_labels if r)
        parts.append(f'<figure id="{esc(name)}"><img class="grid" src="{esc(name)}.png" width="{width * scale}" '
                     f'alt="{esc(fig.title)}"><figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)} Columns: '
                     f"{esc(labels)}. Rows: {esc(rows)}.</figcaption></figure>")
    if len(tables) > 1:
        parts.append("<h2>More tables</h2>")
        parts += [_table_html(t) for t in tables[1:]]
    for row, names in recon.items():
        if row == next(iter(recon)):
            parts.append("<h2>Reconstructions</h2>")
        thumbs = "".join(f'<img class="thumb" src="recon/{esc(row)}/{esc(n)}.png" width="64" alt="{esc(n)}" '
                         f'title="{esc(n)}">' for n in names[:24])
        parts.append(f'<p><b>{esc(row)}</b>: {len(names)} PNGs in <a href="recon/{esc(row)}/">recon/{esc(row)}/</a>'
                     f" (final reconstruction y_{ev.steps}, named after the inputs).</p><p>{thumbs}</p>")
    seconds = json.dumps({k: round(v, 3) for k, v in ev.seconds.items()})
    parts += ["<h2>Settings</h2>", f"<pre>{esc(json.dumps(ev.settings, indent=2, sort_keys=True, default=str))}</pre>",
              f'<p class="meta">Seconds per stage: {esc(seconds)}</p>', "</body></html>"]
    return "\n".join(parts) + "\n"
