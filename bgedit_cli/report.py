"""What `bgedit evaluate` shows: its result as tables (for the terminal and the HTML page) and the report folder.

    tables = result_tables(ev.result)    # [Table(title, headers, rows, notes)], plain strings
    write_report(DIR, ev)                # DIR/index.html, DIR/<figure>.png, DIR/recon/<variant>/<name>.png

The first table is shaped like the paper's Table 1: one row per variant (or "fake vs real"), one column per
metric with its direction (↓ lower is better, ↑ higher is better); a metric without a number shows "n/a" with a
superscript k, and footnote k gives the reason. The page is plain HTML with a little CSS: images by relative path, so the folder
can be moved or opened from disk; no scripts. Used by the CLI only (it sits above `pipelines/`).
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from pathlib import Path
from typing import Any

from bgedit_cli.errors import OutputExistsError
from bgedit_cli.io import image_columns, save_png
from bgedit_cli.pipelines.evaluate import LOWER_IS_BETTER, PAIRWISE, Evaluation

LABELS = {"l2": "L2", "lpips": "LPIPS", "fid": "FID", "kid": "KID×10³", "psnr": "PSNR", "ms_ssim": "MS-SSIM",
          "fd_clip": "FD_CLIP", "swd": "SWD×10³"}
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
FORMATS = {"l2": ".4f", "lpips": ".3f", "fid": ".2f", "kid": ".2f", "psnr": ".2f", "ms_ssim": ".3f",
           "fd_clip": ".3f", "swd": ".2f"}
TEXT_COLUMNS = (("pairs", "pairs", "d"), ("closer", "closer to GT than recon ↑", ".2f"),
                ("l2_edit", "L2 edit ↓", ".4f"), ("l2_recon", "L2 recon", ".4f"),
                ("improvement", "L2 recon − edit ↑", "+.4f"), ("clip_gain", "CLIP gain ↑", "+.4f"),
                ("clip_rise", "CLIP rise ↑", ".2f"))
PROMPT_COLUMNS = TEXT_COLUMNS[:5]  # the prompt-wording table: no CLIP columns (the prompts differ per row)
CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}ol.notes,p.meta{font-size:.9em;color:#555}
figure{margin:1.4em 0}figcaption{font-size:.9em;color:#444;max-width:1100px}
img.grid{image-rendering:pixelated;border:1px solid #ddd;max-width:100%}img.thumb{image-rendering:pixelated;margin:2px}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}"""


@dataclasses.dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = dataclasses.field(default_factory=list)


def header(metric: str) -> str:
    return f"{LABELS[metric]} {'↓' if LOWER_IS_BETTER[metric] else '↑'}"


def _fmt(value: float, spec: str) -> str:
    return "inf" if value == float("inf") else format(value, spec)


# ----------------------------------------------------------------------------------------------------------
# Tables.


def result_tables(result: dict[str, Any]) -> list[Table]:
    """Every table of an evaluation result, Table 1 first."""
    tables = [metric_table(result)]
    for v, rec in result.get("reconstruction", {}).items():
        metrics = [m for m in PAIRWISE if m in rec["final"]]
        tables.append(Table(f"Reconstruction per refinement step: {v} (y_0: encoders only)",
                            ["step"] + [header(m) for m in metrics],
                            [[f"y_{t}"] + [_fmt(s[m], FORMATS[m]) for m in metrics]
                             for t, s in enumerate(rec["per_step"])]))
    mixing = result.get("mixing", {})
    for v, mix in mixing.items():
        if v == "skipped":
            continue
        for task, gt in (("style", "render(content A, style B)"), ("content", "render(content B, style A)")):
            answers = mix[task]
            metrics = [m for m in PAIRWISE if m in next(iter(answers.values()))]
            tables.append(Table(f"{task.capitalize()} mixing vs {gt}: {v}, {mix['pairs']} ordered pairs of "
                                f"{mix['scenes']} scenes ({mix['method']})", ["answer"] + [header(m) for m in metrics],
                                [[name] + [_fmt(vals[m], FORMATS[m]) for m in metrics]
                                 for name, vals in answers.items()]))
    layout = result.get("layout", {})
    if "edit" in layout:
        rows = [[name, _fmt(layout[key]["miou"], ".3f"), _fmt(layout[key]["pixel_acc"], ".3f")]
                for key, name in (("edit", "edit of A with B's map"), ("b_input", "B's input (segmenter's own)"),
                                  ("b_reconstruction", "B's own reconstruction (what the generator draws)"),
                                  ("a_reconstruction", "A's reconstruction (map ignored)")) if key in layout]
        tables.append(Table(f"Layout edits read back by the segmenter vs B's map: {layout['pairs']} ordered pairs of "
                            f"{layout['scenes']} scenes", ["image", "mIoU ↑", "pixel acc ↑"], rows))
    tables += text_tables(result.get("text", {}))
    return tables


def _cells(vals: dict[str, Any], columns: tuple) -> list[str]:
    return [_fmt(vals[k], spec) if vals.get(k) is not None else "–" for k, _, spec in columns]


def text_tables(text: dict[str, Any]) -> list[Table]:
    """Text edits: per edit setting, the trained style prompts against the ground truth, then unseen wordings and
    the shuffled-prompt control; one table of the layout kept and the "ocean" edit over the settings."""
    tables = []
    modes = text.get("modes", {})
    for mode, scores in modes.items():
        rows = [[style] + _cells(vals, TEXT_COLUMNS) for style, vals in scores["per_style"].items()]
        if scores["all"]["pairs"]:
            rows.append(["all"] + _cells(scores["all"], TEXT_COLUMNS))
        tables.append(Table(f"Text edits vs ground truth: {mode}; {text['scenes']} scenes, "
                            f"{text['same_style_pairs_left_out']} same-style pairs left out",
                            ["style"] + [label for _, label, _ in TEXT_COLUMNS], rows))
    for mode, scores in modes.items():
        if "unseen" not in scores and "shuffled" not in scores:
            continue  # a result from before these measures
        rows, notes = [], []
        if scores["all"]["pairs"]:
            rows.append(["trained prompts, all styles"] + _cells(scores["all"], PROMPT_COLUMNS))
        unseen = scores.get("unseen", {})
        if "skipped" in unseen:
            notes.append(f"unseen wordings: skipped: {unseen['skipped']}")
        elif unseen:
            if unseen["trained"]["pairs"] != scores["all"]["pairs"]:  # some styles have no unseen wording
                rows.append(["trained prompts, same pairs as below"] + _cells(unseen["trained"], PROMPT_COLUMNS))
            rows += [[f'"{prompt}" ({vals["style"]})'] + _cells(vals, PROMPT_COLUMNS)
                     for prompt, vals in unseen["per_prompt"].items()]
            rows.append(["unseen wordings, all"] + _cells(unseen["all"], PROMPT_COLUMNS))
            if unseen.get("ratio") is not None:
                notes.append(f"unseen / trained mean L2 improvement: {unseen['ratio']:.2f} (target ≥ "
                             f"{unseen['target']:g})")
            elif unseen.get("ratio_note"):
                notes.append(f"unseen / trained: {unseen['ratio_note']}")
        shuffled = scores.get("shuffled", {})
        if "skipped" in shuffled:
            notes.append(f"shuffled prompts: skipped: {shuffled['skipped']}")
        elif shuffled:
            rows.append(["shuffled prompts (control)"] + _cells(shuffled["all"], PROMPT_COLUMNS))
            pairs = ", ".join(f"{a} → {b}" for a, b in (text.get("shuffled_prompts") or {}).items())
            notes.append(f"shuffled prompts: each pair edited with another style's prompt ({pairs}), scored against "
                         "its own style's ground truth; matched prompts should do clearly better")
        if text.get("combined_prompts"):
            notes.append(f"combined prompts: {text['combined_prompts']}")
        if rows or notes:
            tables.append(Table(f"Text edits, prompt wordings vs ground truth: {mode}", ["prompts"] +
                                [label for _, label, _ in PROMPT_COLUMNS], rows, notes))
    rows, notes = [], []
    for mode, scores in modes.items():
        layout, ocean = scores.get("layout"), scores.get("ocean")
        if layout is None and ocean is None:
            continue
        cells = [mode]
        if layout and "skipped" not in layout:
            cells += [_fmt(layout["miou"], ".3f"), _fmt(layout["pixel_acc"], ".3f"), str(layout["pairs"])]
        else:
            cells += ["n/a"] * 3
            if layout and f"layout: {layout['skipped']}" not in notes:
                notes.append(f"layout: {layout['skipped']}")
        if ocean and "skipped" not in ocean:
            cells += [_fmt(ocean["rise"], ".2f"), _fmt(ocean["water_recon"], ".3f"), _fmt(ocean["water_edit"], ".3f"),
                      str(ocean["scenes"])]
        else:
            cells += ["n/a"] * 4
            if ocean and f'"ocean": {ocean["skipped"]}' not in notes:
                notes.append(f'"ocean": {ocean["skipped"]}')
        rows.append(cells)
    reference = text.get("layout_reference") or {}
    labels = {"ground_truth": "reference: ground-truth restyle vs input scene",
              "inverted_ground_truth": "reference: inverted ground-truth restyle vs reconstruction"}
    if rows and reference and "skipped" not in reference:
        pairs = rows[0][3] if rows[0][3] != "n/a" else ""
        rows += [[labels[k], _fmt(v["miou"], ".3f"), _fmt(v["pixel_acc"], ".3f"), pairs] + [""] * 4
                 for k, v in reference.items() if k in labels]
        notes.append("references: the segmenter on each pair's ground-truth restyle against its reading of the "
                     "input scene (how style-invariant it is on true renders), and on the inversion of that "
                     "restyle against the reconstruction (what a perfect restyle scores through this inversion "
                     "and generator)")
    if rows:
        targets = text.get("targets", {})
        notes = [f"layout: the segmenter's map of each trained-prompt edit vs its map of the reconstruction (mIoU "
                 f"over all edited pairs; target ≥ {targets.get('layout_miou', 0.7):g}); \"ocean\": validation "
                 f"scenes without sea, share whose water pixel fraction (sea + water + river) rises (target ≥ "
                 f"{targets.get('ocean_rise', 0.8):g}), and the mean fractions"] + notes
        tables.append(Table("Text edits: layout kept and \"ocean\"",
                            ["setting", "layout mIoU ↑", "layout pixel acc ↑", "pairs", "ocean: water rises ↑",
                             "water recon", "water edit", "scenes"], rows, notes))
    return tables


def metric_table(result: dict[str, Any]) -> Table:
    """Table 1: rows = variants (or "fake vs real"), columns = the metrics asked for; a cell with a footnote
    (why n/a, or what the number is not) carries its number in superscript."""
    s = result["settings"]
    metrics = s["metrics"]
    notes: dict[str, list[str]] = {}  # footnote text -> the metrics it is about

    def mark(metric: str, text: str) -> str:
        notes.setdefault(text, [])
        if metric not in notes[text]:
            notes[text].append(metric)
        return str(list(notes).index(text) + 1).translate(SUPERSCRIPT)

    rows = []
    for row in result["rows"]:
        cells = [row]
        for m in metrics:
            res = result["metrics"][row].get(m)
            if res is None or res["value"] is None:
                cells.append("n/a" + mark(m, res["unavailable_reason"] if res else "not computed"))
                continue
            extra = res["settings"].get("note") if m in ("fd_clip", "swd") else None
            if m == "fd_clip" and res["settings"].get("comparable"):
                extra = None
            if m == "ms_ssim" and res["settings"].get("computed") != "ms_ssim":
                extra = (f"computed as {res['settings']['computed']} at {s['resolution']} px (MS-SSIM's five scales "
                         "need more than 160 px; the scales that fit, weights renormalised)")
            cells.append(_fmt(res["value"], FORMATS[m]) + (mark(m, extra) if extra else ""))
        rows.append(cells)
    if s["mode"] == "bundle":
        title = (f"Reconstruction of {s['num_images']} {s['split']} images of {s['data']} at {s['resolution']} px, "
                 f"{s['steps']} refinement step{'' if s['steps'] == 1 else 's'}")
    else:
        pairs = f", {s['num_pairs']} pairs" if s["paired"] else ""
        title = (f"{s['fake']} vs {s['real']} at {s['resolution']} px ({s['num_real']} real, {s['num_fake']} fake"
                 f"{pairs})")
    return Table(title, [""] + [header(m) for m in metrics], rows,
                 [f"{', '.join(ms)}: {text}" for text, ms in notes.items()])


def result_notes(result: dict[str, Any]) -> list[str]:
    """Sections skipped and inputs left out, one line each."""
    out = list(result.get("notes", []))
    for section, name in (("mixing", "mixing"), ("text", "text edits")):
        skipped = result.get(section, {}).get("skipped")
        if skipped:
            out.append(f"{name}: skipped: {skipped}")
    return out


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
    page.write_text(render_html(ev.result, figures, recon), encoding="utf-8")
    return page


def _table_html(t: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in t.notes)
    return (f"<table><caption>{esc(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (f'<ol class="notes">{notes}</ol>' if notes else ""))


def render_html(result: dict[str, Any], figures: list[tuple[str, Any, int, int]], recon: dict[str, list[str]]) -> str:
    """index.html: tables, notes, figures (PNG files next to it), reconstructions, settings."""
    esc = html.escape
    s = result["settings"]
    tables = result_tables(result)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', "<title>bgedit evaluation</title>",
             f"<style>{CSS}</style></head><body>", "<h1>bgedit evaluation</h1>"]
    source = (f"model {s['model']} on {s['data']} ({s['split']})" if s["mode"] == "bundle" else
              f"{s['fake']} against {s['real']}")
    parts.append(f'<p class="meta">{esc(source)}; {esc(time.strftime("%Y-%m-%d %H:%M"))}; bgedit '
                 f'{esc(s["versions"]["bgedit"])}, torch {esc(str(s["versions"]["torch"]))}, device '
                 f'{esc(s["device"])}. ↓ lower is better, ↑ higher is better.</p>')
    parts += ["<h2>Metrics</h2>", _table_html(tables[0])]
    notes = result_notes(result)
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
                     f" (final reconstruction y_{s['steps']}, named after the inputs).</p><p>{thumbs}</p>")
    parts += ["<h2>Settings</h2>", f"<pre>{esc(json.dumps(s, indent=2, sort_keys=True, default=str))}</pre>",
              f"<p class=\"meta\">Seconds per stage: {esc(json.dumps(result.get('seconds', {}), default=str))}</p>",
              "</body></html>"]
    return "\n".join(parts) + "\n"
