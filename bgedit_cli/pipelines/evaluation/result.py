"""An evaluation's result: the sections' typed results in order, Table 1 merged from their cells, the notes, and
the JSON of `bgedit evaluate --json`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bgedit_cli.metrics.distribution import MetricResult
from bgedit_cli.pipelines.evaluation.section import FORMATS, Figure, MetricRows, Section, SectionResult, Skipped, \
    Table, fmt, header

SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclasses.dataclass
class Evaluation:
    """`sections`: name -> the Section that ran (or was skipped); `results`: name -> its result (`Skipped` with
    the reason). `figures` and `images` (row -> (names, uint8 [N, 3, R, R])) are what a report draws and writes."""

    settings: dict[str, Any]  # everything the numbers depend on, as JSON
    notes: list[str]  # inputs left out
    rows: list[str]  # Table 1's rows
    metric_names: tuple[str, ...]  # Table 1's columns
    title: str  # Table 1's caption
    source: str  # what was evaluated, in a few words
    resolution: int
    steps: int
    device: str
    versions: dict[str, str | None]  # of the libraries the numbers depend on
    sections: dict[str, Section]
    results: dict[str, SectionResult]
    seconds: dict[str, float]
    figures: dict[str, Figure] = dataclasses.field(default_factory=dict)
    images: dict[str, tuple[list[str], torch.Tensor]] = dataclasses.field(default_factory=dict)
    report: str | None = None  # the report page, once written

    @property
    def metrics(self) -> MetricRows:
        """Table 1: row -> metric -> result, merged from every section's cells."""
        out: MetricRows = {row: {} for row in self.rows}
        for result in self.results.values():
            for row, cells in result.metric_rows().items():
                out.setdefault(row, {}).update(cells)
        return out

    def to_json(self) -> dict[str, Any]:
        out = {"settings": self.settings, "notes": self.notes, "rows": self.rows,
               "metrics": {row: {k: res.to_dict() for k, res in cells.items()} for row, cells in self.metrics.items()},
               **{name: res.to_json() for name, res in self.results.items() if self.sections[name].has_json},
               "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
        if self.report is not None:
            out["report"] = self.report
        return out

    def tables(self) -> list[Table]:
        """Table 1, then every section's tables in section order."""
        return [self.metric_table()] + [t for result in self.results.values() for t in result.tables()]

    def all_notes(self) -> list[str]:
        """Inputs left out and sections skipped, one line each."""
        return self.notes + [f"{self.sections[name].label}: skipped: {result.reason}"
                             for name, result in self.results.items()
                             if isinstance(result, Skipped) and self.sections[name].has_json]

    def metric_table(self) -> Table:
        """Table 1: rows = variants (or "fake vs real"), columns = the metrics asked for; a cell with a footnote
        (why n/a, or what the number is not) carries its number in superscript."""
        notes: dict[str, list[str]] = {}  # footnote text -> the metrics it is about

        def mark(metric: str, text: str) -> str:
            notes.setdefault(text, [])
            if metric not in notes[text]:
                notes[text].append(metric)
            return str(list(notes).index(text) + 1).translate(SUPERSCRIPT)

        metrics, rows = self.metrics, []
        for row in self.rows:
            cells = [row]
            for m in self.metric_names:
                res = metrics[row].get(m)
                if res is None or not res.available:
                    cells.append("n/a" + mark(m, res.unavailable_reason if res else "not computed"))
                    continue
                extra = _footnote(res, self.resolution)
                cells.append(fmt(res.value, FORMATS[m]) + (mark(m, extra) if extra else ""))
            rows.append(cells)
        return Table(self.title, [""] + [header(m) for m in self.metric_names], rows,
                     [f"{', '.join(ms)}: {text}" for text, ms in notes.items()])


def _footnote(res: MetricResult, resolution: int) -> str | None:
    """What a number is not: FD_CLIP with another CLIP, SWD on sets of different sizes, MS-SSIM at fewer scales."""
    if res.name == "fd_clip" and not res.settings.get("comparable") or res.name == "swd":
        return res.settings.get("note")
    if res.name == "ms_ssim" and res.settings.get("computed") != "ms_ssim":
        return (f"computed as {res.settings['computed']} at {resolution} px (MS-SSIM's five scales need more than "
                "160 px; the scales that fit, weights renormalised)")
    return None
