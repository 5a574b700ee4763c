"""Reconstruction, the pairwise columns of the paper's Table 1 (bundle mode).

Each variant inverts the scored images (`ctx.indices`; the proposed variant reads their ground-truth maps) with
`steps` refinement steps, and every step y_0 .. y_steps is scored against the input per image, as HyperInverter
evaluates: l2 and lpips on [-1, 1], psnr and ms_ssim on [0, 1]. Table 1 gets the means of the final step; the
per-step table all of them. The inputs and final reconstructions (uint8) become `ctx.real` and `ctx.fake[v]`,
the image sets of the distribution section, and the PNGs of the report.

`reconstruction_scores` is the same measurement for a training run's validation (training/inversion.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import torch

from bgedit_cli.errors import InputError
from bgedit_cli.io import one_hot_seg
from bgedit_cli.metrics.pairwise import ms_ssim_label
from bgedit_cli.pipelines.evaluation.context import BundleContext
from bgedit_cli.pipelines.evaluation.scoring import PerImage, means, pairwise_results, score_pairs, to_u8
from bgedit_cli.pipelines.evaluation.section import FIGURE_ROWS, MetricRows, Section, SectionResult, Table, \
    metric_table
from bgedit_cli.pipelines.invert import invert


@dataclasses.dataclass
class VariantReconstruction:
    """Means over the images of each refinement step's pairwise metrics, y_0 (encoders only) .. y_steps."""

    per_step: list[dict[str, float]]
    images: int
    steps: int
    ms_ssim_variant: str  # what "ms_ssim" is at this resolution (`metrics.pairwise.ms_ssim_label`)

    @property
    def final(self) -> dict[str, float]:
        return self.per_step[-1]

    def to_json(self) -> dict[str, Any]:
        return {"per_step": self.per_step, "final": self.final, "images": self.images, "steps": self.steps,
                "ms_ssim_variant": self.ms_ssim_variant}


@dataclasses.dataclass
class ReconstructionResult(SectionResult):
    variants: dict[str, VariantReconstruction]
    metrics: MetricRows  # Table 1's pairwise cells per variant

    def to_json(self) -> dict[str, Any]:
        return {v: rec.to_json() for v, rec in self.variants.items()}

    def metric_rows(self) -> MetricRows:
        return self.metrics

    def tables(self) -> list[Table]:
        return [metric_table(f"Reconstruction per refinement step: {v} (y_0: encoders only)", "step",
                             {f"y_{t}": scores for t, scores in enumerate(rec.per_step)})
                for v, rec in self.variants.items()]


# ----------------------------------------------------------------------------------------------------------
# Per image.


def invert_items(G, net, dataset, indices: Sequence[int], *, steps: int, batch_size: int,
                 device: torch.device | str) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Invert dataset items batch by batch: (inputs [B, 3, R, R], [y_0, ..., y_steps]) on `device`."""
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start:start + batch_size]]
        img = torch.stack([it["img"] for it in items]).to(device)
        seg = one_hot_seg(torch.stack([it["seg"] for it in items]).to(device)) if net.uses_seg else None
        yield img, invert(G, net, img, seg, steps=steps, return_steps=True).steps_images


class _Rows:
    """The first `limit` rows of image columns gathered over batches."""

    def __init__(self, limit: int) -> None:
        self.limit, self.columns = limit, []

    def add(self, columns: Sequence[torch.Tensor]) -> None:
        have = sum(c.shape[0] for c in self.columns[0]) if self.columns else 0
        k = min(self.limit - have, columns[0].shape[0])
        if k > 0:
            self.columns = self.columns or [[] for _ in columns]
            for acc, col in zip(self.columns, columns):
                acc.append(col[:k].float().cpu())

    def result(self) -> list[torch.Tensor]:
        return [torch.cat(c) for c in self.columns]


def _variant(per_image: dict[str, dict[str, torch.Tensor]], steps: int, resolution: int) -> VariantReconstruction:
    per_step = [means(per_image[f"y{t}"]) for t in range(steps + 1)]
    return VariantReconstruction(per_step, images=len(per_image["y0"]["l2"]), steps=steps,
                                 ms_ssim_variant=ms_ssim_label(resolution))


@torch.no_grad()
def reconstruction_scores(G, net, dataset, *, num: int, steps: int = 5, batch_size: int = 8,
                          device: torch.device | str = "cpu", grid_images: int = 8, lpips_net=None,
                          progress: Callable[[int, int], None] | None = None
                          ) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Scores of y_0 .. y_steps on the first `num` items of `dataset` (ADE20KDataset; its maps are used by the
    proposed variant). Returns ({"per_step": [{metric: mean}, ...], "final": {...}, "images": n, "steps",
    "ms_ssim_variant": label}, grid columns [input, y_0, ..., y_steps] of the first `grid_images`)."""
    num = min(num, len(dataset))
    if num < 1:
        raise InputError("no images to evaluate.")
    scores, grid, done = PerImage(), _Rows(grid_images), 0
    for img, ys in invert_items(G, net, dataset, range(num), steps=steps, batch_size=batch_size, device=device):
        for t, y in enumerate(ys):
            scores.add(f"y{t}", score_pairs(y, img, lpips_net))
        grid.add([img, *ys])
        done += img.shape[0]
        if progress is not None:
            progress(done, num)
    return _variant(scores.tensors(), steps, G.cfg.img_resolution).to_json(), grid.result()


# ----------------------------------------------------------------------------------------------------------
# The section.


class ReconstructionSection(Section):
    name = "reconstruction"
    label = "reconstruction"
    timed = False  # seconds per variant
    shards = True  # under torchrun each rank inverts its share of the images

    def requires(self, ctx: BundleContext) -> str | None:
        return None if ctx.indices else "no images to evaluate"

    @torch.no_grad()
    def run(self, ctx: BundleContext) -> ReconstructionResult:
        opts, r = ctx.opts, ctx.resolution
        mine = ctx.indices[ctx.share(len(ctx.indices))]
        per_image = {}
        for v, m in ctx.models.items():
            with ctx.timer(f"inversion+pairwise/{v}"):
                scores, shown, inputs, finals = PerImage(), _Rows(FIGURE_ROWS), [], []
                for img, ys in invert_items(m.generator, m.net, ctx.dataset, mine, steps=opts.steps,
                                            batch_size=opts.batch_size, device=m.device):
                    for t, y in enumerate(ys):
                        scores.add(f"y{t}", score_pairs(y, img, ctx.nets.lpips))
                    shown.add([img, *ys])
                    inputs.append(to_u8(img.cpu()))
                    finals.append(to_u8(ys[-1].float().cpu()))
                    ctx.report(f"inverting ({v})", sum(len(x) for x in inputs), len(mine))
                per_image[v] = scores.tensors()
                none = torch.empty(0, 3, r, r, dtype=torch.uint8)  # a rank without images
                images = ctx.gather({"inputs": torch.cat(inputs) if inputs else none,
                                     "finals": torch.cat(finals) if finals else none, "shown": shown.result()})
                if ctx.real is None:
                    ctx.real = images["inputs"]
                ctx.fake[v] = images["finals"]
                ctx.images[v] = (ctx.names, ctx.fake[v])
                ctx.shown[v] = [column[:FIGURE_ROWS] for column in images["shown"]]
        per_image = ctx.gather(per_image)
        variants = {v: _variant(scores, opts.steps, ctx.resolution) for v, scores in per_image.items()}
        return ReconstructionResult(variants, {
            v: pairwise_results(rec.final, opts.metrics, ctx.resolution, rec.images, ctx.nets.lpips_reason)
            for v, rec in variants.items()})
