"""Pairwise metrics of two folders (folder mode, `--paired`): each fake image against the real image of the same
name stem (`ctx.pairs`), per image, then their means: Table 1's l2, lpips, psnr and ms_ssim cells."""

from __future__ import annotations

import dataclasses

import torch

from bgedit_cli.pipelines.evaluation.context import FolderContext
from bgedit_cli.pipelines.evaluation.scoring import PerImage, means, pairwise_results, score_pairs, to_unit
from bgedit_cli.pipelines.evaluation.section import PAIRWISE, MetricRows, Section, SectionResult


@dataclasses.dataclass
class PairsResult(SectionResult):
    metrics: MetricRows

    def to_json(self) -> None:
        return None

    def metric_rows(self) -> MetricRows:
        return self.metrics


class PairsSection(Section):
    name = "pairwise"
    label = "pairwise metrics"
    modes = ("folders",)
    has_json = False
    shards = True  # under torchrun each rank scores its share of the pairs

    def requires(self, ctx: FolderContext) -> str | None:
        if not ctx.pairs:
            return "no --paired file pairs"
        return None if set(PAIRWISE) & set(ctx.opts.metrics) else "no pairwise metric asked"

    @torch.no_grad()
    def run(self, ctx: FolderContext) -> PairsResult:
        scores, bs, row = PerImage(), ctx.opts.batch_size, next(iter(ctx.fake))
        pairs = ctx.pairs[ctx.share(len(ctx.pairs))]
        for s in range(0, len(pairs), bs):
            chunk = pairs[s:s + bs]
            x = to_unit(ctx.fake[row][[f for _, f in chunk]])
            y = to_unit(ctx.real[[r for r, _ in chunk]])
            scores.add(row, score_pairs(x, y, ctx.nets.lpips))
            ctx.report("pairwise metrics", s + len(chunk), len(pairs))
        per_image = ctx.gather(scores.tensors())
        return PairsResult({r: pairwise_results(means(values), ctx.opts.metrics, ctx.resolution, len(ctx.pairs),
                                                ctx.nets.lpips_reason) for r, values in per_image.items()})
