"""`bgedit evaluate`: a model bundle on a dataset, or two folders of images, as registered sections with typed
results (nothing printed or written here; bgedit_cli/report.py and the command show them).

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

from bgedit_cli.distributed import Dist
from bgedit_cli.pipelines.evaluation.context import EvalOptions, open_bundle, open_folders
from bgedit_cli.pipelines.evaluation.registry import SECTIONS, evaluate, register
from bgedit_cli.pipelines.evaluation.result import Evaluation
from bgedit_cli.pipelines.evaluation.scoring import Progress, parse_names
from bgedit_cli.pipelines.evaluation.section import (METRICS, Figure, Section, SectionResult, Skipped, Table)

__all__ = ["EvalOptions", "Evaluation", "Figure", "METRICS", "SECTIONS", "Section", "SectionResult", "Skipped",
           "Table", "evaluate", "evaluate_bundle", "evaluate_folders", "parse_names", "register"]


def evaluate_bundle(opts: EvalOptions, progress: Progress | None = None, shard: Dist | None = None) -> Evaluation:
    """Bundle mode: `opts.data` and the bundle `opts.model`; under torchrun (`shard`) each rank scores its share
    of the images and every rank returns the whole evaluation (context.py)."""
    return evaluate(open_bundle(opts, progress, shard))


def evaluate_folders(opts: EvalOptions, progress: Progress | None = None, shard: Dist | None = None) -> Evaluation:
    """Folder mode: `opts.real` against `opts.fake` (`shard`: as `evaluate_bundle`)."""
    return evaluate(open_folders(opts, progress, shard))
