"""Text edits scored against the synthetic ground truth: the text section of `bgedit evaluate` (bundle mode).

    text = load_text_model(bundle, models, clip=None, text=None)   # the bundle's text.safetensors (or `text`)
    result = text_result(text, models, root, steps=5, batch_size=8, seed=0, ocean_scenes=64)

Everything is measured on validation scenes, which the text stage never trains on (it edits codes of the
training split). The synthetic renderer (`bgedit data synth`) writes `DATA/textedit/validation/{scene}__{style}.png`,
the scene re-rendered in the canonical look of each style (`day, sunset, night, snow, fog, autumn`), and
`metadata.jsonl`, each scene's content and style. Ground-truth scenes are inverted (the text variant: proposed,
else baseline) and edited toward the trained prompts that are style names; pairs whose style is the scene's own
are left out (counted). Each edit setting ("mode": the model's alpha, and with a Text Encoder alpha = 1, the
mapper alone, the comparison of the paper's Fig. 8) gets, in one pass over batches of scenes:

- **trained prompts** (`per_style`, `all`): `closer` (share of pairs where the edit's L2 to the ground truth is
  below the unedited reconstruction's), both mean L2s, `improvement` (mean of l2_recon - l2_edit), `clip_gain`
  (mean rise of the CLIP cosine between image and prompt) and `clip_rise` (share of pairs where it rose);
- **layout** (`layout`): the bundle's segmenter reads every trained-prompt edit and its reconstruction; mIoU of
  the edit's map against the reconstruction's over the pixels of all edited pairs (standard mIoU:
  `metrics.segmentation`, per-class IoU, mean over the classes present). A restyle should keep the layout;
  target >= 0.7 (`TARGETS`). Two references on the same pairs, once (`layout_reference`): the segmenter on
  the ground-truth restyle against its reading of the input scene (`ground_truth`: how style-invariant the
  segmenter is on true renders), and on the inversion of the ground-truth restyle (with the scene's map)
  against the reconstruction (`inverted_ground_truth`: what a perfect restyle scores once it goes through
  this inversion and generator; the edits cannot be expected to beat it by much);
- **"ocean"** (`ocean`, when "ocean" is a trained prompt): the first `ocean_scenes` validation scenes whose
  metadata says there is no sea (water none, lake, pond or river) are edited with "ocean"; the segmenter reads
  edit and reconstruction, and `rise` is the share of images whose water pixel fraction (sea + water + river,
  `WATER_CLASSES`) rises, next to both mean fractions. Target >= 0.8;
- **unseen wordings** (`unseen`): each trained style is edited with a wording of it that is not a trained prompt
  but occurs in the captions the CLIP was trained on (`UNSEEN_WORDINGS`: the first candidate that is not trained),
  scored against the same style's ground truth on the same pairs: `closer` and `improvement` per wording and
  overall, the trained prompts' numbers on the same pairs (`trained`) and `ratio` = mean improvement of the
  unseen wordings / of the trained prompts (target >= 0.8; null when the trained improvement is not positive).
  Combined looks ("snowy night") have no ground truth in the renderer: `combined_prompts` says so;
- **shuffled control** (`shuffled`): each pair edited with another style's prompt (a fixed derangement of the
  styles, `derangement(S, seed)`), scored against the pair's own style's ground truth: matched prompts should
  do clearly better.

The edits use the text model's alpha (or 1) and strength, eps from `seed` (`text_edit`: an edit depends on
image, prompt and seed only, not on the batch). The CLIP is the one the text model was trained with (checked).
Functions only: nothing printed or written.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bgedit_cli.bundle import BUNDLE_FILES
from bgedit_cli.checkpoint import file_sha256, load_network
from bgedit_cli.data.captions import METADATA, read_captions
from bgedit_cli.data.synth import CLASS_IDS, STYLE_NAMES
from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.io import load_image
from bgedit_cli.latent import Inversion
from bgedit_cli.weights import MissingWeightsError
from bgedit_cli.metrics.pairwise import l2
from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores
from bgedit_cli.pipelines.evaluate_mixing import MIX_NAME, read_maps
from bgedit_cli.pipelines.invert import load_item, run_inversion
from bgedit_cli.pipelines.models import Models, load_clip
from bgedit_cli.pipelines.text_edit import text_edit

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# Held-out wordings per style, best first: words of the captions' style phrases (`data.synth.STYLE_PHRASES`,
# so a CLIP trained on the captions has seen them) that are not the style's name. The first one that is not a
# trained prompt is scored (tests/test_evaluate_text.py checks that each occurs in its own style's phrases only).
UNSEEN_WORDINGS: dict[str, tuple[str, ...]] = {
    "day": ("sunny", "daylight", "bright"),
    "sunset": ("dusk", "evening", "golden hour"),
    "night": ("moonlit", "dark", "under the stars"),
    "snow": ("winter", "wintry", "snow-covered"),
    "fog": ("misty", "hazy", "mist"),
    "autumn": ("fall colors", "autumnal", "fall"),
}
OCEAN_PROMPT = "ocean"
OCEAN_SCENES = 64  # validation scenes without sea edited with "ocean" (the first, by name)
NO_SEA = ("none", "lake", "pond", "river")  # metadata content "water" values without sea
WATER_CLASSES = (CLASS_IDS["water"], CLASS_IDS["sea"], CLASS_IDS["river"])  # ADE20K 22, 27, 61
TARGETS = {"layout_miou": 0.7, "ocean_rise": 0.8, "unseen_ratio": 0.8}
COMBINED_NOTE = ("not measured: the renderer has no ground truth for combined looks (e.g. \"snowy night\"); "
                 "only single style names are scored against ground truth")


# ----------------------------------------------------------------------------------------------------------
# Small pieces (unit-tested).


def unseen_wordings(styles: Sequence[str], prompts: Sequence[str]) -> dict[str, str]:
    """{style: its first UNSEEN_WORDINGS candidate that is not a trained prompt} for each of `styles` that has
    one (prompts compared lower-cased, stripped)."""
    trained = {p.strip().lower() for p in prompts}
    out = {}
    for style in styles:
        free = [w for w in UNSEEN_WORDINGS.get(style, ()) if w.lower() not in trained]
        if free:
            out[style] = free[0]
    return out


def derangement(n: int, seed: int) -> list[int]:
    """A seeded random cyclic permutation of range(n) (Sattolo's algorithm): perm[i] != i for every i (n >= 2)."""
    if n < 2:
        raise ValueError(f"a derangement needs 2 or more items, got {n}")
    rng = random.Random(seed)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: one cycle through all items
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def water_fraction(maps: torch.Tensor, classes: Sequence[int] = WATER_CLASSES) -> torch.Tensor:
    """Class-id maps [N, H, W] -> float64 [N]: the share of each map's pixels in `classes`."""
    hit = torch.isin(maps, torch.tensor(list(classes), dtype=maps.dtype, device=maps.device))
    return hit.flatten(1).double().mean(1)


def scene_metadata(root: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """{scene: its metadata.jsonl record} (synthetic data: content, style) and the file's path (None: absent)."""
    for folder in (Path(root), Path(root).parent):
        if (folder / METADATA).is_file():
            return read_captions(folder), str(folder / METADATA)
    return {}, None


# ----------------------------------------------------------------------------------------------------------
# Shared with evaluate.py (inversion of files, selections of an Inversion).


def invert_files(m: Models, images: Sequence[Path], segs: Sequence[Path | None], steps: int, batch_size: int
                 ) -> tuple[Inversion, torch.Tensor | None]:
    """Invert image files (maps where given, else predicted): (Inversion on the CPU, ids [N, R, R] or None)."""
    invs, ids = [], []
    for start in range(0, len(images), batch_size):
        items = [load_item(m, p, s) for p, s in zip(images[start:start + batch_size], segs[start:start + batch_size])]
        inv, seg = run_inversion(m, torch.stack([i[0] for i in items]), [i[1] for i in items],
                                 list(images[start:start + batch_size]), steps)
        invs.append(inv)
        ids.append(seg)
    return Inversion.cat(invs), None if ids[0] is None else torch.cat(ids)


def take(inv: Inversion, index: Sequence[int], device: torch.device) -> Inversion:
    idx = torch.tensor(list(index), dtype=torch.long)
    return inv.apply(lambda x: x[idx]).to(device)


# ----------------------------------------------------------------------------------------------------------
# The text model.


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_text_model(bundle: Path, m: Models, clip: Path | None = None, text: Path | None = None) -> dict[str, Any]:
    """The text model (`text`, else `BUNDLE/text.safetensors`) and the CLIP it was trained with (checked), or why
    there is none. A `text` file that does not exist is an InputError."""
    if text is not None:
        path = Path(text)
        if not path.is_file():
            raise InputError(f"--text {text}: no such file.")
    else:
        path = Path(bundle) / BUNDLE_FILES["text"]
        if not path.is_file():
            return {"editor": None, "reason": f"no {path} (train one with `bgedit train text`)"}
    editor = load_network(path, "text", m.device).eval()
    editor.check_generator(m.generator, m.generator_sha256)
    clip_file = None if (Path(bundle) / BUNDLE_FILES["clip"]).is_file() else clip
    try:
        encoder = load_clip(bundle, clip_file, m.device)
    except MissingWeightsError as exc:
        return {"editor": None, "reason": f"the text model's CLIP is missing: {one_line(exc)}"}
    editor.check_clip(encoder)
    return {"editor": editor, "clip": encoder, "path": path, "reason": None}


def text_alphas(editor) -> dict[str, float | None]:
    """Edit settings to score: the model's own alpha and, with a Text Encoder, alpha = 1 (the mapper alone)."""
    if editor.text_encoder is None:
        return {"mapper (no Text Encoder)": None}
    return {f"mapper + Text Encoder (alpha {editor.cfg.alpha:g})": None, "mapper only (alpha 1)": 1.0}


def model_info(editor, path: Path) -> dict[str, Any]:
    """What tells two text models apart in a comparison."""
    cfg = editor.cfg
    return {"file": str(path), "sha256": file_sha256(Path(path)), "text_encoder": editor.text_encoder is not None,
            "condition": cfg.mapper.condition, "alpha": cfg.alpha, "strength": cfg.strength,
            "prompts": list(cfg.prompts), "preset": cfg.preset}


def text_result(text: dict[str, Any], m: Models, root: Path, *, steps: int, batch_size: int, seed: int,
                ocean_scenes: int = OCEAN_SCENES, progress: Progress | None = None) -> dict[str, Any]:
    """The text section of an evaluation (module doc), or {"skipped": why}."""
    if text["editor"] is None:
        return {"skipped": text["reason"]}
    editor = text["editor"]
    folder = Path(root) / "textedit" / "validation"
    if not folder.is_dir():
        return {"skipped": "no DATA/textedit/validation ground truth (synthetic data only)"}
    styles = [p for p in editor.cfg.prompts if p in STYLE_NAMES]
    if not styles:
        return {"skipped": f"no trained prompt is a synthetic style name ({', '.join(STYLE_NAMES)}); trained: "
                           f"{', '.join(editor.cfg.prompts)}"}
    found = [MIX_NAME.match(p.name) for p in sorted(folder.iterdir())]
    scenes = sorted({f.group("a") for f in found if f and f.group("b") in styles})
    if not scenes:
        return {"skipped": f"{folder}: no {{scene}}__{{style}}.png for the trained styles {', '.join(styles)}"}
    records, metadata = scene_metadata(root)
    own = {s: r.get("style", {}).get("name") for s, r in records.items()}

    segmenter, seg_reason = None, None
    try:
        segmenter = m.segmenter()
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
        ocean = [s for s in names if records.get(s, {}).get("content", {}).get("water") in NO_SEA][:ocean_scenes]
        if not ocean:
            ocean_reason = "no validation scene without sea (metadata.jsonl) to edit"
    out = text_edit_scores(m, editor, text["clip"], root, scenes, styles, own, steps=steps, batch_size=batch_size,
                           seed=seed, segmenter=segmenter, segmenter_reason=seg_reason, ocean_scenes=ocean,
                           ocean_reason=ocean_reason, progress=progress)
    return {"model": model_info(editor, text["path"]), **out, "metadata": metadata}


# ----------------------------------------------------------------------------------------------------------
# Scoring.


def _summary(vals: dict[str, list[torch.Tensor]], mask: torch.Tensor | None = None) -> dict[str, float]:
    """Means over pairs (those of `mask`, if given) of per-pair values: pairs, closer, l2_edit, l2_recon,
    improvement, and clip_gain, clip_rise when recorded."""
    v = {k: torch.cat(x).double() for k, x in vals.items() if x}
    if not v:
        return {"pairs": 0}
    if mask is not None:
        v = {k: x[mask] for k, x in v.items()}
    if not v["closer"].numel():
        return {"pairs": 0}
    out = {"pairs": int(v["closer"].numel()), "closer": float(v["closer"].mean()),
           "l2_edit": float(v["l2_edit"].mean()), "l2_recon": float(v["l2_recon"].mean()),
           "improvement": float((v["l2_recon"] - v["l2_edit"]).mean())}
    if "clip_gain" in v:
        out |= {"clip_gain": float(v["clip_gain"].mean()), "clip_rise": float((v["clip_gain"] > 0).double().mean())}
    return out


def _record(acc: dict[str, list[torch.Tensor]], style: torch.Tensor, d_edit: torch.Tensor, d_recon: torch.Tensor,
            **extra: torch.Tensor) -> None:
    for k, x in (("style", style), ("closer", (d_edit < d_recon).float()), ("l2_edit", d_edit),
                 ("l2_recon", d_recon), *extra.items()):
        acc[k].append(x.cpu())


@torch.no_grad()
def text_edit_scores(m: Models, editor, encoder, root: Path, scenes: Sequence[str], styles: Sequence[str],
                     own: dict[str, str], *, steps: int, batch_size: int, seed: int, segmenter=None,
                     segmenter_reason: str | None = None, ocean_scenes: Sequence[str] = (),
                     ocean_reason: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Edits of `scenes` toward `styles` against `ROOT/textedit/validation/{scene}__{style}.png`, and of
    `ocean_scenes` with "ocean" (module doc). `segmenter` None: layout and ocean are skipped with
    `segmenter_reason`; no `ocean_scenes`: ocean is skipped with `ocean_reason`."""
    r, device, G, folder = m.resolution, m.device, m.generator, Path(root) / "textedit" / "validation"
    styles = list(styles)
    n_styles = len(styles)
    unseen = unseen_wordings(styles, editor.cfg.prompts)
    perm = derangement(n_styles, seed) if n_styles >= 2 else None
    ocean_set = set(ocean_scenes) if segmenter is not None else set()
    gt_set = set(scenes)
    todo = sorted(gt_set | ocean_set)

    # Every prompt's embedding at once: the styles, their unseen wordings, "ocean".
    texts = styles + [unseen[s] for s in styles if s in unseen] + ([OCEAN_PROMPT] if ocean_set else [])
    embs = encoder.encode_text(texts)  # (P, D)
    emb_style = embs[:n_styles]
    unseen_row = {si: n_styles + k for k, si in enumerate(i for i, s in enumerate(styles) if s in unseen)}
    has_unseen = torch.tensor([si in unseen_row for si in range(n_styles)])
    unseen_index = torch.tensor([unseen_row.get(si, 0) for si in range(n_styles)])
    perm_t = torch.tensor(perm) if perm is not None else None

    modes = text_alphas(editor)
    acc: dict[str, dict[str, Any]] = {
        mode: {"matched": defaultdict(list), "unseen": defaultdict(list), "shuffled": defaultdict(list),
               "ocean": defaultdict(list),
               "cm": None if segmenter is None else torch.zeros(segmenter.cfg.num_classes, segmenter.cfg.num_classes,
                                                                dtype=torch.long)}
        for mode in modes}

    def read(img: torch.Tensor) -> torch.Tensor:
        return read_maps(segmenter, img, r, device)

    def edit(sub: Inversion, emb: torch.Tensor, alpha: float | None) -> torch.Tensor:
        return text_edit(G, sub, editor, emb, alpha=alpha, seed=seed).float()

    ref = None if segmenter is None else {
        k: torch.zeros(segmenter.cfg.num_classes, segmenter.cfg.num_classes, dtype=torch.long)
        for k in ("ground_truth", "inverted_ground_truth")}
    left_out = 0
    for start in range(0, len(todo), batch_size):
        names = todo[start:start + batch_size]
        base = Path(root)
        inv, _ = invert_files(m, [base / "images" / "validation" / f"{s}.png" for s in names],
                              [base / "annotations" / "validation" / f"{s}.png" for s in names], steps, batch_size)
        recon_maps = read(inv.images) if segmenter is not None else None
        recon_feat = encoder.encode_image(inv.images.to(device).float())
        # (scene in this chunk, style) pairs with ground truth, the scene's own style left out.
        pairs = []
        for si, style in enumerate(styles):
            for i, name in enumerate(names):
                if name in gt_set and (folder / f"{name}__{style}.png").is_file():
                    if own.get(name) == style:
                        left_out += 1
                    else:
                        pairs.append((i, si))
        gts = [load_image(folder / f"{names[i]}__{styles[si]}.png", r) for i, si in pairs]
        ocean_idx = [i for i, name in enumerate(names) if name in ocean_set]
        if ref is not None and pairs:
            inputs = read(torch.stack([load_image(base / "images" / "validation" / f"{n}.png", r) for n in names]))
            idx = [i for i, _ in pairs]
            ref["ground_truth"] += confusion_matrix(read(torch.stack(gts)), inputs[idx], ref["ground_truth"].shape[0])
            inv_gt, _ = invert_files(m, [folder / f"{names[i]}__{styles[si]}.png" for i, si in pairs],
                                     [base / "annotations" / "validation" / f"{names[i]}.png" for i, _ in pairs],
                                     steps, batch_size)
            ref["inverted_ground_truth"] += confusion_matrix(read(inv_gt.images), recon_maps[idx],
                                                             ref["inverted_ground_truth"].shape[0])
        for mode, alpha in modes.items():
            a = acc[mode]
            for p0 in range(0, len(pairs), batch_size):
                chunk = pairs[p0:p0 + batch_size]
                idx = [i for i, _ in chunk]
                sidx = torch.tensor([si for _, si in chunk])
                sub = take(inv, idx, device)
                gt = torch.stack(gts[p0:p0 + batch_size]).to(device)
                recon = sub.images.float()
                d_recon = l2(recon, gt).cpu()
                # Trained prompts, with the CLIP gain and the layout read back.
                e = emb_style[sidx.to(emb_style.device)]
                img = edit(sub, e, alpha)
                gain = ((encoder.encode_image(img) - recon_feat[idx]) * e).sum(1)
                _record(a["matched"], sidx, l2(img, gt).cpu(), d_recon, clip_gain=gain)
                if a["cm"] is not None:
                    a["cm"] += confusion_matrix(read(img), recon_maps[idx], a["cm"].shape[0])
                # Unseen wordings of the same styles, against the same ground truth.
                u = has_unseen[sidx].nonzero()[:, 0]
                if len(u):
                    img = edit(take(inv, [idx[k] for k in u.tolist()], device),
                               embs[unseen_index[sidx[u]].to(embs.device)], alpha)
                    _record(a["unseen"], sidx[u], l2(img, gt[u.to(gt.device)]).cpu(), d_recon[u])
                # Shuffled control: another style's prompt, scored against this pair's style.
                if perm_t is not None:
                    img = edit(sub, emb_style[perm_t[sidx].to(emb_style.device)], alpha)
                    _record(a["shuffled"], sidx, l2(img, gt).cpu(), d_recon)
            for o0 in range(0, len(ocean_idx), batch_size):
                idx = ocean_idx[o0:o0 + batch_size]
                img = edit(take(inv, idx, device), embs[-1:], alpha)
                a["ocean"]["recon"].append(water_fraction(recon_maps[idx]))
                a["ocean"]["edit"].append(water_fraction(read(img)))
        if progress is not None:
            progress("text edits", min(start + batch_size, len(todo)), len(todo))

    out: dict[str, Any] = {"scenes": len(scenes), "styles": styles, "seed": seed, "strength": editor.cfg.strength,
                           "same_style_pairs_left_out": left_out, "targets": dict(TARGETS),
                           "unseen_prompts": unseen, "shuffled_prompts": None if perm is None else
                           {s: styles[perm[si]] for si, s in enumerate(styles)},
                           "combined_prompts": COMBINED_NOTE, "ocean_scenes": len(ocean_set),
                           "layout_reference": {"skipped": segmenter_reason or "no segmenter"} if ref is None else
                           {k: segmentation_scores(v) for k, v in ref.items()} if int(ref["ground_truth"].sum())
                           else {"skipped": "no edited pairs"},
                           "modes": {}}
    for mode, alpha in modes.items():
        a = acc[mode]
        matched = a["matched"]
        style_of = torch.cat(matched["style"]) if matched["style"] else torch.zeros(0, dtype=torch.long)
        per_style = {s: _summary(matched, style_of == si) for si, s in enumerate(styles) if (style_of == si).any()}
        res: dict[str, Any] = {"alpha": editor.cfg.alpha if alpha is None else alpha, "per_style": per_style,
                               "all": _summary(matched)}
        # Layout.
        if a["cm"] is None:
            res["layout"] = {"skipped": segmenter_reason or "no segmenter"}
        elif not matched["closer"]:
            res["layout"] = {"skipped": "no edited pairs"}
        else:
            res["layout"] = {"pairs": res["all"]["pairs"], "target": TARGETS["layout_miou"],
                             **segmentation_scores(a["cm"])}
        # Unseen wordings.
        if not unseen:
            res["unseen"] = {"skipped": "every candidate wording of the trained styles is itself a trained prompt"}
        else:
            u = a["unseen"]
            u_style = torch.cat(u["style"]) if u["style"] else torch.zeros(0, dtype=torch.long)
            trained = _summary(matched, has_unseen[style_of]) if len(style_of) else {"pairs": 0}
            unseen_all = _summary(u)
            ratio, note = None, None
            if unseen_all["pairs"] and trained["improvement"] > 0:
                ratio = unseen_all["improvement"] / trained["improvement"]
            elif unseen_all["pairs"]:
                note = "the trained prompts' mean L2 improvement on these pairs is not positive: no ratio"
            res["unseen"] = {"per_prompt": {unseen[s]: {"style": s, **_summary(u, u_style == si)}
                                            for si, s in enumerate(styles) if s in unseen and (u_style == si).any()},
                             "all": unseen_all, "trained": trained, "ratio": ratio,
                             "target": TARGETS["unseen_ratio"]} | ({"ratio_note": note} if note else {})
        # Shuffled control.
        if perm is None:
            res["shuffled"] = {"skipped": "one trained style: no other style's prompt to swap in"}
        else:
            res["shuffled"] = {"all": _summary(a["shuffled"])}
        # "ocean".
        if not ocean_set:
            res["ocean"] = {"skipped": ocean_reason or segmenter_reason or "no scenes"}
        else:
            before, after = torch.cat(a["ocean"]["recon"]), torch.cat(a["ocean"]["edit"])
            res["ocean"] = {"scenes": int(before.numel()), "rise": float((after > before).double().mean()),
                            "water_recon": float(before.mean()), "water_edit": float(after.mean()),
                            "classes": {name: CLASS_IDS[name] for name in ("water", "sea", "river")},
                            "target": TARGETS["ocean_rise"]}
        out["modes"][mode] = res
    return out
