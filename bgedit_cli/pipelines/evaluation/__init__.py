"""`bgedit evaluate`: a model bundle on a dataset, or two folders of images, as registered sections with typed
results (nothing printed here; report.py writes the `--report` folder, the command shows the tables).

    ev = run(EvalOptions(data=DATA, model=BUNDLE), report_dir=DIR)   # the command: join torchrun, evaluate, report
    ev = evaluate_bundle(EvalOptions(data=DATA, model=BUNDLE, metrics=("l2", "fid")), progress=callback)
    ev = evaluate_folders(EvalOptions(real=DIR_A, fake=DIR_B, paired=True))
    ev.to_json()     # settings, notes, Table 1 (metric results per row), each section's result, seconds
    ev.tables()      # Table 1, then each section's tables
    ev.results       # section name -> its typed result (Skipped with the reason where it could not run)

The sections, in order (registry.py): reconstruction (Table 1's pairwise columns, per refinement step),
pairwise (folder mode, --paired), distribution (FID, KID, FD_CLIP, SWD), mixing, layout (edits read back by the
segmenter), text (edits against ground truth), figures (with --report). context.py holds what they share.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from bgedit_cli.distributed import Dist, join
from bgedit_cli.pipelines.evaluation.context import EvalOptions, open_bundle, open_folders
from bgedit_cli.pipelines.evaluation.registry import SECTIONS, evaluate, register
from bgedit_cli.pipelines.evaluation.report import check_report_dir, write_report
from bgedit_cli.pipelines.evaluation.result import Evaluation
from bgedit_cli.pipelines.evaluation.scoring import Progress, parse_names
from bgedit_cli.pipelines.evaluation.section import (METRICS, Figure, Section, SectionResult, Skipped, Table)

__all__ = ["EvalOptions", "Evaluation", "Figure", "METRICS", "SECTIONS", "Section", "SectionResult", "Skipped",
           "Table", "evaluate", "evaluate_bundle", "evaluate_folders", "parse_names", "register", "run"]


def evaluate_bundle(opts: EvalOptions, progress: Progress | None = None, shard: Dist | None = None) -> Evaluation:
    """Bundle mode: `opts.data` and the bundle `opts.model`; under torchrun (`shard`) each rank scores its share
    of the images and every rank returns the whole evaluation (context.py)."""
    return evaluate(open_bundle(opts, progress, shard))


def evaluate_folders(opts: EvalOptions, progress: Progress | None = None, shard: Dist | None = None) -> Evaluation:
    """Folder mode: `opts.real` against `opts.fake` (`shard`: as `evaluate_bundle`)."""
    return evaluate(open_folders(opts, progress, shard))


def run(opts: EvalOptions, *, report_dir: Path | None = None, force: bool = False,
        progress: Progress | None = None) -> Evaluation | None:
    """`bgedit evaluate`: join torchrun's processes (one process without it), evaluate the bundle (`opts.data`)
    or the two folders (`opts.real`, `opts.fake`) on this process's device (`opts.device` as `--device` gives it),
    and with `report_dir` write the report folder there (checked before any work; `force`: a folder that is not
    empty; its time is `seconds["report"]`). Under torchrun every rank scores its share; rank 0 alone reports
    progress, writes the report and returns the evaluation, the other ranks return None."""
    d, device = join(opts.device)
    opts = dataclasses.replace(opts, device=str(device), figures=report_dir is not None)
    if report_dir is not None:
        check_report_dir(report_dir, force)
    ev = (evaluate_bundle if opts.data is not None else evaluate_folders)(opts, progress if d.is_main else None, d)
    if not d.is_main:
        return None
    if report_dir is not None:
        t = time.perf_counter()
        ev.report = str(write_report(report_dir, ev))
        ev.seconds["report"] = time.perf_counter() - t
    return ev
