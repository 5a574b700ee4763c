"""The report's image grids (with `--report`): reconstructions, mixing and layout edits and text edits like the
paper's figures (bundle mode), or the first real | fake pairs side by side (folder mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from bgedit_cli.io import colorize_seg, load_image, one_hot_seg
from bgedit_cli.latent import Inversion
from bgedit_cli.pipelines.evaluation.context import BundleContext, Context, FolderContext
from bgedit_cli.pipelines.evaluation.scoring import invert_paths, take, to_unit
from bgedit_cli.pipelines.evaluation.section import FIGURE_ROWS, Figure, Section, SectionResult
from bgedit_cli.pipelines.evaluation.text_model import text_alphas
from bgedit_cli.pipelines.mix import edit_layout, mix_content, mix_style
from bgedit_cli.pipelines.text_edit import text_edit

FIGURE_SCENES = 4  # scenes of the mixing and layout figures (rows x columns)
FIGURE_PROMPTS = 8  # prompts shown in the text-edit figures


class FiguresResult(SectionResult):
    def to_json(self) -> None:
        return None


class FiguresSection(Section):
    name = "figures"
    label = "figures"
    modes = ("bundle", "folders")
    has_json = False
    runs_last = True  # the figures draw on the other sections' work

    def requires(self, ctx: Context) -> str | None:
        return None if ctx.opts.figures else "no --report"

    @torch.no_grad()
    def run(self, ctx: Context) -> FiguresResult:
        if isinstance(ctx, BundleContext):
            ctx.figures.update(bundle_figures(ctx))
        else:
            ctx.figures.update(folder_figures(ctx))
        return FiguresResult()


def folder_figures(ctx: FolderContext) -> dict[str, Figure]:
    fake = ctx.fake["fake vs real"]
    n = min(len(ctx.real), len(fake), FIGURE_ROWS)
    shown = ctx.pairs[:FIGURE_ROWS] if ctx.pairs else [(i, i) for i in range(n)]
    title = "Real | fake" + (" pairs (matched by name)" if ctx.pairs else " (first images of each, by name)")
    return {"pairs" if ctx.pairs else "samples": Figure(
        title, [to_unit(ctx.real[[a for a, _ in shown]]), to_unit(fake[[b for _, b in shown]])], ["real", "fake"],
        [f"{ctx.real_files[a].name} | {ctx.fake_files[b].name}" for a, b in shown])}


def _blank(like: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(like[:1])  # white


def _pair_grid(row_heads: torch.Tensor, col_heads: torch.Tensor, cells: torch.Tensor) -> list[torch.Tensor]:
    """Columns of a grid with a header row and column: corner blank, `col_heads` [K] along the top, `row_heads`
    [K] down the left, `cells` [K*K] (row-major) inside."""
    k = row_heads.shape[0]
    cells = cells.reshape(k, k, *cells.shape[1:])
    return [torch.cat([_blank(row_heads), row_heads])] + \
           [torch.cat([col_heads[j:j + 1], cells[:, j]]) for j in range(col_heads.shape[0])]


def _render_pairs(fn: Callable[[Inversion, Inversion, list[int]], torch.Tensor], inv: Inversion, k: int,
                  batch_size: int, device: torch.device) -> torch.Tensor:
    """fn(A, B, B's indices) for every (A, B) of the first k items, row-major (A = row), on the CPU."""
    ia = [a for a in range(k) for _ in range(k)]
    ib = [b for _ in range(k) for b in range(k)]
    out = []
    for s in range(0, k * k, batch_size):
        a, b = ia[s:s + batch_size], ib[s:s + batch_size]
        out.append(fn(take(inv, a, device), take(inv, b, device), b).float().cpu())
    return torch.cat(out)


def _gt_grid(root: Path, folder: str, names: Sequence[str], name_of: Callable[[str, str], str], r: int
             ) -> torch.Tensor | None:
    """Ground-truth images ROOT/folder/name_of(row, column) for every pair of `names`, row-major; None if any
    is missing."""
    paths = [root / folder / name_of(a, b) for a in names for b in names]
    if not all(p.is_file() for p in paths):
        return None
    return torch.stack([load_image(p, r) for p in paths])


def bundle_figures(ctx: BundleContext) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    opts, models, shown, dataset = ctx.opts, ctx.models, ctx.shown, ctx.dataset
    names = ctx.names[:FIGURE_ROWS]
    first = next(iter(shown.values()))
    r = first[0].shape[-1]

    # Reconstructions: input | every other variant's final | the proposed (else the only) variant's y_0..y_T.
    steps_variant = "proposed" if "proposed" in shown else next(iter(shown))
    columns, labels = [first[0]], ["input"]
    for v, cols in shown.items():
        if v != steps_variant:
            columns.append(cols[-1])
            labels.append(f"{v} y_{opts.steps}")
    columns += shown[steps_variant][1:]
    labels += [f"{steps_variant} y_{t}" for t in range(opts.steps + 1)]
    figures["reconstruction"] = Figure("Reconstruction", columns, labels, list(names),
                                       "y_0: encoders only; y_t: after t HyperStyle refinement steps.")

    # The first images inverted once more, as Inversions, for mixing, layout and text figures.
    k_all = len(names)
    invs = {v: invert_paths(models[v], dataset.image_paths[:k_all], dataset.seg_paths[:k_all], opts.steps,
                            opts.batch_size) for v in {"proposed", ctx.text_variant} & set(models)}
    k = min(FIGURE_SCENES, k_all)
    scenes = list(names[:k])
    if "proposed" in models and k >= 2:
        figures.update(_mixing_figures(ctx, invs["proposed"], first[0][:k], scenes, r))
    elif "proposed" not in models:
        figures["reconstruction"].caption += " (Mixing and layout figures need the proposed variant.)"
    if ctx.text is not None:
        figures.update(_text_figures(ctx, invs[ctx.text_variant][0], first[0], names, r))
    return figures


def _mixing_figures(ctx: BundleContext, inverted: tuple[Inversion, torch.Tensor], inputs: torch.Tensor,
                    scenes: list[str], r: int) -> dict[str, Figure]:
    figures = {}
    m, k = ctx.models["proposed"], len(scenes)
    inv, ids = inverted
    G, dev, bs = m.generator, m.device, ctx.opts.batch_size
    mixes = (("style", "content \\ style", lambda a, b, _: mix_style(G, a, b), lambda a, b: f"{a}__{b}.png",
              "content images (A); columns: style images (B); cell: mix_style(A, B)", "content A, style B"),
             ("content", "style \\ content", lambda a, b, _: mix_content(G, a, b), lambda a, b: f"{b}__{a}.png",
              "style images (A); columns: content images (B); cell: mix_content(A, B)", "content B, style A"))
    for task, corner, mix, gt_name, rows, gt_what in mixes:
        cells = _render_pairs(mix, inv, k, bs, dev)
        figures[f"{task}_mixing"] = Figure(f"{task.capitalize()} mixing (proposed)",
                                           _pair_grid(inputs, inputs, cells), [corner] + scenes, [""] + scenes,
                                           f"Rows: {rows}.")
        gt = _gt_grid(ctx.root, "mixing/validation", scenes, gt_name, r)
        if gt is not None:
            figures[f"{task}_mixing_gt"] = Figure(f"{task.capitalize()} mixing ground truth",
                                                  _pair_grid(inputs, inputs, gt), [corner] + scenes,
                                                  [""] + scenes, f"render({gt_what}) from the synthetic renderer.")
    maps = to_unit(torch.from_numpy(colorize_seg(ids[:k])).permute(0, 3, 1, 2))
    layout = _render_pairs(lambda a, _, b: edit_layout(G, m.net, a, one_hot_seg(ids[b]).to(dev),
                                                       steps=ctx.opts.steps).images, inv, k, bs, dev)
    figures["layout_edit"] = Figure("Layout edits (proposed)", _pair_grid(inputs, maps, layout),
                                    ["image \\ map"] + scenes, [""] + scenes,
                                    "Rows: images (A); columns: seg maps (B's ground truth); cell: A's style "
                                    "with B's map (edit_layout).")
    return figures


def _text_figures(ctx: BundleContext, inv: Inversion, inputs: torch.Tensor, names: list[str], r: int
                  ) -> dict[str, Figure]:
    """Text edits: input | reconstruction | one column per trained prompt, per edit setting; the ground truth."""
    figures = {}
    editor, opts, variant = ctx.text.editor, ctx.opts, ctx.text_variant
    m = ctx.models[variant]
    inv = inv.to(m.device)
    prompts = list(editor.cfg.prompts[:FIGURE_PROMPTS])
    embs = ctx.text.clip.encode_text(prompts)
    for mode, alpha in text_alphas(editor).items():
        edits = [text_edit(m.generator, inv, editor, embs[p:p + 1], alpha=alpha, seed=opts.seed).float().cpu()
                 for p in range(len(prompts))]
        key = "text_edit" if alpha is None else "text_edit_mapper_only"
        figures[key] = Figure(f"Text edits, {mode}", [inputs, inv.images.float().cpu()] + edits,
                              ["input", f"{variant} y_{opts.steps}"] + [f'"{p}"' for p in prompts],
                              list(names), f"eps seed {opts.seed}; strength {editor.cfg.strength:g}.")
    styles = [p for p in prompts if p in ctx.vocabulary.style_names]
    gts = [[ctx.root / "textedit" / "validation" / f"{n}__{s}.png" for n in names] for s in styles]
    if styles and all(p.is_file() for col in gts for p in col):
        figures["text_edit_gt"] = Figure("Text edit ground truth", [inputs] + [
            torch.stack([load_image(p, r) for p in col]) for col in gts], ["input"] + styles, list(names),
            "Each scene rendered in the canonical look of each style.")
    return figures
