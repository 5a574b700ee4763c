"""Layout edits (bundle mode, proposed variant): does the seg map steer the layout?

For every ordered pair (A, B), A != B, of the validation scenes that have mixing ground truth (the first
`--mixing-scenes`), A is inverted with its own map, then edited with B's map (`edit_layout`); the bundle's
segmenter reads the edit back and the pixels of all pairs are scored against B's map (standard mIoU: per-class
IoU over all pixels, mean over the classes present). Next to it: the segmenter on B's own input (how well it
reads these scenes at all), on B's own reconstruction (how much of B's layout the generator draws when
inverting B itself: what an edit can hardly beat) and on A's reconstruction (what ignoring the new map scores).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bgedit_cli.errors import CheckpointError, InputError, one_line
from bgedit_cli.io import one_hot_seg
from bgedit_cli.latent import Inversion
from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores
from bgedit_cli.pipelines.evaluation.context import BundleContext
from bgedit_cli.pipelines.evaluation.mixing import MixingResult, mixing_pairs, scene_inputs
from bgedit_cli.pipelines.evaluation.section import Section, SectionResult, Skipped, Table, fmt
from bgedit_cli.pipelines.invert import invert
from bgedit_cli.pipelines.mix import edit_layout

READINGS = {"edit": "edit of A with B's map", "b_input": "B's input (segmenter's own)",
            "b_reconstruction": "B's own reconstruction (what the generator draws)",
            "a_reconstruction": "A's reconstruction (map ignored)"}


@dataclasses.dataclass
class SegScores:
    """Scores of one confusion matrix (`metrics.segmentation.segmentation_scores`)."""

    pixel_acc: float
    mean_acc: float
    miou: float
    num_classes_present: int
    num_pixels: int

    @classmethod
    def of(cls, pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> "SegScores":
        """Scores of predicted against target class-id maps [N, H, W]."""
        return cls(**segmentation_scores(confusion_matrix(pred, target, num_classes)))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@torch.no_grad()
def read_maps(segmenter, img: torch.Tensor, resolution: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The segmenter's class ids [N, R, R] (on the CPU) of images [N, 3, R, R], at `resolution` (nearest)."""
    pred = segmenter.predict(img.to(device).float().clamp(-1, 1))
    if pred.shape[-1] != resolution:
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=(resolution, resolution),
                                               mode="nearest")[:, 0].long()
    return pred.cpu()


@dataclasses.dataclass
class LayoutResult(SectionResult):
    scenes: int
    pairs: int
    steps: int
    readings: dict[str, SegScores]  # READINGS key -> scores against B's map

    def to_json(self) -> dict[str, Any]:
        return {"scenes": self.scenes, "pairs": self.pairs, "steps": self.steps,
                **{k: v.to_json() for k, v in self.readings.items()}}

    def tables(self) -> list[Table]:
        rows = [[READINGS[k], fmt(v.miou, ".3f"), fmt(v.pixel_acc, ".3f")] for k, v in self.readings.items()]
        return [Table(f"Layout edits read back by the segmenter vs B's map: {self.pairs} ordered pairs of "
                      f"{self.scenes} scenes", ["image", "mIoU ↑", "pixel acc ↑"], rows)]


@torch.no_grad()
def layout_per_pair(G, net, segmenter, root: Path, *, steps: int = 5, batch_size: int = 8,
                    device: torch.device | str = "cpu", max_scenes: int | None = None
                    ) -> tuple[list[str], dict[str, torch.Tensor]]:
    """(scenes, {"target": B's maps [P, R, R], READINGS key: the segmenter's maps [P, R, R]}) for every ordered
    pair (module doc)."""
    if not net.uses_seg:
        raise InputError("layout edits need the proposed variant.")
    data_root, scenes, _ = mixing_pairs(Path(root))
    scenes = scenes[:max_scenes] if max_scenes is not None else scenes
    if len(scenes) < 2:
        raise InputError(f"{root}: layout edits need 2 or more scenes with mixing ground truth.")
    r = G.cfg.img_resolution
    images, maps = scene_inputs(data_root, scenes, r)
    inv = Inversion.cat([invert(G, net, images[i:i + batch_size].to(device),
                                one_hot_seg(maps[i:i + batch_size].to(device)), steps=steps)
                         for i in range(0, len(scenes), batch_size)])
    recon_read, input_read = read_maps(segmenter, inv.images, r, device), read_maps(segmenter, images, r, device)
    pairs = [(a, b) for a in range(len(scenes)) for b in range(len(scenes)) if a != b]
    edits = []
    for start in range(0, len(pairs), batch_size):
        ia = [a for a, _ in pairs[start:start + batch_size]]
        ib = [b for _, b in pairs[start:start + batch_size]]
        inv_a = Inversion.cat([inv.select(i) for i in ia]).to(device)
        edited = edit_layout(G, net, inv_a, one_hot_seg(maps[ib].to(device)), steps=steps)
        edits.append(read_maps(segmenter, edited.images, r, device))
    ia = [a for a, _ in pairs]
    ib = [b for _, b in pairs]
    return scenes, {"target": maps[ib], "edit": torch.cat(edits), "b_input": input_read[ib],
                    "b_reconstruction": recon_read[ib], "a_reconstruction": recon_read[ia]}


def aggregate(scenes: list[str], maps: dict[str, torch.Tensor], steps: int, num_classes: int) -> LayoutResult:
    return LayoutResult(len(scenes), len(maps["target"]), steps,
                        {k: SegScores.of(maps[k], maps["target"], num_classes) for k in READINGS})


def layout_scores(G, net, segmenter, root: Path, *, steps: int = 5, batch_size: int = 8,
                  device: torch.device | str = "cpu", max_scenes: int | None = None) -> dict[str, Any]:
    """{"scenes", "pairs", "steps", "edit", "b_input", "b_reconstruction", "a_reconstruction"} (module doc), each
    reading a dict of segmentation scores."""
    scenes, maps = layout_per_pair(G, net, segmenter, root, steps=steps, batch_size=batch_size, device=device,
                                   max_scenes=max_scenes)
    return aggregate(scenes, maps, steps, segmenter.cfg.num_classes).to_json()


class LayoutSection(Section):
    name = "layout"
    label = "layout edits"

    def requires(self, ctx: BundleContext) -> str | None:
        if "proposed" not in ctx.models or not isinstance(ctx.results.get("mixing"), MixingResult):
            return "needs the proposed variant and DATA/mixing/validation scenes"
        return None

    def run(self, ctx: BundleContext) -> LayoutResult | Skipped:
        m = ctx.models["proposed"]
        try:
            segmenter = m.segmenter()
            scenes, maps = layout_per_pair(m.generator, m.net, segmenter, ctx.root, steps=ctx.opts.steps,
                                           batch_size=ctx.opts.batch_size, device=ctx.device,
                                           max_scenes=ctx.opts.mixing_scenes)
        except (InputError, CheckpointError) as exc:
            return Skipped(one_line(exc))
        return aggregate(scenes, ctx.gather(maps), ctx.opts.steps, segmenter.cfg.num_classes)
