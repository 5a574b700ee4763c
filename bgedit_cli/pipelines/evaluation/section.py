"""What a section of `bgedit evaluate` is: a name, a precondition, a run returning a typed result; and the plain
tables and figures results are shown as.

    class FooSection(Section):
        name = "foo"                    # its key in the JSON (and in `Evaluation.sections`)
        label = "foo scores"            # how a note names it when it is skipped
        modes = ("bundle",)             # "bundle" (--data) and/or "folders" (--real/--fake)

        def requires(self, ctx) -> str | None:   # why it cannot run here, or None
            ...
        def run(self, ctx) -> FooResult:         # a SectionResult
            ...

A result (`SectionResult`) gives its JSON (`to_json`), the cells it adds to Table 1 (`metric_rows`: row ->
metric -> `MetricResult`) and its own tables (`tables`). A section whose `requires` gives a reason yields
`Skipped(reason)`: `{"skipped": reason}` in the JSON and a note. A section with `has_json = False` has no key of
its own: it adds Table 1 cells or figures only. Tables and figures are data (strings, tensors): the
terminal and the HTML report draw them (report.py, cli/evaluate.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from bgedit_cli.metrics.distribution import MetricResult

if TYPE_CHECKING:  # the context imports the sections' helpers; only the annotations need it here
    from bgedit_cli.pipelines.evaluation.context import Context

# Table 1's columns first (the paper's order), then ours; True where lower is better.
LOWER_IS_BETTER = {"l2": True, "lpips": True, "fid": True, "kid": True, "psnr": False, "ms_ssim": False,
                   "fd_clip": True, "swd": True}
METRICS = tuple(LOWER_IS_BETTER)
PAIRWISE = ("l2", "lpips", "psnr", "ms_ssim")
LABELS = {"l2": "L2", "lpips": "LPIPS", "fid": "FID", "kid": "KID×10³", "psnr": "PSNR", "ms_ssim": "MS-SSIM",
          "fd_clip": "FD_CLIP", "swd": "SWD×10³"}
FIGURE_ROWS = 6  # images in the reconstruction and text-edit figures
FORMATS = {"l2": ".4f", "lpips": ".3f", "fid": ".2f", "kid": ".2f", "psnr": ".2f", "ms_ssim": ".3f",
           "fd_clip": ".3f", "swd": ".2f"}

MetricRows = dict[str, dict[str, MetricResult]]  # Table 1: row (variant, or "fake vs real") -> metric -> result


@dataclasses.dataclass
class Table:
    """A table as strings: `rows` of cells under `headers`, numbered `notes` below it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Figure:
    """An image grid of the report: `columns`, each [rows, 3, R, R] in [-1, 1] (`bgedit_cli.io.image_columns`)."""

    title: str
    columns: list[torch.Tensor]
    column_labels: list[str]
    row_labels: list[str]
    caption: str = ""


def header(metric: str) -> str:
    """A metric's column header with its direction: "L2 ↓", "PSNR ↑"."""
    return f"{LABELS[metric]} {'↓' if LOWER_IS_BETTER[metric] else '↑'}"


def fmt(value: float, spec: str) -> str:
    return "inf" if value == float("inf") else format(value, spec)


def metric_table(title: str, first: str, rows: dict[str, dict[str, float]]) -> Table:
    """Rows of per-image means (row label -> metric -> value) as a table of the pairwise metrics present in the
    first row, in Table 1's order."""
    metrics = [m for m in PAIRWISE if m in next(iter(rows.values()))]
    return Table(title, [first] + [header(m) for m in metrics],
                 [[label] + [fmt(values[m], FORMATS[m]) for m in metrics] for label, values in rows.items()])


class SectionResult:
    """What a section's run returns (module doc); subclasses are dataclasses with typed fields."""

    def to_json(self) -> Any:
        raise NotImplementedError

    def metric_rows(self) -> MetricRows:
        return {}

    def tables(self) -> list[Table]:
        return []


@dataclasses.dataclass
class Skipped(SectionResult):
    """A section (or a part of one) that did not run, and why."""

    reason: str

    def to_json(self) -> dict[str, str]:
        return {"skipped": self.reason}


class Section:
    """One section of an evaluation (module doc). Subclasses set `name`, `label`, `modes` and implement `run`."""

    name: str = ""
    label: str = ""
    modes: tuple[str, ...] = ("bundle",)
    has_json: bool = True  # False: the result has no key of its own in the JSON (Table 1 cells, figures)
    timed: bool = True  # the loop records the run's seconds under `name` (False: the run records its parts)
    runs_last: bool = False  # after every other section, also those registered later (figures)
    shards: bool = False  # under torchrun its loop takes `ctx.share(n)` and `ctx.gather` joins the ranks' values

    def requires(self, ctx: "Context") -> str | None:
        return None

    def run(self, ctx: "Context") -> SectionResult:
        raise NotImplementedError
