"""Style and content mixing against the synthetic ground truth (bundle mode, `DATA/mixing/validation/`).

The renderer (`bgedit data synth`) writes, for the first M validation scenes, `{a}__{b}.png` = render(content
of a, style of b). Every scene of those pairs is inverted from `images/validation/{a}.png` with its ground-truth
map; then for every ordered pair a != b of the first `--mixing-scenes` scenes
- style mixing `mix_style(a, b)` is scored against `{a}__{b}.png`,
- content mixing `mix_content(a, b)` (A's style, B's content) against `{b}__{a}.png`,
next to trivial answers scored against the same ground truth: A's and B's reconstructions (`recon_a`, `recon_b`)
and the input images themselves (`input_a`, `input_b`). A mixing method is useful only where it beats the
trivial answers. Every option of the mixing functions is scored (style: `delta_img` from A or from B; content:
`swap_deltas` seg / all / none), so the benchmark picks the defaults. The baseline variant (no seg latents) is
scored with the plain StyleGAN W+ row swap at the proposed model's split (its `seg_layers`;
`default_seg_layers` without one): style = A's rows below the split, B's from it on; content = B's rows below
the split, A's from it on; A's deltas in both.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

import torch

from bgedit_cli.errors import InputError, one_line
from bgedit_cli.io import load_image, load_seg, one_hot_seg
from bgedit_cli.latent import Inversion
from bgedit_cli.nn.inversion import default_seg_layers
from bgedit_cli.pipelines.evaluation.context import BundleContext
from bgedit_cli.pipelines.evaluation.scoring import PerImage, means, score_pairs
from bgedit_cli.pipelines.evaluation.section import Section, SectionResult, Skipped, Table, metric_table
from bgedit_cli.pipelines.invert import invert, render
from bgedit_cli.pipelines.mix import mix_content, mix_style

MIX_NAME = re.compile(r"^(?P<a>.+)__(?P<b>.+)\.png$")
TASKS = {"style": "render(content A, style B)", "content": "render(content B, style A)"}  # what each is scored on


def mixing_pairs(root: Path) -> tuple[Path, list[str], dict[tuple[str, str], Path]]:
    """(dataset root, scenes, {(a, b): GT path}) from `ROOT/mixing/validation/{a}__{b}.png`; InputError if there
    are none or a scene's image or map is missing."""
    root = Path(root)
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016" / "images").is_dir():
        root = root / "ADEChallengeData2016"
    folder = root / "mixing" / "validation"
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder. The mixing benchmark needs ground truth from the synthetic "
                         "renderer: `bgedit data synth --out DIR` writes it (with --mixing-pairs M > 1).")
    pairs: dict[tuple[str, str], Path] = {}
    for p in sorted(folder.iterdir()):
        m = MIX_NAME.match(p.name)
        if m:
            pairs[(m.group("a"), m.group("b"))] = p
    scenes = sorted({s for ab in pairs for s in ab})
    if not any(a != b for a, b in pairs):
        raise InputError(f"{folder}: no {{a}}__{{b}}.png pairs of two different scenes.")
    for s in scenes:
        for sub, what in (("images", "image"), ("annotations", "map")):
            if not (root / sub / "validation" / f"{s}.png").is_file():
                raise InputError(f"{root / sub / 'validation' / (s + '.png')}: the {what} of mixing scene {s} is "
                                 "missing.")
    return root, scenes, pairs


def mixing_plan(root: Path, max_scenes: int | None) -> tuple[Path, list[str], dict[tuple[str, str], Path],
                                                              list[tuple[str, str]]]:
    """`mixing_pairs` of the first `max_scenes` scenes and the ordered pairs (a, b) to score: both {a}__{b}.png
    and {b}__{a}.png exist. InputError if there are none."""
    data_root, scenes, pairs = mixing_pairs(Path(root))
    if max_scenes is not None:
        scenes = scenes[:max_scenes]
    keep = set(scenes)
    todo = [(a, b) for (a, b) in pairs if a != b and a in keep and b in keep and (b, a) in pairs]
    if not todo:
        raise InputError(f"{root}: no scene pair with both {{a}}__{{b}}.png and {{b}}__{{a}}.png.")
    return data_root, scenes, pairs, todo


def scene_inputs(data_root: Path, scenes: list[str], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation images [S, 3, R, R] and ground-truth maps [S, R, R] of `scenes`."""
    images = torch.stack([load_image(data_root / "images" / "validation" / f"{s}.png", resolution) for s in scenes])
    maps = torch.stack([torch.from_numpy(load_seg(data_root / "annotations" / "validation" / f"{s}.png", resolution)
                                         .astype("int64")) for s in scenes])
    return images, maps


@dataclasses.dataclass
class VariantMixing:
    """Per task ("style", "content"): answer -> metric -> mean over the ordered pairs."""

    scenes: int
    pairs: int
    steps: int
    split: int
    method: str
    style: dict[str, dict[str, float]]
    content: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _row_swap(G, inv_a, inv_b, split: int, take: str) -> torch.Tensor:
    """Baseline mixing: W+ rows < split from one inversion, >= split from the other; A's deltas."""
    low, high = (inv_a, inv_b) if take == "style" else (inv_b, inv_a)
    ws = torch.cat([low.ws[:, :split], high.ws[:, split:]], dim=1)
    return render(G, ws, inv_a.weight_deltas())


def _answers(G, net, inv_a: Inversion, inv_b: Inversion, split: int) -> dict[str, dict[str, torch.Tensor]]:
    """The mixing answers of the variant per task."""
    if not net.uses_seg:
        return {task: {"w+ row swap": _row_swap(G, inv_a, inv_b, split, task)} for task in TASKS}
    return {"style": {f"mix_style(delta_img={src})": mix_style(G, inv_a, inv_b, take_delta_img=src)
                      for src in ("a", "b")},
            "content": {f"mix_content(swap_deltas={swap})": mix_content(G, inv_a, inv_b, swap_deltas=swap)
                        for swap in ("seg", "all", "none")}}


@torch.no_grad()
def mixing_per_pair(G, net, root: Path, *, steps: int = 5, batch_size: int = 8, device: torch.device | str = "cpu",
                    max_scenes: int | None = None, lpips_net=None, row_split: int | None = None,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """({"scenes", "pairs", "steps", "split", "method"}, {"task/answer": {metric: [P]}}): every answer scored
    per ordered pair against its ground truth (module doc)."""
    data_root, scenes, pairs, todo = mixing_plan(root, max_scenes)
    r = G.cfg.img_resolution
    images, maps = scene_inputs(data_root, scenes, r)
    inv = Inversion.cat([invert(G, net, images[i:i + batch_size].to(device),
                                one_hot_seg(maps[i:i + batch_size].to(device)) if net.uses_seg else None, steps=steps)
                         for i in range(0, len(scenes), batch_size)])
    index = {s: i for i, s in enumerate(scenes)}
    split = net.seg_layers if net.uses_seg else (row_split or default_seg_layers(G.num_ws, r))
    scores = PerImage()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        ia, ib = [index[a] for a, _ in chunk], [index[b] for _, b in chunk]
        inv_a = Inversion.cat([inv.select(i) for i in ia]).to(device)
        inv_b = Inversion.cat([inv.select(i) for i in ib]).to(device)
        gt = {"style": torch.stack([load_image(pairs[(a, b)], r) for a, b in chunk]),
              "content": torch.stack([load_image(pairs[(b, a)], r) for a, b in chunk])}
        trivial = {"recon_a": inv.images[ia], "recon_b": inv.images[ib], "input_a": images[ia], "input_b": images[ib]}
        for task, answers in _answers(G, net, inv_a, inv_b, split).items():
            for name, y in {**answers, **trivial}.items():
                scores.add(f"{task}/{name}", score_pairs(y, gt[task], lpips_net))
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    info = {"scenes": len(scenes), "pairs": len(todo), "steps": steps, "split": split,
            "method": "proposed mix_style/mix_content" if net.uses_seg else
            f"baseline: W+ row swap at {split}, A's deltas"}
    return info, scores.tensors()


def aggregate(info: dict[str, Any], per_pair: dict[str, dict[str, torch.Tensor]]) -> VariantMixing:
    tasks = {task: {g.split("/", 1)[1]: means(v) for g, v in per_pair.items() if g.startswith(task + "/")}
             for task in TASKS}
    return VariantMixing(**info, **tasks)


def mixing_scores(G, net, root: Path, **kwargs: Any) -> dict[str, Any]:
    """Mixing error against the synthetic ground truth (module doc; options of `mixing_per_pair`): {"scenes",
    "pairs", "steps", "split", "method", "style": {answer: {metric: mean}}, "content": {...}}."""
    return aggregate(*mixing_per_pair(G, net, root, **kwargs)).to_json()


# ----------------------------------------------------------------------------------------------------------
# The section.


@dataclasses.dataclass
class MixingResult(SectionResult):
    variants: dict[str, VariantMixing]

    def to_json(self) -> dict[str, Any]:
        return {v: mix.to_json() for v, mix in self.variants.items()}

    def tables(self) -> list[Table]:
        return [metric_table(f"{task.capitalize()} mixing vs {gt}: {v}, {mix.pairs} ordered pairs of {mix.scenes} "
                             f"scenes ({mix.method})", "answer", getattr(mix, task))
                for v, mix in self.variants.items() for task, gt in TASKS.items()]


class MixingSection(Section):
    name = "mixing"
    label = "mixing"
    timed = False  # seconds per variant

    def requires(self, ctx: BundleContext) -> str | None:
        if not (ctx.root / "mixing" / "validation").is_dir():
            return "no DATA/mixing/validation ground truth (synthetic data only)"
        if ctx.opts.mixing_scenes < 2:
            return f"--mixing-scenes {ctx.opts.mixing_scenes} (needs 2 or more)"
        try:
            mixing_plan(ctx.root, ctx.opts.mixing_scenes)
        except InputError as exc:
            return one_line(exc)
        return None

    def run(self, ctx: BundleContext) -> MixingResult | Skipped:
        split = next((m.net.seg_layers for m in ctx.models.values() if m.net.uses_seg), None)
        per_pair = {}
        for v, m in ctx.models.items():
            with ctx.timer(f"mixing/{v}"):
                try:
                    per_pair[v] = mixing_per_pair(m.generator, m.net, ctx.root, steps=ctx.opts.steps,
                                                  batch_size=ctx.opts.batch_size, device=ctx.device,
                                                  max_scenes=ctx.opts.mixing_scenes, lpips_net=ctx.nets.lpips,
                                                  row_split=split)
                except InputError as exc:  # a ground-truth file that cannot be read
                    return Skipped(one_line(exc))
        per_pair = ctx.gather(per_pair)
        return MixingResult({v: aggregate(info, scores) for v, (info, scores) in per_pair.items()})
