"""The sections of `bgedit evaluate`, by name and in order, and the loop that runs them.

    register(FooSection())      # one line per section; a section runs (and shows) in registration order

`evaluate(ctx)` asks each section of the context's mode whether it can run (`requires`), runs it or records
`Skipped(reason)`, and collects the results into an `Evaluation`. Adding a section: a module with a `Section`
subclass returning a `SectionResult` dataclass (see section.py), and one `register` line below.
"""

from __future__ import annotations

from bgedit_cli.pipelines.evaluation.context import Context
from bgedit_cli.pipelines.evaluation.distribution import DistributionSection
from bgedit_cli.pipelines.evaluation.figures import FiguresSection
from bgedit_cli.pipelines.evaluation.layout import LayoutSection
from bgedit_cli.pipelines.evaluation.mixing import MixingSection
from bgedit_cli.pipelines.evaluation.pairs import PairsSection
from bgedit_cli.pipelines.evaluation.reconstruction import ReconstructionSection
from bgedit_cli.pipelines.evaluation.result import Evaluation
from bgedit_cli.pipelines.evaluation.section import Section, Skipped
from bgedit_cli.pipelines.evaluation.text import TextSection

SECTIONS: dict[str, Section] = {}


def register(section: Section) -> Section:
    """Add a section after the others; its name must be new."""
    if not section.name or section.name in SECTIONS:
        raise ValueError(f"a section needs a new name, got {section.name!r} (registered: {', '.join(SECTIONS)})")
    SECTIONS[section.name] = section
    return section


register(ReconstructionSection())
register(PairsSection())
register(DistributionSection())
register(MixingSection())
register(LayoutSection())
register(TextSection())
register(FiguresSection())


def evaluate(ctx: Context) -> Evaluation:
    """Every registered section of the context's mode, in order (module doc)."""
    ordered = sorted((s for s in SECTIONS.values() if ctx.mode in s.modes), key=lambda s: s.runs_last)
    sections = {s.name: s for s in ordered}
    for name, section in sections.items():
        ctx.sharded = section.shards
        reason = section.requires(ctx)
        if reason is not None:
            ctx.results[name] = Skipped(reason)
        elif section.timed:
            with ctx.timer(name):
                ctx.results[name] = section.run(ctx)
        else:
            ctx.results[name] = section.run(ctx)
    return Evaluation(settings=ctx.settings, notes=ctx.notes, rows=ctx.rows, metric_names=ctx.opts.metrics,
                      title=ctx.title, source=ctx.source, resolution=ctx.resolution, steps=ctx.opts.steps,
                      device=str(ctx.device), versions=ctx.settings["versions"],
                      sections=sections, results=ctx.results, seconds=ctx.seconds, figures=ctx.figures,
                      images=ctx.images)
