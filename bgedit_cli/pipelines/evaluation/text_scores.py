"""The text section's per-pair work: which (scene, style) pairs and scenes to edit (`text_plan`), and every edit
scored per pair (`edit_per_pair`): L2 to the ground truth of edit and reconstruction, the CLIP gain, the
segmenter's maps, the water share of the "ocean" edits. Statistics over pairs are taken in text.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bgedit_cli.errors import CheckpointError, InputError, one_line
from bgedit_cli.io import load_image
from bgedit_cli.metrics.pairwise import l2
from bgedit_cli.pipelines.evaluation.context import BundleContext
from bgedit_cli.pipelines.evaluation.layout import read_maps
from bgedit_cli.pipelines.evaluation.mixing import MIX_NAME
from bgedit_cli.pipelines.evaluation.scoring import PerImage, invert_paths, take
from bgedit_cli.pipelines.evaluation.text_model import (NO_SEA, OCEAN_PROMPT, derangement, scene_metadata,
                                                        text_alphas, unseen_wordings, water_fraction)
from bgedit_cli.pipelines.text_edit import text_edit


def trained_styles(ctx: BundleContext) -> list[str]:
    """The text model's trained prompts that are style names of the data, in the model's order."""
    return [p for p in ctx.text.editor.cfg.prompts if p in ctx.vocabulary.style_names]


def ground_truth_scenes(folder: Path, styles: list[str]) -> list[str]:
    """Scenes with a `{scene}__{style}.png` in `folder` for one of `styles`, sorted."""
    found = [MIX_NAME.match(p.name) for p in sorted(folder.iterdir())]
    return sorted({f.group("a") for f in found if f and f.group("b") in styles})


@dataclasses.dataclass
class TextPlan:
    """What the text section edits: ground-truth `scenes` toward `styles` (each scene's `own` style left out),
    `ocean` scenes with "ocean", each style's `unseen` wording and the shuffled control's `perm`."""

    scenes: list[str]
    styles: list[str]
    own: dict[str, str | None]
    metadata: str | None  # the metadata.jsonl read, or None
    segmenter: Any  # the bundle's segmenter, or None (then `segmenter_reason`)
    segmenter_reason: str | None
    ocean: list[str]
    ocean_reason: str | None  # why `ocean` is empty
    unseen: dict[str, str]
    perm: list[int] | None  # None: one style, no control
    modes: dict[str, float | None]  # edit setting -> alpha (None: the model's)


def text_plan(ctx: BundleContext) -> TextPlan:
    editor, root = ctx.text.editor, ctx.root
    styles = trained_styles(ctx)
    records, metadata = scene_metadata(root)
    segmenter, seg_reason = None, None
    try:
        segmenter = ctx.models[ctx.text_variant].segmenter()
    except (CheckpointError, InputError) as exc:
        seg_reason = f"no segmenter: {one_line(exc)}"
    ocean: list[str] = []
    ocean_reason = None
    if OCEAN_PROMPT not in editor.cfg.prompts:
        ocean_reason = f'"{OCEAN_PROMPT}" is not a trained prompt'
    elif segmenter is None:
        ocean_reason = seg_reason
    elif metadata is None:
        ocean_reason = "no metadata.jsonl: which scenes have no sea is unknown"
    else:
        names = sorted(p.stem for p in (Path(root) / "images" / "validation").glob("*.png"))
        ocean = [s for s in names if records.get(s, {}).get("content", {}).get("water") in NO_SEA]
        ocean = ocean[:ctx.opts.ocean_scenes]
        if not ocean:
            ocean_reason = "no validation scene without sea (metadata.jsonl) to edit"
    return TextPlan(scenes=ground_truth_scenes(root / "textedit" / "validation", styles), styles=styles,
                    own={s: r.get("style", {}).get("name") for s, r in records.items()}, metadata=metadata,
                    segmenter=segmenter, segmenter_reason=seg_reason, ocean=ocean,
                    ocean_reason=ocean_reason, unseen=unseen_wordings(styles, editor.cfg.prompts),
                    perm=derangement(len(styles), ctx.opts.seed) if len(styles) >= 2 else None,
                    modes=text_alphas(editor))


@dataclasses.dataclass
class TextPerPair:
    """Per-pair values (pairs in one fixed order) and per-scene values of the "ocean" edits.

    `pairs`: the segmenter's maps of each pair's reconstruction ("recon"), ground-truth restyle ("gt"), input
    scene ("input") and inverted ground truth ("inverted_gt"), when there is a segmenter. `modes`: per edit
    setting, the groups "matched" (style, d_edit, d_recon, clip_gain; `maps`: the segmenter's maps of the edits),
    "unseen" and "shuffled" (style, d_edit, d_recon) and "ocean" (recon, edit: water shares per scene)."""

    left_out: int
    pairs: dict[str, torch.Tensor]
    modes: dict[str, dict[str, dict[str, torch.Tensor]]]


@torch.no_grad()
def edit_per_pair(ctx: BundleContext, plan: TextPlan) -> TextPerPair:
    m, editor, encoder = ctx.models[ctx.text_variant], ctx.text.editor, ctx.text.clip
    opts, r, device, G = ctx.opts, m.resolution, m.device, m.generator
    base = Path(ctx.root)
    folder = base / "textedit" / "validation"
    styles, unseen, segmenter = plan.styles, plan.unseen, plan.segmenter
    n_styles, bs = len(styles), opts.batch_size
    ocean_set, gt_set = set(plan.ocean), set(plan.scenes)
    todo = sorted(gt_set | ocean_set)

    # Every prompt's embedding at once: the styles, their unseen wordings, "ocean".
    texts = styles + [unseen[s] for s in styles if s in unseen] + ([OCEAN_PROMPT] if ocean_set else [])
    embs = encoder.encode_text(texts)  # (P, D)
    emb_style = embs[:n_styles]
    unseen_row = {si: n_styles + k for k, si in enumerate(i for i, s in enumerate(styles) if s in unseen)}
    has_unseen = torch.tensor([si in unseen_row for si in range(n_styles)])
    unseen_index = torch.tensor([unseen_row.get(si, 0) for si in range(n_styles)])
    perm_t = torch.tensor(plan.perm) if plan.perm is not None else None

    def read(img: torch.Tensor) -> torch.Tensor:
        return read_maps(segmenter, img, r, device)

    def edit(sub, emb: torch.Tensor, alpha: float | None) -> torch.Tensor:
        return text_edit(G, sub, editor, emb, alpha=alpha, seed=opts.seed).float()

    pair_maps, acc = PerImage(), {mode: PerImage() for mode in plan.modes}
    left_out = 0
    for start in range(0, len(todo), bs):
        names = todo[start:start + bs]
        inv, _ = invert_paths(m, [base / "images" / "validation" / f"{s}.png" for s in names],
                              [base / "annotations" / "validation" / f"{s}.png" for s in names], opts.steps, bs)
        recon_maps = read(inv.images) if segmenter is not None else None
        recon_feat = encoder.encode_image(inv.images.to(device).float())
        # (scene in this chunk, style) pairs with ground truth, the scene's own style left out.
        pairs = []
        for si, style in enumerate(styles):
            for i, name in enumerate(names):
                if name in gt_set and (folder / f"{name}__{style}.png").is_file():
                    if plan.own.get(name) == style:
                        left_out += 1
                    else:
                        pairs.append((i, si))
        gts = [load_image(folder / f"{names[i]}__{styles[si]}.png", r) for i, si in pairs]
        ocean_idx = [i for i, name in enumerate(names) if name in ocean_set]
        if segmenter is not None and pairs:
            idx = [i for i, _ in pairs]
            inputs = read(torch.stack([load_image(base / "images" / "validation" / f"{n}.png", r) for n in names]))
            inv_gt, _ = invert_paths(m, [folder / f"{names[i]}__{styles[si]}.png" for i, si in pairs],
                                     [base / "annotations" / "validation" / f"{names[i]}.png" for i, _ in pairs],
                                     opts.steps, bs)
            pair_maps.add("maps", {"recon": recon_maps[idx], "gt": read(torch.stack(gts)), "input": inputs[idx],
                                   "inverted_gt": read(inv_gt.images)})
        for mode, alpha in plan.modes.items():
            a = acc[mode]
            for p0 in range(0, len(pairs), bs):
                chunk = pairs[p0:p0 + bs]
                idx = [i for i, _ in chunk]
                sidx = torch.tensor([si for _, si in chunk])
                sub = take(inv, idx, device)
                gt = torch.stack(gts[p0:p0 + bs]).to(device)
                d_recon = l2(sub.images.float(), gt).cpu()
                # Trained prompts, with the CLIP gain and the layout read back.
                e = emb_style[sidx.to(emb_style.device)]
                img = edit(sub, e, alpha)
                gain = ((encoder.encode_image(img) - recon_feat[idx]) * e).sum(1)
                a.add("matched", {"style": sidx, "d_edit": l2(img, gt), "d_recon": d_recon, "clip_gain": gain})
                if segmenter is not None:
                    a.add("maps", {"edit": read(img)})
                # Unseen wordings of the same styles, against the same ground truth.
                u = has_unseen[sidx].nonzero()[:, 0]
                if len(u):
                    img = edit(take(inv, [idx[k] for k in u.tolist()], device),
                               embs[unseen_index[sidx[u]].to(embs.device)], alpha)
                    a.add("unseen", {"style": sidx[u], "d_edit": l2(img, gt[u.to(gt.device)]), "d_recon": d_recon[u]})
                # Shuffled control: another style's prompt, scored against this pair's style.
                if perm_t is not None:
                    img = edit(sub, emb_style[perm_t[sidx].to(emb_style.device)], alpha)
                    a.add("shuffled", {"style": sidx, "d_edit": l2(img, gt), "d_recon": d_recon})
            for o0 in range(0, len(ocean_idx), bs):
                idx = ocean_idx[o0:o0 + bs]
                img = edit(take(inv, idx, device), embs[-1:], alpha)
                a.add("ocean", {"recon": water_fraction(recon_maps[idx]), "edit": water_fraction(read(img))})
        ctx.report("text edits", min(start + bs, len(todo)), len(todo))
    return TextPerPair(left_out, pair_maps.tensors().get("maps", {}), {mode: a.tensors() for mode, a in acc.items()})
